"""The read side the gateway needs, and the session view folded from raw events.

:class:`HistoryReader` is the port: the projections' reader can stand behind it, and
:class:`~threadline.services.gateway.store_history.StoreHistory` (the default) answers
from the event store itself. :func:`session_detail` is pure: records in, view out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from threadline.events.fold import fold
from threadline.events.schema import (
    AssistantMessage,
    Fallback,
    GenerationParams,
    ToolResult,
    TurnCancelled,
    TurnCompleted,
    TurnStarted,
    Usage,
    UserMessage,
)
from threadline.events.store import Recorded
from threadline.services.gateway.models import (
    FallbackView,
    MessageView,
    ParamsView,
    SessionDetail,
    SessionPage,
    ToolCallView,
    TurnView,
    UsageReport,
    UsageView,
)


class InvalidCursor(ValueError):
    """A ``cursor`` this reader did not hand out."""


class HistoryReader(Protocol):
    async def list_sessions(self, owner: str, *, limit: int, cursor: str | None) -> SessionPage:
        """The owner's sessions, newest first. Raises :class:`InvalidCursor`."""
        ...

    async def get_session(self, session: str, *, at: int | None = None) -> SessionDetail | None:
        """The session as of version ``at`` (default: now); None if there is no such version."""
        ...

    async def wait(self, position: int, *, timeout_s: float) -> bool:
        """Wait until views reflect the log up to ``position``; False on timeout."""
        ...


@runtime_checkable
class UsageReader(Protocol):
    """What ``GET /v1/usage`` needs; readers over the projections have it."""

    async def usage(self, owner: str, *, day: str | None) -> UsageReport:
        """The owner's usage per day, provider and model (one UTC day, or every day).
        Raises ``InvalidInput`` for a day that is not a date."""
        ...


def usage_view(usage: Usage) -> UsageView:
    return UsageView(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cached_input_tokens=usage.cached_input_tokens,
    )


def params_view(p: GenerationParams) -> ParamsView:
    return ParamsView(
        temperature=p.temperature, max_tokens=p.max_tokens, top_p=p.top_p, max_steps=p.max_steps
    )


def _latest_attempts(records: Sequence[Recorded]) -> dict[str, int]:
    latest: dict[str, int] = {}
    for rec in records:
        if isinstance(rec.event, TurnStarted) and rec.turn is not None:
            latest[rec.turn] = max(latest.get(rec.turn, 0), rec.event.attempt)
    return latest


def _message(rec: Recorded) -> MessageView | None:
    e = rec.event
    v, p, at = rec.version, rec.position, rec.envelope.at
    if isinstance(e, UserMessage):
        return MessageView(role="user", text=e.text, turn_id=rec.turn, version=v, position=p, at=at)
    if isinstance(e, AssistantMessage):
        return MessageView(
            role="assistant",
            text=e.text,
            turn_id=rec.turn,
            step=e.step,
            reasoning=e.reasoning,
            tool_calls=[
                ToolCallView(call_id=c.call_id, tool=c.tool, arguments=c.arguments)
                for c in e.tool_calls
            ],
            finish_reason=e.finish_reason,
            usage=usage_view(e.usage),
            version=v,
            position=p,
            at=at,
        )
    if isinstance(e, ToolResult):
        return MessageView(
            role="tool",
            text=e.content,
            turn_id=rec.turn,
            step=e.step,
            call_id=e.call_id,
            tool=e.tool,
            is_error=e.is_error,
            duration_ms=e.duration_ms,
            version=v,
            position=p,
            at=at,
        )
    if isinstance(e, TurnCancelled) and e.partial_text:
        return MessageView(
            role="assistant",
            text=e.partial_text,
            turn_id=rec.turn,
            finish_reason="cancelled",
            version=v,
            position=p,
            at=at,
        )
    return None


def session_detail(records: Sequence[Recorded]) -> SessionDetail:
    """The view of a session from its records (version order, at least one)."""
    state = fold(records)
    latest = _latest_attempts(records)
    messages: list[MessageView] = []
    completed: dict[str, TurnCompleted] = {}
    fallbacks: dict[str, list[FallbackView]] = {}
    for rec in records:
        turn = rec.turn
        if (
            turn is not None
            and rec.attempt is not None
            and rec.attempt != latest.get(turn, rec.attempt)
        ):
            continue  # a superseded attempt
        e = rec.event
        if isinstance(e, TurnCompleted) and turn is not None:
            completed.setdefault(turn, e)
        elif isinstance(e, Fallback) and turn is not None:
            view = FallbackView(fallback=e.fallback, reason=e.reason, from_=e.from_, to=e.to)
            fallbacks.setdefault(turn, []).append(view)
        message = _message(rec)
        if message is not None:
            messages.append(message)
    turns = []
    for turn_id in state.order:
        t = state.turns[turn_id]
        done = completed.get(turn_id)
        turns.append(
            TurnView(
                turn_id=turn_id,
                status=t.status,
                attempt=t.attempt,
                provider=t.provider,
                model=t.model,
                cancel_requested=t.cancel_requested,
                partial_text=t.partial_text if t.status == "running" else "",
                error=t.error,
                fallbacks=fallbacks.get(turn_id, []),
                usage=usage_view(done.usage) if done else None,
                ttft_ms=done.ttft_ms if done else None,
                duration_ms=done.duration_ms if done else None,
            )
        )
    return SessionDetail(
        id=state.session,
        owner=state.owner,
        title=state.title,
        provider=state.provider,
        model=state.model,
        system_prompt=state.system_prompt,
        tool_servers=list(state.tool_servers),
        params=params_view(state.params),
        created_at=records[0].envelope.at,
        updated_at=records[-1].envelope.at,
        version=state.version,
        position=state.position,
        in_flight=state.in_flight,
        pending=list(state.pending),
        turns=turns,
        messages=messages,
    )
