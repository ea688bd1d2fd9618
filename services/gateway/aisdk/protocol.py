"""The AI SDK's UI Message Stream protocol (v1), as far as Threadline speaks it.

Checked against ``uiMessageChunkSchema`` of the ``ai`` npm package pinned in
``tests/aisdk/package.json``. Field names are camelCase on the wire (``rename="camel"``);
optional fields are left out when unset. Log positions never go into a chunk: they
travel only in SSE ``id:`` lines.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

#: response headers of a UI message stream (as ``UI_MESSAGE_STREAM_HEADERS`` in ``ai``)
STREAM_HEADERS: Final = {
    "x-vercel-ai-ui-message-stream": "v1",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
DONE: Final = b"data: [DONE]\n\n"

#: ``finish.finishReason`` values the AI SDK accepts
UIFinishReason = Literal["stop", "length", "content-filter", "tool-calls", "error", "other"]


class Chunk(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type", rename="camel"
):
    """One ``data:`` frame of the stream; ``type`` is the tag."""


class Start(Chunk, frozen=True, tag="start"):
    message_id: str


class StartStep(Chunk, frozen=True, tag="start-step"): ...


class FinishStep(Chunk, frozen=True, tag="finish-step"): ...


class Part(Chunk, frozen=True):
    """A chunk of a text, reasoning or data part: ``id`` names the part."""

    id: str


class Delta(Part, frozen=True):
    delta: str


class TextStart(Part, frozen=True, tag="text-start"): ...


class TextDelta(Delta, frozen=True, tag="text-delta"): ...


class TextEnd(Part, frozen=True, tag="text-end"): ...


class ReasoningStart(Part, frozen=True, tag="reasoning-start"): ...


class ReasoningDelta(Delta, frozen=True, tag="reasoning-delta"): ...


class ReasoningEnd(Part, frozen=True, tag="reasoning-end"): ...


class ToolChunk(Chunk, frozen=True):
    """A chunk of a tool call's part: ``tool_call_id`` names the call."""

    tool_call_id: str


class ToolInputStart(ToolChunk, frozen=True, tag="tool-input-start"):
    tool_name: str
    #: the client does not know our (MCP) tools: they become ``dynamic-tool`` parts
    dynamic: bool


class ToolInputAvailable(ToolChunk, frozen=True, tag="tool-input-available"):
    tool_name: str
    input: Any
    dynamic: bool


class ToolOutputAvailable(ToolChunk, frozen=True, tag="tool-output-available"):
    output: Any
    dynamic: bool


class ToolOutputError(ToolChunk, frozen=True, tag="tool-output-error"):
    error_text: str
    dynamic: bool


class ToolApprovalRequest(ToolChunk, frozen=True, tag="tool-approval-request"):
    """The call waits for a person (``approval_requested``); ``approval_id`` is the call id."""

    approval_id: str


class ToolOutputDenied(ToolChunk, frozen=True, tag="tool-output-denied"):
    """The call was denied (``approval_denied``) and not run."""


class ApprovalRefusedData(msgspec.Struct, frozen=True, kw_only=True):
    """Why an approval answer of ``POST /api/chat`` was refused (as the REST route's 409)."""

    call_id: str
    error: str
    message: str


class DataApprovalRefused(Part, frozen=True, tag="data-approval-refused"):
    """A ``data-approval-refused`` part: the answer came too late; the turn streams on."""

    data: ApprovalRefusedData


class FallbackData(msgspec.Struct, frozen=True, kw_only=True):
    """What a ``fallback`` event says: ``kind`` is its ``fallback`` field."""

    kind: str
    reason: str = ""
    #: ``from`` on the wire, like the event
    from_: str = msgspec.field(default="", name="from")
    to: str = ""
    attempt: int = 0


class DataFallback(Chunk, frozen=True, tag="data-fallback"):
    """A ``data-fallback`` part: the turn carried on another way (retry, other provider...)."""

    data: FallbackData


class ToolProgressData(msgspec.Struct, frozen=True, kw_only=True):
    call_id: str
    progress: float
    total: float | None = None
    message: str = ""


class DataToolProgress(Part, frozen=True, tag="data-tool-progress"):
    """A ``data-tool-progress`` part: how far a running tool call is. Its ``id`` is the
    call's, so the AI SDK keeps one such part per call, updated in place."""

    data: ToolProgressData


class RestartData(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int
    superseded: int


class DataRestart(Part, frozen=True, tag="data-restart"):
    """A ``data-restart`` part: a new attempt started over; parts before it are superseded."""

    data: RestartData


class Error(Chunk, frozen=True, tag="error"):
    error_text: str


class Abort(Chunk, frozen=True, tag="abort"):
    reason: str | None = None


class Finish(Chunk, frozen=True, tag="finish"):
    finish_reason: UIFinishReason | None = None


_encoder = msgspec.json.Encoder()


def frame(chunks: list[Chunk], position: int | None = None) -> bytes:
    """SSE frames for ``chunks``; ``position`` goes in an ``id:`` line on the last one only,
    so a client that saw that id has every chunk of the event."""
    out = bytearray()
    last = len(chunks) - 1
    for index, chunk in enumerate(chunks):
        if position is not None and index == last:
            out += b"id: %d\n" % position
        out += b"data: " + _encoder.encode(chunk) + b"\n\n"
    return bytes(out)
