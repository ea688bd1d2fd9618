"""What the read API returns: plain msgspec structs, ready to encode as JSON.

Times are microseconds since the Unix epoch (the events' ``at``); durations are
milliseconds. ``superseded`` marks rows written by an attempt that a later attempt
of the same turn replaced: they are kept for the record, not shown as the answer.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

#: The views, in the order the projector applies them.
VIEW_NAMES: Final = ("sessions", "history", "usage")


class SessionSummary(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    owner: str
    title: str
    provider: str
    model: str
    created_at: int
    updated_at: int
    message_count: int
    turn_count: int
    last_turn: str
    last_status: str
    version: int
    position: int
    forked_from: str = ""
    forked_version: int = 0


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    sessions: list[SessionSummary]
    #: pass back as ``cursor`` for the next page; ``None`` on the last page
    next_cursor: str | None = None


class MessageView(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    position: int
    turn: str
    attempt: int
    step: int
    role: str  # "user" | "assistant"
    text: str
    reasoning: str = ""
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    at: int = 0
    superseded: bool = False


class ToolCallView(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    turn: str
    attempt: int
    step: int
    call_id: str
    tool: str
    server: str
    arguments: dict[str, Any]
    summary: str = ""
    is_error: bool = False
    duration_ms: float = 0.0
    #: version of the matching ``tool_result`` (0: no result recorded)
    result_version: int = 0
    at: int = 0
    result_at: int = 0
    superseded: bool = False


class FallbackView(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    turn: str
    attempt: int
    kind: str
    reason: str
    from_: str = msgspec.field(default="", name="from")
    to: str = ""
    at: int = 0
    superseded: bool = False


class TurnView(msgspec.Struct, frozen=True, kw_only=True):
    turn: str
    #: the attempt that counts (the newest one started)
    attempt: int
    status: str
    provider: str = ""
    model: str = ""
    started_at: int = 0
    ended_at: int = 0
    steps: int = 0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    error: str = ""
    error_message: str = ""
    retryable: bool = False
    cancel_requested: bool = False
    cancel_request_reason: str = ""
    cancel_reason: str = ""
    partial_text: str = ""
    tool_calls: list[ToolCallView] = msgspec.field(default_factory=list)
    fallbacks: list[FallbackView] = msgspec.field(default_factory=list)


class SessionDetail(msgspec.Struct, frozen=True, kw_only=True):
    summary: SessionSummary
    messages: list[MessageView]
    turns: list[TurnView]


class UsageRow(msgspec.Struct, frozen=True, kw_only=True):
    day: str  # YYYY-MM-DD, UTC, the day the turn started
    provider: str
    model: str
    turns: int
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cached_input_tokens: int
    duration_ms: float
    ttft_ms_avg: float | None = None


class UsageReport(msgspec.Struct, frozen=True, kw_only=True):
    owner: str
    day: str | None
    rows: list[UsageRow]
    turns: int
    input_tokens: int
    output_tokens: int


class ProjectionErrorRow(msgspec.Struct, frozen=True, kw_only=True):
    position: int
    reason: str
    session: str = ""


class ViewStatus(msgspec.Struct, frozen=True, kw_only=True):
    view: str
    position: int
    last_position: int
    #: the position of the event the view halted at (None: not halted)
    halted_at: int | None = None

    @property
    def lag(self) -> int:
        return max(0, self.last_position - self.position)
