"""``POST /api/chat`` and ``GET /api/chat/{id}/stream``: the AI SDK's ``useChat`` endpoints.

``DefaultChatTransport({api: '<gateway>/api/chat'})`` posts a chat's messages to
``/api/chat`` and, with ``useChat({resume: true})``, reconnects with
``GET /api/chat/{id}/stream``; ``POST /api/chat/{id}/cancel`` makes ``stop()`` durable.
They need the bearer token like every ``/v1`` route; the first two answer the UI Message
Stream protocol v1. They are left out of the OpenAPI document: the AI SDK defines the
protocol, and its request body is open-ended.
"""

from __future__ import annotations

import contextlib

from litestar import get, post
from litestar.params import FromPath, JSONBody
from litestar.response.base import ASGIResponse
from litestar.types import ControllerRouterHandler

from threadline.events.fold import TurnState
from threadline.events.store import Recorded
from threadline.services.commands import AnswerApproval
from threadline.services.commands.session import current_turn
from threadline.services.gateway.aisdk.approvals import answers_of, record, seen_until
from threadline.services.gateway.aisdk.commands import ChatRequest, open_chat, submit
from threadline.services.gateway.aisdk.stream import respond
from threadline.services.gateway.auth import Principal
from threadline.services.gateway.context import GW, Caller, Gateway, Slot
from threadline.services.gateway.models import Cancel, TurnAccepted
from threadline.services.gateway.routes.messages import cancel
from threadline.services.gateway.routes.params import IdempotencyKey, LastEventId
from threadline.services.gateway.sse import SSEResponse


@post("/chat", include_in_schema=False)
async def post_chat(principal: Caller, gw: GW, data: JSONBody[ChatRequest]) -> SSEResponse:
    """Append the new user message of a chat (creating it first) and stream the answer."""
    session = await chat_session(gw, principal, data.id)
    if answers := answers_of(data, session, principal.actor):
        return await _approvals(gw, principal, session, answers)
    with Slot(gw, principal, session).held() as slot:  # first: a 429 appends nothing
        await open_chat(gw, principal, session, data)
        asked = await submit(gw, principal, session, data)
        await slot.join()
        stored = [rec async for rec in gw.store.read(session, from_version=asked.version)]
    assert asked.turn is not None
    return respond(slot, asked.turn, stored)


async def _approvals(
    gw: Gateway, principal: Principal, session: str, answers: list[AnswerApproval]
) -> SSEResponse:
    """Record the chat's answers to tool approvals; stream their turn on from where the
    client's copy stopped (``approvals.py``)."""
    await gw.owners.writable(principal, session)
    with Slot(gw, principal, session).held() as slot:
        answered = await record(gw, session, answers)
        await slot.join()
        state = await gw.sessions.get(session)
        records = await _turn_records(gw, session, state.turns[answered.turn])
    after = seen_until(records, answered.turn, answered.decided_at or records[-1].position + 1)
    return respond(slot, answered.turn, records, after=after, notes=answered.refused)


@get("/chat/{chat_id:str}/stream", include_in_schema=False)
async def resume_chat(
    principal: Caller,
    gw: GW,
    chat_id: FromPath[str],
    last_event_id: LastEventId = "",
) -> ASGIResponse:
    """Replay the chat's unfinished turn from its start, then follow it; 204 if none,
    or if the chat has no session yet (``useChat({resume: true})`` on a new chat).

    With ``Last-Event-ID`` only the chunks after that position are sent (the rest of the
    message the client already has). The turn comes from the session cache and only its
    own events are read (from its user message on), whatever the session's length."""
    session = await chat_session(gw, principal, chat_id)
    if not await gw.owners.owns(principal, session):
        return ASGIResponse(status_code=204)  # a chat not started yet: nothing to resume
    with Slot(gw, principal, session).held() as slot:
        await slot.join()
        state = await gw.sessions.get(session)
        turn = current_turn(state)
        records = [] if turn is None else await _turn_records(gw, session, state.turns[turn])
    if turn is None:
        slot.release()
        return ASGIResponse(status_code=204)
    return respond(slot, turn, records, after=int(last_event_id or 0))


@post("/chat/{chat_id:str}/cancel", status_code=202, include_in_schema=False)
async def cancel_chat(
    principal: Caller,
    gw: GW,
    chat_id: FromPath[str],
    idempotency_key: IdempotencyKey = "",
    data: JSONBody[Cancel | None] = None,
) -> TurnAccepted:
    """Stop the chat's running turn (``useChat``'s ``stop()`` only closes the connection):
    ``POST /v1/sessions/{id}/cancel`` on the chat's session, with the same body."""
    session = await gw.owners.writable(principal, await chat_session(gw, principal, chat_id))
    return await cancel(gw, principal, session, data or Cancel(), idempotency_key)


async def chat_session(gw: Gateway, principal: Principal, chat: str) -> str:
    """The session of the caller's chat ``chat``: the session of that id when it is the
    caller's own, else their ``ai-`` session of the chat (derived, per owner). Another
    owner's session is never named by a chat id: whether it exists stays unknown."""
    if await gw.owners.owns(principal, chat):
        return chat
    return gw.commands.ids.chat(principal.owner, chat)


async def _turn_records(gw: Gateway, session: str, turn: TurnState) -> list[Recorded]:
    """The session's events from the turn's user message (else its start) on."""
    start = turn.user.version if turn.user is not None else turn.started
    reading = gw.store.read(session, from_version=start)
    async with contextlib.aclosing(reading) as records:
        return [rec async for rec in records]


#: the handlers, relative to the router they are mounted in
AISDK_ROUTES: tuple[ControllerRouterHandler, ...] = (post_chat, resume_chat, cancel_chat)
