"""A session's history: the rendering of the session model, and the readers' ports.

``GET /v1/sessions/{id}`` (and ``?at=VERSION``) is always :func:`read_session`: the fold
of the session's events (:class:`~threadline.events.fold.SessionState`, at the head from
the gateway's :class:`~threadline.events.sessions.SessionCache`) rendered by
:func:`session_detail`, a pure function with no rule of its own. What may come from
elsewhere is the list of an owner's sessions and the usage report:
:class:`HistoryReader` is that port, served from the log
(:class:`~threadline.services.gateway.store_history.StoreHistory`, the default) or from
the projections (:class:`~threadline.services.gateway.projection_history.ProjectionHistory`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol, TypeVar, assert_never

import msgspec

from threadline.base.errors import SessionNotFound
from threadline.events import schema as ev
from threadline.events.conversation import AssistantTurn
from threadline.events.fold import Approval, Entry, SessionState, TurnState, fold
from threadline.events.sessions import SessionCache
from threadline.projections.model import UsageReport
from threadline.services.gateway.models import (
    ApprovalView,
    ContextView,
    FallbackView,
    MessageView,
    Params,
    QuarantinedView,
    SessionDetail,
    SessionPage,
    TurnView,
)

V = TypeVar("V", bound=msgspec.Struct)


class HistoryReader(Protocol):
    """The sessions list (and read-your-writes for it), and the usage report."""

    async def list_sessions(self, owner: str, *, limit: int, cursor: str | None) -> SessionPage:
        """The owner's sessions, newest first. Raises ``InvalidInput`` for a cursor that
        is not one."""
        ...

    async def wait(self, position: int, *, timeout_s: float) -> bool:
        """Wait until reads reflect the log up to ``position``; False on timeout."""
        ...

    async def usage(self, owner: str, *, day: str | None) -> UsageReport:
        """The owner's usage per day, provider and model (one UTC day, or every day).
        Raises ``InvalidInput`` for a day that is not a date; a reader without the
        projections answers 501."""
        ...


async def read_session(
    sessions: SessionCache, session: str, *, at: int | None = None
) -> SessionDetail | None:
    """The session as of version ``at`` (default: now; from the cache), folded from the
    log; None if there is no such session or version."""
    if at is None:
        with contextlib.suppress(SessionNotFound):
            return session_detail(await sessions.get(session))
        return None
    state: SessionState | None = None
    async with contextlib.aclosing(sessions.store.entries(session, to_version=at)) as records:
        async for rec in records:
            state = fold((rec,), state)
    return None if state is None or state.version < at else session_detail(state)


def session_detail(state: SessionState) -> SessionDetail:
    """The HTTP view of a session's state."""
    return view_of(
        SessionDetail,
        state,
        id=state.session,
        tool_servers=list(state.tool_servers),
        params=view_of(Params, state.params),
        pending=list(state.pending),
        turns=[turn_view(turn) for turn in state.turns.values()],
        messages=[message_view(entry) for entry in state.transcript()],
        quarantined=[QuarantinedView(position=p, reason=r) for p, r in state.quarantined.items()],
    )


def turn_view(t: TurnState) -> TurnView:
    done = t.completed
    return view_of(
        TurnView,
        t,
        rolled_back=t.rollback,
        partial_text=t.partial_text if t.status == "running" else "",
        fallbacks=[view_of(FallbackView, f) for f in t.fallbacks],
        usage=done.usage if done else None,
        ttft_ms=done.ttft_ms if done else None,
        duration_ms=done.duration_ms if done else None,
        # the cut the model was sent the turn with; None: the whole conversation
        context=view_of(ContextView, t.context) if t.context and t.context.turns else None,
        approvals=[approval_view(a) for a in t.approvals.values()],
    )


def approval_view(a: Approval) -> ApprovalView:
    d = a.decision
    status = "waiting" if d is None else "granted" if a.granted else "denied"
    return view_of(
        ApprovalView, a.request, status=status, reason=d.reason if d else "", decided_by=a.actor
    )


def message_view(entry: Entry) -> MessageView:
    turn, v, p, at = entry.turn, entry.version, entry.position, entry.at
    e = entry.message
    match entry.event:
        case ev.UserMessage(text=text):
            return MessageView(role="user", text=text, turn_id=turn, version=v, position=p, at=at)
        case ev.AssistantMessage() as step:
            calls = e.tool_calls if isinstance(e, AssistantTurn) else ()
            return MessageView(
                role="assistant", text=step.text, turn_id=turn, step=step.step,
                reasoning=step.reasoning,
                tool_calls=list(calls), finish_reason=step.finish_reason, usage=step.usage,
                version=v, position=p, at=at,
            )  # fmt: skip
        case ev.ToolResult() as result:
            return MessageView(
                role="tool", text=result.content, turn_id=turn, step=result.step,
                call_id=result.call_id, tool=result.tool, is_error=result.is_error,
                duration_ms=result.duration_ms, version=v, position=p, at=at,
            )  # fmt: skip
        case ev.TurnCancelled(partial_text=text):
            return MessageView(
                role="assistant", text=text, turn_id=turn, finish_reason="cancelled",
                version=v, position=p, at=at,
            )  # fmt: skip
        case _:
            assert_never(entry.event)


def view_of(view: type[V], value: object, **given: Any) -> V:
    """``value`` as ``view``: each of the view's fields from ``given``, else from the
    attribute of ``value`` of that name (an event without its tag, a state)."""
    fields = view.__struct_fields__
    return view(**{f: given[f] if f in given else getattr(value, f) for f in fields})
