"""Parameters shared by several routes, with the constraints the OpenAPI schema shows."""

from __future__ import annotations

from typing import Annotated, Any

from litestar.params import HeaderParameter, Parameter

from threadline.services.commands.keys import KEY_PATTERN
from threadline.services.gateway.models import POSITION_MAX, SESSION_ID_PATTERN

#: a path segment naming a session; a malformed one is a 404 like an unknown one
SessionId = Annotated[
    str,
    Parameter(
        description="The session id (1-64 of `A-Z a-z 0-9 _ -`).",
        schema_extra={"pattern": SESSION_ID_PATTERN, "minLength": 1, "maxLength": 64},
    ),
]

# Optional parameters take an in-domain default ("" or 0) rather than None: a query
# string or header cannot carry a null, and "null" must not slip through as None.

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        pattern=f"^({KEY_PATTERN[1:-1]})?$",  # a key, or "" (absent)
        required=False,
        description="Retrying with the same key appends nothing new and answers the same.",
    ),
]


#: the position of the last event the client has (an SSE reconnection)
LastEventId = Annotated[
    str, HeaderParameter(name="Last-Event-ID", pattern=r"^([0-9]{1,16})?$", required=False)
]


def position_query(description: str | None = None) -> Any:
    """An optional query parameter holding a log position or a session version, 0 to
    :data:`POSITION_MAX` (0: none); ``schema_extra`` states its minimum in the schema."""
    return Parameter(
        ge=0,
        le=POSITION_MAX,
        required=False,
        schema_extra={"minimum": 0},
        description=description,
    )


WaitFor = Annotated[
    int,
    position_query(
        "Read-your-writes: wait until the view reflects this log position (0: do not wait)."
    ),
]
