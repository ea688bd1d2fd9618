"""The OpenAPI document: its configuration, and corrections to what Litestar generates.

Litestar (2.25) gets three things wrong for this API, which would make the document
promise more (or less) than the API accepts: it leaves out ``additionalProperties:
false`` for request bodies (they refuse unknown fields) and ``minimum: 0`` (a falsy
bound is dropped), it marks optional bodies as required, and it makes optional query
and header parameters nullable (a client cannot send a null header). :func:`tighten`
fixes the generated document before it is served. (Every command, a ``POST``, lists the
429 of the per-owner rate limit, :mod:`.ratelimit`, among its error responses.)
"""

from __future__ import annotations

import dataclasses
from typing import Final

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, RedocRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import (
    Components,
    Parameter,
    RequestBody,
    Schema,
    SecurityScheme,
)

BEARER: Final = "bearer"
#: ReDoc 2.5.2's bundle (npm ``redoc``, MIT), shipped in web/: the schema page loads
#: nothing from another origin (no CDN, no web fonts), so it works offline
REDOC_JS: Final = "/schema/redoc.standalone.js"
#: request bodies: msgspec Structs with ``forbid_unknown_fields``
_CLOSED_BODIES: Final = (
    "CreateSession", "Params", "PostMessage", "Cancel", "RetryTurn", "ForkSession",
    "RenameSession", "ErasureRequest",
)  # fmt: skip
#: (component, property) whose ``ge=0`` Litestar drops
_ZERO_MINIMUMS: Final = (("Params", "temperature"), ("Params", "top_p"))
#: operations whose body may be left out entirely
_OPTIONAL_BODIES: Final = (
    ("/v1/sessions", "post"),
    ("/v1/sessions/{session_id}/cancel", "post"),
    ("/v1/sessions/{session_id}/retry", "post"),
)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Threadline gateway",
        version="1",
        description="Sessions, messages and live event streams of Threadline, an "
        "event-sourced chat backend for LLM agents. See docs/gateway.md.",
        path="/schema",
        render_plugins=[
            RedocRenderPlugin(
                js_url=REDOC_JS, google_fonts=False, favicon="", path=["/", "/redoc"]
            ),
            JsonRenderPlugin(),
            YamlRenderPlugin(),
        ],
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="A static token (THREADLINE_TOKENS) or a JWT.",
                )
            }
        ),
    )


def _drop_null(schema: Schema) -> None:
    """``X | None`` parameters become plain ``X``: a query or header is absent, never null."""
    kept = [s for s in schema.one_of or [] if not (isinstance(s, Schema) and s.type == "null")]
    if schema.one_of and len(kept) == 1 and isinstance(kept[0], Schema):
        schema.one_of = None
        for f in dataclasses.fields(kept[0]):
            if getattr(schema, f.name) is None:
                setattr(schema, f.name, getattr(kept[0], f.name))


def tighten(app: Litestar) -> None:
    """Add the constraints the handlers enforce but Litestar leaves out of the document."""
    schemas = (app.openapi_schema.components.schemas or {}) if app.openapi_schema.components else {}
    for name in _CLOSED_BODIES:
        schema = schemas.get(name)
        if isinstance(schema, Schema):
            schema.additional_properties = False
    for name, prop in _ZERO_MINIMUMS:
        schema = schemas.get(name)
        target = (schema.properties or {}).get(prop) if isinstance(schema, Schema) else None
        if isinstance(target, Schema):
            target.minimum = 0.0
    create = schemas.get("CreateSession")
    servers = (create.properties or {}).get("tool_servers") if isinstance(create, Schema) else None
    if isinstance(servers, Schema) and isinstance(servers.items, Schema):
        servers.items.min_length, servers.items.max_length = 1, 128
    paths = app.openapi_schema.paths or {}
    for item in paths.values():
        for operation in (item.get, item.post, item.put, item.patch, item.delete):
            for parameter in (operation.parameters or []) if operation else []:
                if isinstance(parameter, Parameter) and isinstance(parameter.schema, Schema):
                    _drop_null(parameter.schema)
    for path, method in _OPTIONAL_BODIES:
        operation = getattr(paths.get(path), method, None)
        body = getattr(operation, "request_body", None)
        if isinstance(body, RequestBody):
            body.required = False
