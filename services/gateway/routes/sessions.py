"""``/v1/sessions``: create, list the caller's own, read one (optionally as of a version)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get, post, route
from litestar.enums import HttpMethod
from litestar.params import JSONBody, Parameter

from threadline.events.ids import new_id
from threadline.events.schema import GenerationParams, SessionStarted
from threadline.events.store import NewEvent
from threadline.services.gateway.catalog import check_choice
from threadline.services.gateway.context import GW, principal_of
from threadline.services.gateway.errors import Problem, error_responses, session_not_found
from threadline.services.gateway.history import InvalidCursor
from threadline.services.gateway.models import (
    CreateSession,
    SessionCreated,
    SessionDetail,
    SessionPage,
)
from threadline.services.gateway.routes.params import (
    IdempotencyKey,
    SessionId,
    WaitFor,
    derived_id,
    position_query,
    same_request,
)

#: ``<created_at>.<session id>`` of the last session of the previous page
CURSOR_PATTERN = r"^([0-9]{1,19}\.[A-Za-z0-9_-]{1,64})?$"


@route("/sessions", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
async def sessions_options() -> Response[None]:
    """``Allow`` for ``/sessions``. Registered before its GET and POST: Litestar's automatic
    OPTIONS handler for a path with two handlers lists only the first one's method."""
    return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})


@post(
    "/sessions",
    status_code=201,
    summary="Start a session",
    description="Appends `session_started` owned by the caller. Provider, model and tool "
    "servers are checked against the configuration (422 naming the field).",
    responses=error_responses(400, 401, 409, 413, 422),
)
async def create_session(
    request: Request[Any, Any, Any],
    gw: GW,
    idempotency_key: IdempotencyKey = "",
    data: JSONBody[CreateSession | None] = None,
) -> SessionCreated:
    principal = principal_of(request)
    body = data or CreateSession()
    provider, model = check_choice(gw.catalog, body.provider, body.model, body.tool_servers)
    p = body.params
    event = SessionStarted(
        owner=principal.owner,
        title=body.title,
        provider=provider,
        model=model,
        system_prompt=body.system_prompt,
        tool_servers=tuple(body.tool_servers),
        params=GenerationParams(
            temperature=p.temperature,
            max_tokens=p.max_tokens,
            top_p=p.top_p,
            max_steps=p.max_steps,
        ),
    )
    if idempotency_key:
        session = derived_id(principal.owner, idempotency_key)
        new = NewEvent(event=event, actor=principal.actor, key=f"create:{idempotency_key}")
    else:
        session = new_id()
        new = NewEvent(event=event, actor=principal.actor)
    (rec,) = await gw.store.append(session, new, expected_version=0)
    same_request(rec, event)
    gw.owners.remember(session, principal.owner)
    return SessionCreated(id=session, position=rec.position, version=rec.version)


@get(
    "/sessions",
    summary="List your sessions",
    description="Newest first. Pass `next_cursor` back as `cursor` for the next page.",
    responses=error_responses(401, 409, 422),
)
async def list_sessions(
    request: Request[Any, Any, Any],
    gw: GW,
    limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    cursor: Annotated[
        str,
        Parameter(pattern=CURSOR_PATTERN, required=False, description="From `next_cursor`."),
    ] = "",
    wait_for: WaitFor = 0,
) -> SessionPage:
    principal = principal_of(request)
    await gw.caught_up(wait_for)
    try:
        page = await gw.history.list_sessions(principal.owner, limit=limit, cursor=cursor or None)
        return page
    except InvalidCursor:
        raise Problem(
            422, "invalid_request", "cursor: not a cursor from this API", field="cursor"
        ) from None


@get(
    "/sessions/{session_id:str}",
    summary="Read a session",
    description="Summary, turns and message history with tool calls. `at=VERSION` gives the "
    "state as of that version; `wait_for=POSITION` waits until the view includes it.",
    responses=error_responses(401, 404, 409, 422),
)
async def get_session(
    request: Request[Any, Any, Any],
    gw: GW,
    session_id: SessionId,
    at: Annotated[int, position_query("The state as of this version (0: the latest).")] = 0,
    wait_for: WaitFor = 0,
) -> SessionDetail:
    session = await gw.owners.readable(principal_of(request), session_id)
    await gw.caught_up(wait_for)
    detail = await gw.history.get_session(session, at=at or None)
    if detail is None:
        if at:
            raise Problem(404, "version_not_found", f"the session has no version {at}", field="at")
        raise session_not_found()
    return detail
