"""A :class:`HistoryReader` over the projections' views (``threadline.projections``).

``ProjectionHistory(reader, store)`` answers the gateway's reads from the sessions,
history and usage views instead of folding a session's events on every request:

* ``list_sessions``: the sessions view (same cursor format as the default reader);
* ``get_session``: the history view (messages, turns with the attempt that counted,
  tool calls, fallbacks, failures, cancellations) plus each completed turn's tokens
  from the usage view, read in one transaction and mapped to the gateway's models;
* ``get_session(at=VERSION)``: the as-of fold of the log's first VERSION events
  (``threadline.projections.asof``), as exact as the default reader;
* ``wait``: the projection reader's ``wait`` (woken by an in-process projector, else
  polling the tracking table);
* ``usage``: the usage view, for ``GET /v1/usage``.

What the views do not hold is filled in from the log or documented (docs/gateway.md,
"History from the projections"): the session's settings (system prompt, tool servers,
generation parameters) come from its ``session_started`` event, read once and cached
(it never changes); a running turn's ``partial_text`` is folded from the deltas of its
current step (a short read of the log's tail, up to the version the views are at); a
session the views have not reached yet is folded from the log. Left as documented
gaps: a tool result's ``text`` is its summary (one line, at most 500 characters) and
its ``position`` 0; assistant steps carry input and output tokens only; list entries'
``position`` is 0.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Final, Literal, cast

import msgspec
from msgspec.structs import replace

from threadline.base.errors import InvalidInput
from threadline.events.schema import (
    AssistantMessage,
    SessionStarted,
    TextDelta,
    TurnStarted,
    Usage,
)
from threadline.events.store import EventStore, Recorded
from threadline.projections import ProjectionReader
from threadline.projections import model as pm
from threadline.projections.asof import records_at
from threadline.services.gateway.history import (
    InvalidCursor,
    params_view,
    session_detail,
    usage_view,
)
from threadline.services.gateway.models import (
    FallbackView,
    MessageView,
    SessionDetail,
    SessionPage,
    SessionSummary,
    ToolCallView,
    TurnView,
    UsageReport,
    UsageRow,
    UsageView,
)

_CACHE_SIZE: Final = 100_000
Status = Literal["pending", "running", "completed", "failed", "cancelled"]


class ProjectionHistory:
    """The gateway's reads from the views of ``reader``; ``store`` for what they lack."""

    def __init__(
        self, reader: ProjectionReader, store: EventStore, *, cache_size: int = _CACHE_SIZE
    ) -> None:
        self.reader = reader
        self.store = store
        self._size = cache_size
        self._started: OrderedDict[str, SessionStarted] = OrderedDict()

    async def list_sessions(self, owner: str, *, limit: int, cursor: str | None) -> SessionPage:
        try:
            page = await self.reader.list_sessions(owner, limit, cursor)
        except InvalidInput:
            raise InvalidCursor(cursor or "") from None
        return SessionPage(
            sessions=[_summary(s) for s in page.sessions], next_cursor=page.next_cursor
        )

    async def get_session(self, session: str, *, at: int | None = None) -> SessionDetail | None:
        if at is not None:
            try:
                return session_detail(await records_at(self.store, session, at))
            except InvalidInput:  # no such session, or no such version
                return None
        found = await self.reader.session_history(session)
        if found is None:  # not projected yet: the log has it (or nothing does)
            records = [rec async for rec in self.store.read(session)]
            return session_detail(records) if records else None
        detail = to_detail(found.detail, found.usage, await self._first(session))
        if detail.in_flight is None:
            return detail
        turns = [
            replace(view, partial_text=await self._partial(found.detail, turn))
            if turn.status == "running"
            else view
            for turn, view in zip(found.detail.turns, detail.turns, strict=True)
        ]
        return replace(detail, turns=turns)

    async def wait(self, position: int, *, timeout_s: float) -> bool:
        return await self.reader.wait(None, position, timeout_s)

    async def usage(self, owner: str, *, day: str | None) -> UsageReport:
        report = await self.reader.usage(owner, day)
        return UsageReport(
            owner=report.owner,
            day=report.day,
            rows=[msgspec.convert(msgspec.to_builtins(r), UsageRow) for r in report.rows],
            turns=report.turns,
            input_tokens=report.input_tokens,
            output_tokens=report.output_tokens,
        )

    async def _partial(self, detail: pm.SessionDetail, turn: pm.TurnView) -> str:
        """The text a running turn has streamed in its current step: the deltas after its
        newest message, up to the version the views are at (read from the log)."""
        since = [
            m.version
            for m in detail.messages
            if m.turn == turn.turn and (m.role == "user" or m.attempt == turn.attempt)
        ]
        start, end = max(since, default=0) + 1, detail.summary.version
        text: list[str] = []
        if start > end:
            return ""
        session = detail.summary.session
        async with contextlib.aclosing(
            self.store.read(session, from_version=start, to_version=end)
        ) as records:
            async for rec in records:
                if rec.turn != turn.turn or rec.attempt not in (None, turn.attempt):
                    continue
                if isinstance(rec.event, TextDelta):
                    text.append(rec.event.text)
                elif isinstance(rec.event, AssistantMessage | TurnStarted):
                    text.clear()  # a step (or an attempt) starts afresh
        return "".join(text)

    async def _first(self, session: str) -> SessionStarted | None:
        """The session's ``session_started`` (immutable: cached)."""
        found = self._started.get(session)
        if found is not None:
            self._started.move_to_end(session)
            return found
        first: Recorded | None = None
        async with contextlib.aclosing(self.store.read(session, to_version=1)) as records:
            async for rec in records:
                first = rec
        if first is None or not isinstance(first.event, SessionStarted):
            return None
        self._started[session] = first.event
        if len(self._started) > self._size:
            self._started.popitem(last=False)
        return first.event


