"""Decide, once per request, what the dev model does; the wire encoders render it.

The outcome is either a :class:`Failure` (an HTTP error to answer with) or a
:class:`Script`: reasoning tokens, text tokens and tool calls, plus the pace and the
faults (stall, drop) to stream them with.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Literal

import msgspec

from .conversation import Conversation, split_tokens
from .directives import Directives, ToolDirective, parse_directives
from .settings import DevModelSettings

MISSING_MODEL = "missing-model"
BAD_KEY = "bad-key"
FILLER = "(threadline dev model)"
VOCABULARY = (
    *("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed"),
    *("do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna"),
    "aliqua",
)
ARGUMENT_CHUNK = 16  # characters of tool-call arguments per streamed token

FailureKind = Literal["status", "notools", "context", "auth", "model", "invalid"]
Finish = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    kind: FailureKind
    model: str
    retry_after: float | None = None
    detail: str = ""
    #: a context failure from the enforced window: the tokens asked for, and the window
    requested: int = 0
    window: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str  # without the wire's prefix ("call_", "toolu_")
    name: str
    arguments: str  # compact JSON object
    chunks: tuple[str, ...]  # ``arguments`` split for streaming


@dataclass(frozen=True, slots=True)
class Script:
    model: str
    reasoning: tuple[str, ...]
    text: tuple[str, ...]
    tool_calls: tuple[ToolCall, ...]
    finish: Finish
    input_tokens: int
    ttft_s: float
    interval_s: float
    stall_s: float = 0.0
    stall_after: int = 0
    drop_after: int | None = None

    @property
    def output_tokens(self) -> int:
        """Tokens streamed: reasoning, text, and per tool call its header and chunks."""
        calls = sum(1 + len(call.chunks) for call in self.tool_calls)
        return len(self.reasoning) + len(self.text) + calls

    @property
    def signature(self) -> str:
        """A deterministic stand-in for Anthropic's thinking signature."""
        digest = hashlib.sha256("".join(self.reasoning).encode()).digest()
        return base64.b64encode(b"threadline-dev:" + digest).decode()


