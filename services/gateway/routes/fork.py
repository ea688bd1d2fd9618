"""``POST /v1/sessions/{id}/fork``: a new session of the caller's, continuing from
another session's finished turns up to a version (``threadline.services.commands``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import JSONBody

from threadline.services.commands import Fork
from threadline.services.gateway.context import GW, principal_of
from threadline.services.gateway.errors import error_responses
from threadline.services.gateway.models import ForkSession, SessionCreated
from threadline.services.gateway.routes.params import IdempotencyKey, SessionId


@post(
    "/sessions/{session_id:str}/fork",
    status_code=201,
    summary="Fork a session",
    description="A new session owned by the caller whose history is a copy of this "
    "session's turns that had ended by `version` (the attempt that counted), with the "
    "same settings; `provider` and `model` may be replaced (checked against the catalog). "
    "Answers the new id and the position and version of its last event (pass `position` "
    "as `wait_for`). A retry with the same `Idempotency-Key` creates one fork.",
    responses=error_responses(400, 401, 404, 409, 413, 422),
)
async def fork(
    request: Request[Any, Any, Any],
    gw: GW,
    session_id: SessionId,
    data: JSONBody[ForkSession],
    idempotency_key: IdempotencyKey = "",
) -> SessionCreated:
    principal = principal_of(request)
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
