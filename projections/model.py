"""What the read API returns: plain msgspec structs, ready to encode as JSON.

Times are microseconds since the Unix epoch (the events' ``at``); durations are
milliseconds. (A session's history is the session model, ``threadline.events.fold``.)
"""

from __future__ import annotations

from typing import Final

import msgspec

#: The views, in the order the projector applies them.
VIEW_NAMES: Final = ("sessions", "usage")


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
