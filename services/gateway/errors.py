"""Every error leaves the gateway as ``{"error": {"type", "message", "field"?}}``.

Threadline's own errors (``threadline.base.errors``), the gateway's
:class:`Problem` and Litestar's HTTP exceptions are translated here, once. Bodies
never carry stack traces, tokens or internal details; unexpected errors are logged
with their traceback and answered with a generic 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec

from threadline.base.errors import (
    ApprovalNotFound,
    CommandRefused,
    ConcurrencyError,
    ConfigurationError,
    InvalidField,
    InvalidInput,
    InvalidSessionId,
    PayloadTooLarge,
    SessionNotFound,
    StoreUnavailable,
    ThreadlineError,
    TurnNotFound,
)

log = logging.getLogger(__name__)


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    message: str
    #: the offending field (body field, query parameter or header), when one is to blame
    field: str | None = None


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorDetail


class Problem(Exception):
    """An HTTP error the gateway raises on purpose."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.field = field
        self.headers = dict(headers or {})


def session_not_found() -> Problem:
    return Problem(404, "session_not_found", "no such session")


def unauthorized(message: str = "a valid bearer token is required") -> Problem:
    return Problem(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def unprocessable(field: str, message: str, type_: str = "invalid_request") -> Problem:
    return Problem(422, type_, f"{field}: {message}", field=field)


def exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """Every error leaves as one body (:func:`_translate`)."""
    problem = _translate(exc)
    body = ErrorBody(
        error=ErrorDetail(type=problem.type, message=problem.message, field=problem.field)
    )
    return Response(
        body, status_code=problem.status, headers=problem.headers, media_type=MediaType.JSON
    )


def _translate(exc: Exception) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ThreadlineError):
        return _ours(exc)
    if isinstance(exc, ValidationException):
        return _validation_problem(exc)
    if isinstance(exc, NotAuthorizedException):
        return unauthorized()
    if isinstance(exc, HTTPException):
        return _http_problem(exc)
    if isinstance(exc, RecursionError) and "deserializing" in str(exc):  # msgspec's depth
        log.info("a request body nested too deeply was refused")
        return Problem(400, "malformed_body", "the request body is nested too deeply")
    log.error("unexpected error while serving a request", exc_info=exc)
    return Problem(500, "internal", "internal error")


def _ours(exc: ThreadlineError) -> Problem:
    """Threadline's own errors (the store's and the commands')."""
    if isinstance(exc, InvalidSessionId | SessionNotFound):
        return session_not_found()
    if isinstance(exc, InvalidField):
        return unprocessable(exc.field, exc.reason)
    if isinstance(exc, TurnNotFound):
        return Problem(404, "turn_not_found", str(exc), field="turn_id")
    if isinstance(exc, ApprovalNotFound):
        return Problem(404, "approval_not_found", str(exc), field="call_id")
    if isinstance(exc, CommandRefused):
        return Problem(409, exc.code, str(exc), field=exc.field)
    if isinstance(exc, PayloadTooLarge):
        return Problem(413, "payload_too_large", str(exc))
    if isinstance(exc, InvalidInput):
        return Problem(422, "invalid_input", str(exc))
    if isinstance(exc, ConcurrencyError):
        return Problem(409, "conflict", "the session changed at the same time; retry")
    if isinstance(exc, StoreUnavailable):
        log.warning("event log unavailable while serving a request: %s", exc)
        return Problem(
            503, "unavailable", "the event log is unreachable; retry", headers={"Retry-After": "1"}
        )
    if isinstance(exc, ConfigurationError):
        log.error("configuration error while serving a request: %s", exc)
        return Problem(500, "configuration", "the gateway is misconfigured")
    log.error("error while serving a request: %s", exc)
    return Problem(500, "internal", "internal error")


_HTTP_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "too_many_requests",
}


#: what Litestar says (as a 500) when the client leaves before its body is in
_CLIENT_LEFT = "client disconnected prematurely"


def _http_problem(exc: HTTPException) -> Problem:
    status = exc.status_code
    if status == 500 and exc.detail == _CLIENT_LEFT:
        # the client's doing (or the server's slow-client guard): not a server error,
        # and nobody is left to read the answer
        log.debug("the client left before sending its whole request")
        return Problem(400, "bad_request", "the request body did not arrive")
    if status >= 500:
        log.error("HTTP %s while serving a request: %s", status, exc.detail)
        return Problem(status, "internal", "internal error")
    if type(exc) is ClientException and isinstance(exc.__cause__, Exception):
        return Problem(400, "malformed_body", "the request body is not valid JSON")
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    message = exc.detail if status != 413 else "the request body is too large"
    return Problem(status, _HTTP_TYPES.get(status, "http_error"), message, headers=headers)


#: parameters whose Python name differs from the name on the wire
_WIRE_NAMES = {"last_event_id": "Last-Event-ID", "idempotency_key": "Idempotency-Key"}
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


def _validation_problem(exc: ValidationException) -> Problem:
    """422 naming the first offending field (Litestar reports body, query and header errors)."""
    extra: Any = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first: dict[str, Any] = extra[0]
        key = str(first.get("key") or "")
        message = str(first.get("message") or "invalid value")
        named = _NAMED_FIELD.search(message)  # missing or unknown field of an object
        if named:
            key = named[1] if key in ("", "data") else f"{key}.{named[1]}"
        field = _WIRE_NAMES.get(key, key) or None
        text = f"{field}: {message}" if field else message
        return Problem(422, "invalid_request", text, field=field)
    return Problem(422, "invalid_request", "the request is invalid")


_DESCRIPTIONS = {
    400: "Malformed request (the body is not JSON)",
    401: "Missing or invalid bearer token",
    403: "An admin may read, not write, another owner's session",
    404: "No such session (or it belongs to someone else)",
    409: "Conflict: an Idempotency-Key reused for another request, nothing to cancel, a "
    "turn already finished, a turn still running (double texting: reject), a tool call "
    "decided already, or a view not caught up",
    413: "Request body or event too large",
    422: "The request violates the schema; `error.field` names the field",
    429: "Too many concurrent streams or commands for this owner",
    503: "The event log is unreachable",
}


def error_responses(
    *codes: int, described: Mapping[int, str] | None = None
) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the error statuses an operation may answer (and 400);
    ``described`` adds statuses of its own, or overrides the description of one."""
    descriptions = {code: _DESCRIPTIONS[code] for code in sorted({400, *codes})}
    descriptions.update(described or {})
    return {
        code: ResponseSpec(data_container=ErrorBody, description=text, generate_examples=False)
        for code, text in descriptions.items()
    }
