"""Writes to a session: a user message (starts a turn) and a cancel request.

Both are idempotent with ``Idempotency-Key`` (for messages also ``client_message_id``):
the key becomes the event's idempotency key, so a retry appends nothing and gets the
same turn id and position back.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import JSONBody

from threadline.events.fold import fold
from threadline.events.ids import new_id
from threadline.events.schema import CancelRequested, UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.services.gateway.context import GW, Gateway, principal_of
from threadline.services.gateway.errors import Problem, error_responses, session_not_found
from threadline.services.gateway.models import Cancel, PostMessage, TurnAccepted
from threadline.services.gateway.routes.params import IdempotencyKey, SessionId, same_request


def _accepted(rec: Recorded) -> TurnAccepted:
    return TurnAccepted(turn_id=rec.turn or "", position=rec.position, version=rec.version)


async def _append(gw: Gateway, session: str, new: NewEvent) -> TurnAccepted:
    """Append ``new``; a retry (its key stored already) must carry the same event."""
    (rec,) = await gw.store.append(session, new)
    same_request(rec, new.event)
    return _accepted(rec)


@post(
    "/sessions/{session_id:str}/messages",
    status_code=202,
    summary="Send a message",
    description="Appends `user_message` with a new turn id; the agent answers on the event "
    "stream. A retry with the same `Idempotency-Key` (or `client_message_id`) appends "
    "nothing and returns the same turn id and position.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def post_message(
    request: Request[Any, Any, Any],
    gw: GW,
    session_id: SessionId,
    data: JSONBody[PostMessage],
    idempotency_key: IdempotencyKey = "",
) -> TurnAccepted:
    principal = principal_of(request)
    session = await gw.owners.writable(principal, session_id)
    event = UserMessage(text=data.text, client_message_id=data.client_message_id or "")
    given = idempotency_key or data.client_message_id
    key = f"message:{given}" if given else new_id()  # no key: a fresh one (NewEvent's default)
    new = NewEvent(event=event, actor=principal.actor, turn=new_id(), key=key)
    return await _append(gw, session, new)


@post(
    "/sessions/{session_id:str}/cancel",
    status_code=202,
    summary="Stop a turn",
    description="Appends `cancel_requested` for `turn_id`, or else the running turn (or the "
    "next pending one). 409 when there is nothing to stop.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422),
)
async def cancel_turn(
    request: Request[Any, Any, Any],
    gw: GW,
    session_id: SessionId,
    idempotency_key: IdempotencyKey = "",
    data: JSONBody[Cancel | None] = None,
) -> TurnAccepted:
    principal = principal_of(request)
    session = await gw.owners.writable(principal, session_id)
    body = data or Cancel()
    records = await gw.store.load(session)
    if not records:
        raise session_not_found()
    key = f"cancel:{idempotency_key}" if idempotency_key else None
    for rec in records:
        if key is not None and rec.envelope.key == key:
            return _accepted(rec)  # a retry
    state = fold(records)
    pending = state.pending
    turn = body.turn_id or state.in_flight or (pending[0] if pending else None)
    if turn is None:
        raise Problem(409, "nothing_to_cancel", "no turn is running or waiting")
    if turn not in state.turns:
        raise Problem(404, "turn_not_found", f"the session has no turn {turn!r}", field="turn_id")
    if state.is_terminal(turn):
        raise Problem(409, "turn_finished", f"turn {turn!r} has already ended")
    if state.turns[turn].cancel_requested:  # already asked: answer with that request
        for rec in reversed(records):
            if isinstance(rec.event, CancelRequested) and rec.turn == turn:
                return _accepted(rec)
    event = CancelRequested(reason=body.reason)
    new = NewEvent(event=event, actor=principal.actor, turn=turn, key=key or new_id())
    return await _append(gw, session, new)
