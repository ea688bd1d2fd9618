"""Writes to a session: a user message (starts a turn), a retry and a cancel request.

Both are idempotent with ``Idempotency-Key`` (for messages also ``client_message_id``):
a retry appends nothing and gets the same turn id and position back
(``threadline.services.commands``).
"""

from __future__ import annotations

from typing import Annotated

from litestar import post
from litestar.params import JSONBody, Parameter

from threadline.events import schema as ev
from threadline.events.store import Recorded
from threadline.services.commands import AnswerApproval, CancelTurn, Retry, SendMessage
from threadline.services.gateway.auth import Principal
from threadline.services.gateway.context import GW, Caller, Gateway
from threadline.services.gateway.errors import error_responses
from threadline.services.gateway.models import (
    ApprovalAnswer,
    ApprovalDecided,
    Cancel,
    PostMessage,
    RetryTurn,
    TurnAccepted,
)
from threadline.services.gateway.routes.params import IdempotencyKey, SessionId


def _accepted(rec: Recorded) -> TurnAccepted:
    return TurnAccepted(turn_id=rec.turn or "", position=rec.position, version=rec.version)


@post(
    "/sessions/{session_id:str}/messages",
    status_code=202,
    summary="Send a message",
    description="Appends `user_message` with a new turn id; the agent answers on the event "
    "stream. A retry with the same `Idempotency-Key` (or `client_message_id`) appends "
    "nothing and returns the same turn id and position.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def post_message(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    data: JSONBody[PostMessage],
    idempotency_key: IdempotencyKey = "",
) -> TurnAccepted:
    session = await gw.owners.writable(principal, session_id)
    message = SendMessage(
        session=session,
        actor=principal.actor,
        text=data.text,
        key=idempotency_key or data.client_message_id or "",
        client_message_id=data.client_message_id or "",
    )
    return _accepted(await gw.commands.post_message(message))


@post(
    "/sessions/{session_id:str}/cancel",
    status_code=202,
    summary="Stop a turn",
    description="Appends `cancel_requested` for `turn_id`, or else the running turn (or the "
    "next pending one). 409 when there is nothing to stop.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def cancel_turn(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    idempotency_key: IdempotencyKey = "",
    data: JSONBody[Cancel | None] = None,
) -> TurnAccepted:
    session = await gw.owners.writable(principal, session_id)
    return await cancel(gw, principal, session, data or Cancel(), idempotency_key)


async def cancel(
    gw: Gateway, principal: Principal, session: str, body: Cancel, key: str
) -> TurnAccepted:
    """Ask the caller's ``session`` to stop ``body.turn_id`` (else its running turn)."""
    command = CancelTurn(
        session=session,
        actor=principal.actor,
        turn=body.turn_id or "",
        reason=body.reason,
        key=key,
    )
    return _accepted(await gw.commands.cancel(command))


@post(
    "/sessions/{session_id:str}/retry",
    status_code=202,
    summary="Retry a turn",
    description="Asks `turn_id`'s question again (default: the latest turn's) as a new turn "
    "and returns it. A failed turn's question is not in the model's context: a retry is how "
    "it gets asked again. Retrying the same turn again returns the same new turn; while "
    "the turn runs, it is returned itself.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def retry_turn(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    data: JSONBody[RetryTurn | None] = None,
) -> TurnAccepted:
    session = await gw.owners.writable(principal, session_id)
    turn = (data or RetryTurn()).turn_id or ""
    return _accepted(
        await gw.commands.retry(Retry(session=session, actor=principal.actor, turn=turn))
    )


@post(
    "/sessions/{session_id:str}/approvals/{call_id:str}",
    status_code=200,
    summary="Approve or deny a tool call",
    description="Decides a tool call waiting for a person's approval (an `approval_requested` "
    "event): appends `approval_granted` or `approval_denied` with the caller as actor and "
    "`reason`; the turn carries on (a denied call's result tells the model so). The first "
    "decision wins: the same answer again returns it, another one (or one after the "
    "deadline, which denied it) is a 409 `approval_decided`; 404 `approval_not_found`; 409 "
    "`turn_finished` when the turn ended (stopped) before it was decided.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def answer_approval(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    call_id: Annotated[str, Parameter(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")],
    data: JSONBody[ApprovalAnswer],
) -> ApprovalDecided:
    session = await gw.owners.writable(principal, session_id)
    answer = AnswerApproval(
        session=session, actor=principal.actor, call_id=call_id, approved=data.approved,
        reason=data.reason,
    )  # fmt: skip
    rec = await gw.commands.answer_approval(answer)
    return ApprovalDecided(
        call_id=call_id, approved=isinstance(rec.event, ev.ApprovalGranted), turn_id=rec.turn or "",
        position=rec.position, version=rec.version,
    )  # fmt: skip