def _summary(s: pm.SessionSummary) -> SessionSummary:
    # position 0: the sessions view keeps the latest position, not the first event's
    return SessionSummary(
        id=s.session, owner=s.owner, title=s.title, provider=s.provider, model=s.model,
        created_at=s.created_at, position=0,
    )  # fmt: skip


def _is_partial(m: pm.MessageView, turn: pm.TurnView | None) -> bool:
    """The text a cancelled turn kept (written by ``turn_cancelled``, not a model step)."""
    return (
        turn is not None
        and turn.status == "cancelled"
        and m.finish_reason == "cancelled"
        and m.at == turn.ended_at
        and m.text == turn.partial_text
    )


def _messages(detail: pm.SessionDetail) -> list[MessageView]:
    turns = {t.turn: t for t in detail.turns}
    calls = [c for t in detail.turns for c in t.tool_calls if not c.superseded]
    by_step: dict[tuple[str, int, int], list[ToolCallView]] = {}
    out: list[MessageView] = []
    for c in calls:
        if c.result_version != c.version:  # not a result recorded without its call
            view = ToolCallView(call_id=c.call_id, tool=c.tool, arguments=c.arguments)
            by_step.setdefault((c.turn, c.attempt, c.step), []).append(view)
        if c.result_version:
            out.append(_tool_message(c))
    for m in detail.messages:
        if not m.superseded:
            out.append(_message(m, turns.get(m.turn), by_step))
    out.sort(key=lambda v: v.version)
    return out


def _tool_message(c: pm.ToolCallView) -> MessageView:
    """A tool result: its summary stands for its content (the view keeps no more)."""
    return MessageView(
        role="tool", text=c.summary, turn_id=c.turn or None, step=c.step, call_id=c.call_id,
        tool=c.tool, is_error=c.is_error, duration_ms=c.duration_ms, version=c.result_version,
        position=0, at=c.result_at,
    )  # fmt: skip


def _message(
    m: pm.MessageView,
    turn: pm.TurnView | None,
    by_step: dict[tuple[str, int, int], list[ToolCallView]],
) -> MessageView:
    turn_id, v, p, at = m.turn or None, m.version, m.position, m.at
    if m.role == "user":
        return MessageView(role="user", text=m.text, turn_id=turn_id, version=v, position=p, at=at)
    if _is_partial(m, turn):
        return MessageView(
            role="assistant", text=m.text, turn_id=turn_id, finish_reason="cancelled",
            version=v, position=p, at=at,
        )  # fmt: skip
    return MessageView(
        role="assistant", text=m.text, turn_id=turn_id, step=m.step, reasoning=m.reasoning,
        tool_calls=by_step.get((m.turn, m.attempt, m.step), []),
        finish_reason=m.finish_reason or None,
        usage=UsageView(input_tokens=m.input_tokens, output_tokens=m.output_tokens),
        version=v, position=p, at=at,
    )  # fmt: skip


def _turn(t: pm.TurnView, usage: Usage | None) -> TurnView:
    done = t.status == "completed"
    return TurnView(
        turn_id=t.turn,
        status=cast(Status, t.status),
        attempt=t.attempt,
        provider=t.provider,
        model=t.model,
        cancel_requested=t.cancel_requested,
        error=t.error_message if t.status == "failed" else "",
        fallbacks=[
            FallbackView(fallback=f.kind, reason=f.reason, from_=f.from_, to=f.to)
            for f in t.fallbacks
            if not f.superseded
        ],
        usage=usage_view(usage) if done and usage is not None else None,
        ttft_ms=t.ttft_ms if done else None,
        duration_ms=t.duration_ms if done else None,
    )


def to_detail(
    detail: pm.SessionDetail, usage: dict[str, Usage], started: SessionStarted | None
) -> SessionDetail:
    """The gateway's view of a session from the projections' (and its first event)."""
    s = detail.summary
    turns = [_turn(t, usage.get(t.turn)) for t in detail.turns]
    first = started or SessionStarted(owner=s.owner)
    return SessionDetail(
        id=s.session,
        owner=s.owner,
        title=s.title,
        provider=s.provider,
        model=s.model,
        system_prompt=first.system_prompt,
        tool_servers=list(first.tool_servers),
        params=params_view(first.params),
        created_at=s.created_at,
        updated_at=s.updated_at,
        version=s.version,
        position=s.position,
        in_flight=next((t.turn_id for t in turns if t.status == "running"), None),
        pending=[t.turn_id for t in turns if t.status == "pending"],
        turns=turns,
        messages=_messages(detail),
    )