class FailureLedger:
    """Counts requests per conversation for ``[[fail:... times=N]]``."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._counts: dict[str, int] = {}
        self._capacity = capacity

    def hit(self, key: str) -> int:
        if len(self._counts) >= self._capacity and key not in self._counts:
            self._counts.clear()
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count


def answer_for(user_text: str) -> str:
    """The text the model answers to a plain message (directives removed)."""
    return _plain(parse_directives(user_text))


_TOOL_OUTPUT = re.compile(r"\A\s*<tool_output\b[^>]*>\n?(.*?)\n?</tool_output>\s*\Z", re.S)


def tool_answer(results: list[tuple[str, str]]) -> str:
    """The text the model answers once ``(tool name, result content)`` pairs come back.

    A result fenced as untrusted data (``<tool_output ...>...</tool_output>``, as
    Threadline's adapters send them) is quoted without the fence, as a model would."""
    return " ".join(f"Tool {name} returned: {_unfence(content)}" for name, content in results)


def _unfence(content: str) -> str:
    match = _TOOL_OUTPUT.match(content)
    return match.group(1) if match else content


def plan(conv: Conversation, settings: DevModelSettings, ledger: FailureLedger) -> Script | Failure:
    """What the model does for this request."""
    if conv.api_key == BAD_KEY:
        return Failure(401, "auth", conv.model, detail=conv.api_key)
    if conv.model == MISSING_MODEL:
        return Failure(404, "model", conv.model)
    requested = conv.prompt_tokens + (conv.max_tokens or 0)
    if settings.context_tokens is not None and requested > settings.context_tokens:
        window = settings.context_tokens
        return Failure(400, "context", conv.model, requested=requested, window=window)
    found = parse_directives(conv.user_text)
    failure = _failure(found, conv, ledger)
    if failure is not None:
        return failure
    reasoning = split_tokens(found.reason or "")
    calls, missing = _tool_calls(found, conv)
    finish: Finish = "tool_calls" if calls else "stop"
    text: tuple[str, ...] = ()
    if not calls:
        text = split_tokens(_text(found, conv, missing))
        if conv.max_tokens is not None and len(reasoning) + len(text) > conv.max_tokens:
            text = text[: max(conv.max_tokens - len(reasoning), 0)]
            finish = "length"
    ttft_ms = settings.ttft_ms if found.ttft_ms is None else found.ttft_ms
    tps = settings.tokens_per_second if found.tokens_per_second is None else found.tokens_per_second
    return Script(
        model=conv.model,
        reasoning=reasoning,
        text=text,
        tool_calls=calls,
        finish=finish,
        input_tokens=max(conv.prompt_tokens, 1),
        ttft_s=ttft_ms / 1000.0,
        interval_s=1.0 / tps if tps > 0 else 0.0,
        stall_s=found.stall_ms / 1000.0,
        stall_after=found.stall_after,
        drop_after=found.drop_after,
    )


def _failure(found: Directives, conv: Conversation, ledger: FailureLedger) -> Failure | None:
    fail = found.fail
    if fail is None or (fail.kind == "notools" and not conv.tools):
        return None
    if fail.times is not None and ledger.hit(conv.key) > fail.times:
        return None
    if fail.kind == "notools":
        model = conv.model if ":" in conv.model else conv.model + ":latest"  # as Ollama names it
        detail = f"registry.ollama.ai/library/{model} does not support tools"
    else:  # like some real providers, a 401 echoes the rejected key: the worst case for redaction
        detail = (conv.api_key or "") if fail.status == 401 else ""
    return Failure(fail.status, fail.kind, conv.model, fail.retry_after, detail)


def _tool_calls(found: Directives, conv: Conversation) -> tuple[tuple[ToolCall, ...], list[str]]:
    """The calls for this step, and the names asked for that the request does not offer."""
    calls: list[ToolCall] = []
    missing: list[str] = []
    for directive in found.tools:
        if directive.step != conv.rounds:
            continue
        name = _offered(directive.name, conv.tools)
        if name is None:
            missing.append(directive.name)
        else:
            calls.append(_call(name, directive))
    if found.obey_tool_output:
        calls.extend(_injected_calls(conv))
    return tuple(calls), missing


def _injected_calls(conv: Conversation) -> list[ToolCall]:
    """``[[obey-tool-output]]``: a model fooled by the tool results it just got.

    Every ``[[tool:NAME {args}]]`` inside the latest tool results becomes a call now
    (``step=`` is ignored), under the offered name NAME matches, or else under NAME as
    written, offered or not: the worst case of a model that was given some tools and
    was told by a tool result to call another."""
    calls: list[ToolCall] = []
    for result in conv.results:
        for directive in parse_directives(_unfence(result.content)).tools:
            calls.append(_call(_offered(directive.name, conv.tools) or directive.name, directive))
    return calls


def _offered(name: str, tools: list[str]) -> str | None:
    if name in tools:
        return name
    return next((tool for tool in tools if tool.endswith("__" + name)), None)


def _call(name: str, directive: ToolDirective) -> ToolCall:
    arguments = msgspec.json.encode(directive.arguments).decode()
    chunks = tuple(
        arguments[i : i + ARGUMENT_CHUNK] for i in range(0, len(arguments), ARGUMENT_CHUNK)
    )
    return ToolCall(uuid.uuid4().hex[:24], name, arguments, chunks)


def _text(found: Directives, conv: Conversation, missing: list[str]) -> str:
    if missing:
        return " ".join(f"Tool {name} is not available." for name in missing)
    if conv.results:
        return tool_answer([(result.name, result.content) for result in conv.results])
    return _plain(found)


def _plain(found: Directives) -> str:
    if found.verbatim:
        return found.raw
    if found.words is not None:
        return " ".join(VOCABULARY[i % len(VOCABULARY)] for i in range(found.words))
    return " ".join(part for part in ("Echo:", found.text, FILLER) if part)
