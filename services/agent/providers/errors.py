"""Provider failures as one typed, redacted, actionable error.

:func:`translate_error` is called once, at the adapter boundary, for both SDKs: nothing
above the adapters sees an SDK or HTTP-library exception. :class:`ErrorContext` words
the messages (who failed, what to do) and passes every one through the adapter's
:class:`~threadline.base.redact.Redactor`. The SDKs raise for what happens before the
stream (connecting, HTTP 4xx/5xx); what happens inside it (error events, undecodable
data) the adapters classify with :class:`ErrorContext` themselves.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import anthropic
import httpx2
import msgspec
import openai

from threadline.base.errors import ThreadlineError
from threadline.base.redact import MIN_SECRET_LENGTH, REDACTED, Redactor
from threadline.base.text import one_line
from threadline.events.schema import ErrorKind
from threadline.services.agent.providers.settings import ProviderSettings

_TOOLS_UNSUPPORTED: Final = re.compile(
    r"does not support tools|tools? (?:use |calling )?(?:is |are )?not supported", re.I
)
_CONTEXT_TOO_LONG: Final = re.compile(
    r"context[_ ]length|context window|maximum context|prompt is too long|too many tokens"
    r"|input is too long|exceeds? the (?:model's )?(?:maximum|context)",
    re.I,
)
#: error ``type``/``code`` values sent in a stream (no HTTP status) -> equivalent status
TYPE_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "api_error": 500,
    "server_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
#: a network address in a message: a URL, a socket address ``('10.0.0.5', 443)``, an IP
#: (v4, or v6 in brackets) or a dotted host (or localhost) with a port
_ADDRESS: Final = re.compile(
    r"[a-z][a-z0-9+.-]*://[^\s'\"<>]+|\(\s*'[^']*',\s*\d+[^)]*\)|\[[0-9a-f:.]+\](?::\d+)?"
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b|\b(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+):\d+\b",
    re.I,
)


@dataclass(eq=False)
class ProviderError(ThreadlineError):
    """A model provider failed. ``str(err)`` is safe to show and to record."""

    message: str
    _: KW_ONLY
    kind: ErrorKind
    provider: str = ""
    retryable: bool = False
    retry_after_s: float | None = None
    tools_unsupported: bool = False
    status: int | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or HTTP date)."""
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        if lower.get(name):
            with contextlib.suppress(ValueError):
                return max(0.0, float(lower[name]) / scale)
    try:
        when = email.utils.parsedate_to_datetime(lower.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def body_message(body: object, fallback: str) -> tuple[str, str]:
    """(message, code-or-type) from an error body in the usual shapes: ``{"error":
    {"message", "code" or "type"}}``, ``{"error": "text"}``, a bare object, or text."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, str):
            return inner, ""
        if isinstance(inner, Mapping):
            message = inner.get("message")
            code = inner.get("code") or inner.get("type") or ""
            return (message if isinstance(message, str) else fallback), str(code)
    if isinstance(body, str) and body:
        return body, ""
    return fallback, ""


def json_or_text(data: bytes) -> object:
    """``data`` decoded as JSON, else as text."""
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What an error message needs to say who failed and what to do about it."""

    settings: ProviderSettings
    model: str
    redactor: Redactor

    @property
    def label(self) -> str:
        return self.settings.display_name

    def scrub(self, message: str) -> str:
        """``message`` through the redactor, without network addresses (users see the
        provider's name, not the deployment's network: the operator log has the address)
        and without this provider's own key however short: the redactor ignores values
        under ``MIN_SECRET_LENGTH`` characters, but a provider echoing a rejected key
        echoes it whole, and the log keeps it forever."""
        message = _ADDRESS.sub("(address)", self.redactor.redact(message))
        for secret in self.settings.secrets():
            if secret and len(secret) < MIN_SECRET_LENGTH and secret in message:
                bounded = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
                message = re.sub(bounded, REDACTED, message)
        return message

    @property
    def host(self) -> str:
        """Where the provider is: for the operator's log only."""
        return urlsplit(self.settings.base_url or "").netloc.rsplit("@", 1)[-1] or "(no URL)"

    def error(self, kind: ErrorKind, message: str, **details: Any) -> ProviderError:
        """A ProviderError of this provider; ``details``: its other attributes."""
        return ProviderError(self.scrub(message), kind=kind, provider=self.settings.name, **details)

    # ------------------------------------------------------------------ by cause

    def network(self, detail: str, *, mid_stream: bool) -> ProviderError:
        label = self.label
        where = f"the stream from {label} broke" if mid_stream else f"could not connect to {label}"
        return self.error(
            "network",
            f"{where} ({one_line(detail, 120)}); "
            "check the network and the provider's base_url, then retry",
            retryable=True,
        )

    def timeout(self, *, connect: bool) -> ProviderError:
        s = self.settings
        if connect:
            text = f"could not connect to {self.label} within {s.connect_timeout_s:g} s"
        else:
            text = f"{self.label} sent nothing for {s.timeout_s:g} s (read timeout)"
        return self.error(
            "timeout", f"{text}; retry, or raise the provider's timeouts", retryable=True
        )

    def ended_early(self) -> ProviderError:
        return self.error(
            "network",
            f"the stream from {self.label} ended before the model finished; retry",
            retryable=True,
        )

    def malformed(self, detail: str) -> ProviderError:
        return self.error(
            "provider_error",
            f"{self.label} sent a malformed stream ({one_line(detail, 120)})",
            retryable=True,
        )

    def stream_error(self, body: object) -> ProviderError:
        """An error object the provider sent inside a 200 stream, classified by its
        ``type``/``code`` as the HTTP status it stands for."""
        detail, code = body_message(body, "an error occurred during streaming")
        return self.http(TYPE_STATUS.get(code, 500), detail, code=code, in_stream=True)

    def bad_answer(self, content_type: str, body: bytes) -> ProviderError:
        """A plain (non event-stream) answer to a streaming request: a server that does
        this will do it again, so it is not retried."""
        detail, _ = body_message(json_or_text(body), body.decode(errors="replace"))
        return self.error(
            "provider_error",
            f"{self.label} answered a streaming request with {content_type or 'no content type'}"
            f", not an event stream ({one_line(detail, 120)}); check the provider's base_url "
            "and that the server streams",
        )

    def http(
        self,
        status: int,
        detail: str,
        *,
        code: str = "",
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        in_stream: bool = False,
    ) -> ProviderError:
        """Classify an HTTP status (or a stream error mapped to one) with its message."""
        retry_after = parse_retry_after(headers) if headers else None
        kind, message, retryable = self._classify(status, detail, code, retry_after)
        return self.error(
            kind,
            message,
            retryable=retryable,
            retry_after_s=retry_after if retryable else None,
            tools_unsupported=kind == "bad_request" and bool(_TOOLS_UNSUPPORTED.search(detail)),
            status=None if in_stream else status,
            request_id=request_id,
        )

    def _classify(
        self, status: int, detail: str, code: str, retry_after: float | None
    ) -> tuple[ErrorKind, str, bool]:
        label, model = self.label, self.model
        env = self.settings.key_env or "the provider's key"
        said = f" ({label} said: {one_line(detail, 300)})" if detail else ""
        if _TOOLS_UNSUPPORTED.search(detail):
            return (
                "bad_request",
                f"model {model!r} at {label} does not support tools; retry without tools",
                False,
            )
        if status == 413 or (status in (400, 422) and _CONTEXT_TOO_LONG.search(f"{code} {detail}")):
            text = (
                f"the conversation is too long for model {model!r} at {label}; "
                "shorten it or start a new session"
            )
            return "context_too_long", text + said, False
        if status == 429 and "insufficient_quota" in f"{code} {detail}":
            return (
                "rate_limit",
                f"{label} quota exhausted: check the plan and billing of {env}{said}",
                False,
            )
        if status == 429:
            when = f"retry after {retry_after:.1f} s" if retry_after is not None else "retry later"
            return "rate_limit", f"rate limited by {self.settings.name}; {when}", True
        by_status: dict[int, tuple[ErrorKind, str, bool]] = {
            401: ("auth", f"the {label} key was rejected: check {env}", False),
            403: (
                "auth",
                f"{label} refused access to model {model!r}: check the access of {env}",
                False,
            ),
            404: (
                "model_not_found",
                f"model {model!r} was not found at {label}: "
                "pick another model or check the provider's base_url",
                False,
            ),
            408: ("timeout", f"{label} timed out (HTTP 408); retry", True),
            504: ("timeout", f"{label} timed out (HTTP 504); retry", True),
        }
        if status in by_status:
            kind, text, retryable = by_status[status]
            return kind, text + said, retryable
        if status >= 500 or status == 409:
            return "provider_error", f"{label} failed (HTTP {status}); retry later{said}", True
        return "bad_request", f"{label} rejected the request (HTTP {status}){said}", False


def _transport(exc: BaseException, ctx: ErrorContext, mid_stream: bool) -> ProviderError | None:
    """Network and timeout failures, wrapped by the SDK or raw from httpx2 (or aiohttp)."""
    chain: list[BaseException] = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    origin = next((e for e in chain if isinstance(e, aiohttp.ClientError)), None)
    if origin is not None:  # the aiohttp transport's: judged by aiohttp's own exception,
        # as its httpx2 mapping is coarse (a refused connection comes as ConnectTimeout)
        connect = isinstance(origin, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
        timed_out = isinstance(origin, TimeoutError)
    else:
        connect = any(isinstance(e, httpx2.ConnectTimeout | httpx2.ConnectError) for e in chain)
        timed_out = any(isinstance(e, httpx2.TimeoutException) for e in chain) or isinstance(
            exc, openai.APITimeoutError | anthropic.APITimeoutError
        )
    if timed_out:
        return ctx.timeout(connect=connect)
    if isinstance(
        exc, openai.APIConnectionError | anthropic.APIConnectionError | httpx2.TransportError
    ):
        causes = dict.fromkeys(str(e) or type(e).__name__ for e in chain[1:])
        detail = " / ".join(causes) or str(exc)
        return ctx.network(detail, mid_stream=mid_stream and not connect)
    return None


def translate_error(exc: Exception, ctx: ErrorContext, *, mid_stream: bool) -> ProviderError:
    """An ``openai`` or ``anthropic`` SDK (or httpx2, or stream decoding) exception as a
    ProviderError; a ProviderError as it is."""
    if isinstance(exc, ProviderError):
        return exc
    known = _transport(exc, ctx, mid_stream)
    if known is not None:
        return known
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        detail, code = body_message(exc.body, exc.message)
        return ctx.http(
            exc.status_code,
            detail,
            code=code,
            headers=exc.response.headers,
            request_id=exc.request_id,
        )
    if isinstance(exc, msgspec.DecodeError):  # stream data that is not what it claims
        return ctx.malformed(str(exc))
    return ctx.error(
        "provider_error", f"{ctx.label} failed: {type(exc).__name__}: {one_line(str(exc), 300)}"
    )
