"""``/v1/sessions``: create, list the caller's own, read one (optionally as of a version),
fork one (a new session of the caller's, continuing from another session's finished turns
up to a version: ``threadline.services.commands``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Response, get, patch, post, route
from litestar.enums import HttpMethod
from litestar.params import JSONBody, Parameter
from msgspec.structs import asdict

from threadline.base.errors import InvalidInput
from threadline.events.schema import GenerationParams
from threadline.services.commands import Fork, Rename
from threadline.services.gateway.context import GW, Caller
from threadline.services.gateway.errors import (
    Problem,
    error_responses,
    session_not_found,
    unprocessable,
)
from threadline.services.gateway.history import read_session
from threadline.services.gateway.models import (
    CreateSession,
    ForkSession,
    RenameSession,
    SessionCreated,
    SessionDetail,
    SessionPage,
)
from threadline.services.gateway.routes.params import (
    IdempotencyKey,
    SessionId,
    WaitFor,
    position_query,
)

#: ``<created_at>.<session id>`` of the last session of the previous page
CURSOR_PATTERN = r"^([0-9]{1,19}\.[A-Za-z0-9_-]{1,64})?$"


@route("/sessions", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
async def sessions_options() -> Response[None]:
    """``Allow`` for ``/sessions``. Registered before its GET and POST: Litestar's automatic
    OPTIONS handler for a path with two handlers lists only the first one's method."""
    return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})


@route("/sessions/{session_id:str}", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
async def session_options(session_id: SessionId) -> Response[None]:
    """``Allow`` for ``/sessions/{id}`` (GET and PATCH), as :func:`sessions_options`."""
    return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, PATCH"})


@post(
    "/sessions",
    status_code=201,
    summary="Start a session",
    description="Appends `session_started` owned by the caller. Provider, model and tool "
    "servers are checked against the configuration (422 naming the field).",
    responses=error_responses(400, 401, 409, 413, 422, 429),
)
async def create_session(
    principal: Caller,
    gw: GW,
    idempotency_key: IdempotencyKey = "",
    data: JSONBody[CreateSession | None] = None,
) -> SessionCreated:
    body = data or CreateSession()
    params = GenerationParams(**asdict(body.params))
    rec = await gw.commands.create_session(
        body.start(principal, params=params, key=idempotency_key)
    )
    gw.owners.remember(rec.session, principal.owner)
    return SessionCreated(id=rec.session, position=rec.position, version=rec.version)


@get(
    "/sessions",
    summary="List your sessions",
    description="Newest first. Pass `next_cursor` back as `cursor` for the next page.",
    responses=error_responses(401, 409, 422),
)
async def list_sessions(
    principal: Caller,
    gw: GW,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    cursor: Annotated[
        str,
        Parameter(pattern=CURSOR_PATTERN, required=False, description="From `next_cursor`."),
    ] = "",
    wait_for: WaitFor = 0,
) -> SessionPage:
    await gw.caught_up(wait_for)
    try:
        return await gw.history.list_sessions(principal.owner, limit=limit, cursor=cursor or None)
    except InvalidInput:
        raise unprocessable("cursor", "not a cursor from this API") from None


@get(
    "/sessions/{session_id:str}",
    summary="Read a session",
    description="Summary, turns and message history with tool calls. `at=VERSION` gives the "
    "state as of that version; `wait_for=POSITION` waits until the view includes it.",
    responses=error_responses(401, 404, 409, 422),
)
async def get_session(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    at: Annotated[int, position_query("The state as of this version (0: the latest).")] = 0,
    wait_for: WaitFor = 0,
) -> SessionDetail:
    session = await gw.owners.readable(principal, session_id)
    await gw.caught_up(wait_for)
    detail = await read_session(gw.sessions, session, at=at or None)
    if detail is None:
        if at:
            raise Problem(404, "version_not_found", f"the session has no version {at}", field="at")
        raise session_not_found()
    return detail


@patch(
    "/sessions/{session_id:str}",
    summary="Rename a session",
    description="Appends `session_renamed`: `title` replaces the session's title (the one "
    "it started with, or its first message's first line) in the list and the session. "
    "A retry with the same `Idempotency-Key` renames once.",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def rename_session(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    data: JSONBody[RenameSession],
    idempotency_key: IdempotencyKey = "",
) -> SessionCreated:
    session = await gw.owners.writable(principal, session_id)
    rec = await gw.commands.rename(
        Rename(session=session, actor=principal.actor, title=data.title, key=idempotency_key)
    )
    return SessionCreated(id=rec.session, position=rec.position, version=rec.version)


@post(
    "/sessions/{session_id:str}/fork",
    status_code=201,
    summary="Fork a session",
    description="A new session owned by the caller whose history is a copy of this "
    "session's turns that had ended by `version` (the attempt that counted), with the "
    "same settings; `provider` and `model` may be replaced (checked against the catalog). "
    "Answers the new id and the position and version of its last event (pass `position` "
    "as `wait_for`). A retry with the same `Idempotency-Key` creates one fork.",
    responses=error_responses(400, 401, 404, 409, 413, 422, 429),
)
async def fork(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    data: JSONBody[ForkSession],
    idempotency_key: IdempotencyKey = "",
) -> SessionCreated:
    source = await gw.owners.readable(principal, session_id)
    last = await gw.commands.fork(
        Fork(
            source=source,
            version=data.version,
            actor=principal.actor,
            owner=principal.owner,
            provider=data.provider,
            model=data.model,
            key=idempotency_key,
        )
    )
    gw.owners.remember(last.session, principal.owner)
    return SessionCreated(id=last.session, position=last.position, version=last.version)
