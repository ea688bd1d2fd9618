"""The wire-neutral view of one request: what the script needs to know about it.

Each wire module (OpenAI, Anthropic) turns its request body into a
:class:`Conversation`; :mod:`.script` then decides what the model does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import msgspec

_TOKEN = re.compile(r"\S+\s*")
Q = TypeVar("Q", bound="Request")
#: request fields: a model name, the messages, a token count, a sampling value in [0, 1]
Name = Annotated[str, msgspec.Meta(min_length=1)]
Messages = Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]


class RequestError(ValueError):
    """The request body is not something the wire format accepts (answered with 400)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    name: str
    content: str


@dataclass(slots=True)
class Conversation:
    """One request, reduced to what decides the answer.

    ``user_text`` is the text of the last user message (tool-result-only messages do
    not count as user messages); ``rounds`` is how many assistant tool-call messages
    follow it; ``results`` are the tool results the request ends with; ``tools`` are
    the names of the offered tools; ``key_material`` is the list of messages up to and
    including the last user message (hashed into :attr:`key`).
    """

    model: str
    stream: bool = False
    user_text: str = ""
    rounds: int = 0
    results: list[ToolResult] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    key_material: list[Any] = field(default_factory=list)
    api_key: str | None = None
    include_usage: bool = False
    max_tokens: int | None = None

    @property
    def key(self) -> str:
        """A stable hash of the conversation up to its last user message."""
        return hashlib.sha256(msgspec.json.encode(self.key_material)).hexdigest()


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a request, wire-neutral: ``question`` for a user message that is
    not only tool results; ``calls`` maps tool-call ids to tool names; ``results`` are
    ``(call id, text)`` of the tool results it carries; ``words`` counts its content."""

    text: str
    words: int
    question: bool = False
    calls: dict[str, str] = field(default_factory=dict)
    results: list[tuple[str, str]] = field(default_factory=list)


class Request(msgspec.Struct):
    """What the request bodies of both wires have (each wire's own type adds to it)."""

    model: Name
    messages: Messages
    stream: bool = False
    max_tokens: Positive | None = None
    top_p: Unit | None = None
    tools: list[dict[str, Any]] = []


def read_request(
    body: dict[str, Any], request: type[Q], api_key: str | None, neutral: Callable[[Any], Message]
) -> tuple[Q, Conversation]:
    """``body`` as the wire's ``request`` type (what it refuses is a :class:`RequestError`)
    and the conversation of its messages, each made wire-neutral by ``neutral``."""
    try:
        req = msgspec.convert(body, request)
    except msgspec.ValidationError as exc:
        raise RequestError(str(exc)) from None
    conv = Conversation(req.model, req.stream, api_key=api_key, max_tokens=req.max_tokens)
    _read_messages(conv, req.messages, [neutral(m) for m in req.messages])
    return req, conv


def _read_messages(conv: Conversation, raw: list[Any], messages: list[Message]) -> None:
    """Fill in what the script needs from a request's messages (``raw``: as sent)."""
    last_user = max((i for i, m in enumerate(messages) if m.question), default=-1)
    conv.key_material = raw[: last_user + 1]
    if last_user >= 0:
        conv.user_text = messages[last_user].text
    names = {call: name for m in messages for call, name in m.calls.items()}
    conv.rounds = sum(1 for m in messages[last_user + 1 :] if m.calls)
    trailing = len(messages)
    while trailing > 0 and messages[trailing - 1].results:
        trailing -= 1
    conv.results = [
        ToolResult(names.get(call, "unknown"), text)
        for m in messages[trailing:]
        for call, text in m.results
    ]
    conv.prompt_tokens = sum(m.words for m in messages)


def split_tokens(text: str) -> tuple[str, ...]:
    """Split into tokens: a word with its trailing whitespace; joined they give ``text``."""
    return tuple(_TOKEN.findall(text.strip()))


def count_words(text: str) -> int:
    return len(text.split())


def require_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(f"{what} must be an object")
    return value


def require_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RequestError(f"{what} must be an array")
    return value


def text_of(content: Any) -> str:
    """The text in a message ``content``: a string, or a list of parts/blocks."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict)]
        return "\n".join(text for text in texts if isinstance(text, str))
    raise RequestError("message content must be a string or an array")


def bearer_key(headers: dict[bytes, bytes]) -> str | None:
    """The API key a client sent: ``x-api-key`` or ``Authorization: Bearer ...``."""
    key = headers.get(b"x-api-key")
    if key is not None:
        return key.decode("latin-1")
    auth = headers.get(b"authorization")
    if auth is None:
        return None
    scheme, _, token = auth.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else auth.decode("latin-1")
