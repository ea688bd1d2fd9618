"""Translation of SDK exceptions into :class:`ProviderError`, one function per SDK.

The SDKs raise for what happens before the stream (connecting, HTTP 4xx/5xx after their
retries); what happens inside it (error events, undecodable data) the adapters classify
with :class:`ErrorContext` themselves, since they read the stream's bytes.
"""

from __future__ import annotations

import anthropic
import httpx2
import msgspec
import openai

from threadline.services.agent.providers.errors import (
    ErrorContext,
    ProviderError,
    body_message,
    clip,
)

__all__ = ["translate_anthropic_error", "translate_openai_error"]


def _transport(exc: BaseException, ctx: ErrorContext, mid_stream: bool) -> ProviderError | None:
    """Network and timeout failures, wrapped by the SDK or raw from httpx2."""
    chain: list[BaseException] = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    connect = any(isinstance(e, httpx2.ConnectTimeout | httpx2.ConnectError) for e in chain)
    if any(isinstance(e, httpx2.TimeoutException) for e in chain) or isinstance(
        exc, openai.APITimeoutError | anthropic.APITimeoutError
    ):
        return ctx.timeout(connect=connect)
    if isinstance(
        exc, openai.APIConnectionError | anthropic.APIConnectionError | httpx2.TransportError
    ):
        causes = dict.fromkeys(str(e) or type(e).__name__ for e in chain[1:])
        detail = " / ".join(causes) or str(exc)
        return ctx.network(detail, mid_stream=mid_stream and not connect)
    return None


def _ours_or_transport(exc: Exception, ctx: ErrorContext, mid_stream: bool) -> ProviderError | None:
    """Checked first for every SDK: a ProviderError as it is, then transport failures."""
    if isinstance(exc, ProviderError):
        return exc
    return _transport(exc, ctx, mid_stream)


def _undecodable_or_other(exc: Exception, ctx: ErrorContext) -> ProviderError:
    """Checked last for every SDK: a body that does not decode, else a generic failure."""
    if isinstance(exc, msgspec.DecodeError):  # stream data that is not what it claims
        return ctx.malformed(str(exc))
    return ctx.error(
        "provider_error", f"{ctx.label} failed: {type(exc).__name__}: {clip(str(exc))}"
    )


def translate_openai_error(exc: Exception, ctx: ErrorContext, *, mid_stream: bool) -> ProviderError:
    """An ``openai`` SDK (or httpx2, or stream decoding) exception as a ProviderError."""
    known = _ours_or_transport(exc, ctx, mid_stream)
    if known is not None:
        return known
    if isinstance(exc, openai.APIStatusError):
        detail, code = body_message(exc.body, exc.message)
        return ctx.http(
            exc.status_code,
            detail,
            code=exc.code or code,
            headers=exc.response.headers,
            request_id=exc.request_id,
        )
    return _undecodable_or_other(exc, ctx)


def translate_anthropic_error(
    exc: Exception, ctx: ErrorContext, *, mid_stream: bool
) -> ProviderError:
    """An ``anthropic`` SDK (or httpx2, or stream decoding) exception as a ProviderError."""
    known = _ours_or_transport(exc, ctx, mid_stream)
    if known is not None:
        return known
    if isinstance(exc, anthropic.APIStatusError):
        detail, code = body_message(exc.body, exc.api_message or exc.message)
        code = exc.type or code
        return ctx.http(
            exc.status_code,
            detail,
            code=code,
            headers=exc.response.headers,
            request_id=exc.request_id,
        )
    return _undecodable_or_other(exc, ctx)
