"""Parse the ``[[...]]`` directives that script the dev model (see docs/devmodel.md).

Directives are read from the text of the last user message only. A well-formed
directive is removed from the text the model echoes; anything malformed stays as
plain text, so a typo shows up in the answer instead of silently doing nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

FailKind = Literal["status", "notools", "context"]

_OPEN = re.compile(
    r"\[\[(?:(tool|reason|fail|drop|stall|words|pace):|(obey-tool-output|verbatim)\]\])"
)
_TOOL_HEAD = re.compile(r"\s*(?P<name>[^\s\[\]{}]+)(?:\s+step=(?P<step>\d+))?\s*")
_CLOSE = re.compile(r"\s*\]\]")
_JSON = json.JSONDecoder()
#: ``[[fail:NAME]]``: the failures named rather than given by status (all are a 400)
_NAMED_FAILURES: dict[str, FailKind] = {"400-notools": "notools", "context": "context"}
_OPTIONS = {
    "fail": {"retry-after", "times"},
    "drop": {"after"},
    "stall": {"after"},
    "words": set(),
    "pace": {"ttft", "tps"},
}


@dataclass(frozen=True, slots=True)
class ToolDirective:
    name: str
    step: int
    arguments: dict[str, object]


@dataclass(frozen=True, slots=True)
class FailDirective:
    kind: FailKind
    status: int
    retry_after: float | None = None
    times: int | None = None


@dataclass(slots=True)
class Directives:
    """Everything the last user message asked of the model, plus its remaining text."""

    text: str = ""
    tools: list[ToolDirective] = field(default_factory=list)
    reason: str | None = None
    fail: FailDirective | None = None
    drop_after: int | None = None
    stall_ms: float = 0.0
    stall_after: int = 0
    words: int | None = None
    ttft_ms: float | None = None
    tokens_per_second: float | None = None
    #: ``[[obey-tool-output]]``: follow ``[[tool:...]]`` directives found in tool results
    obey_tool_output: bool = False
    #: ``[[verbatim]]``: answer the text as written (its lines and spaces kept, no echo)
    verbatim: bool = False
    #: the text around the directives, its whitespace kept (for ``[[verbatim]]``)
    raw: str = ""


def parse_directives(text: str) -> Directives:
    """Split ``text`` into directives and the plain text around them."""
    found = Directives()
    plain: list[str] = []
    pos = 0
    while (match := _OPEN.search(text, pos)) is not None:
        plain.append(text[pos : match.start()])
        kind = match.group(1)
        if kind is None:  # [[obey-tool-output]] or [[verbatim]]
            found.obey_tool_output |= match.group(2) == "obey-tool-output"
            found.verbatim |= match.group(2) == "verbatim"
            end: int | None = match.end()
        elif kind == "tool":
            end = _parse_tool(text, match.end(), found)
        else:
            end = _parse_simple(kind, text, match.end(), found)
        if end is None:  # malformed: keep it as text and scan on after the "[["
            plain.append("[[")
            end = match.start() + 2
        pos = end
    plain.append(text[pos:])
    found.raw = "".join(plain).strip()
    found.text = " ".join(found.raw.split())
    return found


def _parse_tool(text: str, pos: int, found: Directives) -> int | None:
    head = _TOOL_HEAD.match(text, pos)
    if head is None:
        return None
    arguments: object = {}
    pos = head.end()
    if text.startswith("{", pos):
        try:
            arguments, pos = _JSON.raw_decode(text, pos)
        except ValueError:
            return None
    close = _CLOSE.match(text, pos)
    if close is None or not isinstance(arguments, dict):
        return None
    step = int(head.group("step") or 0)
    found.tools.append(ToolDirective(head.group("name"), step, arguments))
    return close.end()


def _parse_simple(kind: str, text: str, pos: int, found: Directives) -> int | None:
    end = text.find("]]", pos)
    try:
        if end < 0:
            raise ValueError("not closed")
        _apply(kind, text[pos:end].strip(), found)
    except ValueError:
        return None
    return end + 2


def _options(body: str) -> tuple[str, dict[str, str]]:
    """``"429 retry-after=2 times=1"`` -> ``("429", {"retry-after": "2", "times": "1"})``."""
    head = ""
    options: dict[str, str] = {}
    for part in body.replace(",", " ").split():
        key, sep, value = part.partition("=")
        if sep:
            options[key.lower()] = value
        elif not head:
            head = part
        else:
            raise ValueError(f"unexpected {part!r}")
    return head, options


def _apply(kind: str, body: str, found: Directives) -> None:
    """Store what ``[[kind:body]]`` asks for; ValueError when it is malformed."""
    if kind == "reason":
        if not body:
            raise ValueError("no reasoning text")
        found.reason = body
        return
    head, options = _options(body)
    if not options.keys() <= _OPTIONS[kind] or (kind == "pace" and head):
        raise ValueError(f"unexpected options in [[{kind}:{body}]]")
    if kind == "fail":
        found.fail = _fail(head, options)
    elif kind == "drop":
        found.drop_after = _count(options.get("after", head or "0"))
    elif kind == "stall":
        # Both parsed before either is stored, so a malformed directive changes nothing.
        found.stall_ms, found.stall_after = _non_negative(head), _count(options.get("after", "0"))
    elif kind == "words":
        found.words = _count(head)
    else:  # pace
        ttft, tps = (_non_negative(options[k]) if k in options else None for k in ("ttft", "tps"))
        found.ttft_ms = found.ttft_ms if ttft is None else ttft
        found.tokens_per_second = found.tokens_per_second if tps is None else tps


def _fail(head: str, options: dict[str, str]) -> FailDirective:
    kind = _NAMED_FAILURES.get(head.lower(), "status")
    status = int(head) if kind == "status" else 400
    if not 400 <= status <= 599:
        raise ValueError(f"not an error status: {status}")
    retry_after = _non_negative(options["retry-after"]) if "retry-after" in options else None
    times = _count(options["times"]) if "times" in options else None
    return FailDirective(kind, status, retry_after, times)


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("negative count")
    return number


def _non_negative(value: str) -> float:
    number = float(value)
    if not number >= 0.0:  # also rejects NaN
        raise ValueError("negative duration")
    return number
