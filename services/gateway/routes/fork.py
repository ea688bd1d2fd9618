"""``POST /v1/sessions/{id}/fork``: a new session of the caller's, continuing from
another session's finished turns up to a version (``threadline.projections.fork``)."""

from __future__ import annotations

import contextlib
from typing import Any

from litestar import Request, post
from litestar.params import JSONBody

from threadline.base.errors import (
    ConcurrencyError,
    InvalidInput,
    InvalidSessionId,
    PayloadTooLarge,
)
from threadline.events.schema import SessionStarted
from threadline.events.store import EventStore
from threadline.projections.asof import SessionNotFound
from threadline.projections.fork import fork_session
from threadline.services.gateway.catalog import Catalog, check_choice
from threadline.services.gateway.context import GW, principal_of
from threadline.services.gateway.errors import (
    Problem,
    error_responses,
    session_not_found,
    unprocessable,
)
from threadline.services.gateway.models import ForkSession, SessionCreated
from threadline.services.gateway.routes.params import IdempotencyKey, SessionId, derived_id


async def _source_provider(store: EventStore, session: str) -> str:
    async with contextlib.aclosing(store.read(session, to_version=1)) as first:
        async for rec in first:
            if isinstance(rec.event, SessionStarted):
                return rec.event.provider
    return ""


async def _choice(
    catalog: Catalog, store: EventStore, source: str, body: ForkSession
) -> tuple[str | None, str | None]:
    """The fork's (provider, model): None keeps the source's; "" is the provider's default."""
    if body.provider:
        provider, model = check_choice(catalog, body.provider, body.model, ())
        entry = next(e for e in catalog.providers() if e.name == provider)
        return provider, model or entry.default_model
    if body.model:
        provider = await _source_provider(store, source)
        if not any(e.name == provider for e in catalog.providers()):
            raise unprocessable(
                "provider", f"the source's provider {provider!r} is not offered; name one"
            )
        check_choice(catalog, provider, body.model, ())
        return None, body.model
    return None, None


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
    provider, model = await _choice(gw.catalog, gw.store, source, data)
    target = derived_id(principal.owner, f"fork:{idempotency_key}") if idempotency_key else None
    try:
        new = await fork_session(
            gw.store, source, data.version, provider, model, principal.actor,
            session=target, owner=principal.owner,
        )  # fmt: skip
    except (SessionNotFound, InvalidSessionId):
        raise session_not_found() from None
    except PayloadTooLarge:
        raise  # 413
    except InvalidInput as exc:  # no such version
        raise unprocessable("version", str(exc)) from None
    except ConcurrencyError:
        if target is None:
            raise
        raise Problem(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request",
            field="Idempotency-Key",
        ) from None
    gw.owners.remember(new, principal.owner)
    head = await gw.store.head(new)
    return SessionCreated(id=new, position=head.position, version=head.version)
