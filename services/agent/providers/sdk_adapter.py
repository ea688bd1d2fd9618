"""What the two SDK-backed adapters share: the client's settings and the stream's life.

:class:`SdkAdapter` builds the vendor SDK's client from :class:`ProviderSettings`
(registering its secrets with the redactor first) and runs one model step: encode the
request body (msgspec, not the SDK's per-message transformation), send it through the
SDK's low-level ``post`` (so its auth headers, base URL, timeouts, retries and HTTP
error classes apply) for the raw streamed response, split that into server-sent events
(:class:`~.sse.SseDecoder`) and feed each to a :class:`StreamReader`, which decodes only
the fields it reads (msgspec, not the SDK's per-chunk models). The stream's proper end
is demanded (a stream cut short is a ``network`` error, not an answer), then the
assembler's closing parts. A plain JSON answer to the streaming request is the
provider's bad answer. Every failure leaves as a typed, redacted
:class:`~.errors.ProviderError`, and the response is closed however the step ends
(including the caller leaving its ``async for`` early). Subclasses supply the
vendor-specific steps (:meth:`~SdkAdapter._connect`, ``_wire`` and ``_send``) and the
:class:`StreamReader` of their events.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar, Final, Generic, TypedDict, TypeVar

import anthropic
import httpx2
import openai

from threadline.base.redact import Redactor, default_redactor
from threadline.services.agent.providers.anthropic_map import AnthropicRequest
from threadline.services.agent.providers.errors import ErrorContext, ProviderError, translate_error
from threadline.services.agent.providers.openai_map import OpenAIRequest
from threadline.services.agent.providers.parts import ModelRequest, Part, PartsAssembler
from threadline.services.agent.providers.settings import ProviderSettings
from threadline.services.agent.providers.sse import SseDecoder

#: sent as the key (OpenAI's bearer token, Anthropic's x-api-key) to servers that need
#: none (Ollama, the dev model): without an explicit key the SDKs would look for
#: OPENAI_API_KEY / ANTHROPIC_API_KEY in the environment (and credential files)
NO_KEY: Final = "threadline-no-key"


class ClientOptions(TypedDict):
    """The keyword arguments both ``AsyncOpenAI`` and ``AsyncAnthropic`` take from us."""

    api_key: str
    base_url: str | None
    timeout: httpx2.Timeout
    max_retries: int
    default_headers: Mapping[str, str] | None
    http_client: httpx2.AsyncClient | None


def client_options(
    settings: ProviderSettings, http_client: httpx2.AsyncClient | None
) -> ClientOptions:
    """An SDK client's options for ``settings``: its key (or :data:`NO_KEY`), URL,
    timeouts, retries, headers and HTTP client (``http_client``, else one on
    ``settings.transport``), never a key from the environment."""
    timeout = httpx2.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
    if http_client is None and settings.transport == "aiohttp":
        # httpx2 on aiohttp: the SDKs' ``DefaultAioHttpClient`` (both the same vendored
        # ``httpx_aiohttp``), with the SDK's connection limits and redirects; proxies and
        # CA bundles come from the environment as with httpx2's
        http_client = openai.DefaultAioHttpClient(
            timeout=timeout, limits=openai.DEFAULT_CONNECTION_LIMITS, follow_redirects=True
        )
    return ClientOptions(
        api_key=settings.api_key.reveal() if settings.api_key else NO_KEY,
        base_url=settings.base_url,
        timeout=timeout,
        max_retries=0,  # the SDK never retries: the agent does, honouring Retry-After
        default_headers=settings.headers or None,
        http_client=http_client,  # None: the SDK's own (httpx2 transport)
    )


class StreamReader(ABC):
    """Turns one vendor's server-sent events into parts, through :attr:`assembler`."""

    def __init__(self, ctx: ErrorContext) -> None:
        self.assembler = PartsAssembler()
        self.ctx = ctx
        #: the stream said it is complete (without that, it was cut short)
        self.stopped = False

    @abstractmethod
    def feed(self, event: bytes, data: bytes) -> list[Part]:
        """The parts of one event; raises ProviderError (an error event) or
        ``msgspec.DecodeError`` (data that is not what it claims)."""


#: what sending or reading a stream may raise (ValueError: data that does not decode)
_FAILURES: Final = (
    openai.OpenAIError,
    anthropic.AnthropicError,
    httpx2.HTTPError,
    ProviderError,
    ValueError,
)
C = TypeVar("C", openai.AsyncOpenAI, anthropic.AsyncAnthropic)
W = TypeVar("W", OpenAIRequest, AnthropicRequest)


class SdkAdapter(ABC, Generic[C, W]):
    """A :class:`~.base.ModelAdapter` over a vendor SDK client ``C`` at
    ``settings.base_url``; ``W`` is its wire request."""

    #: a fresh reader (and assembler) for one response's events
    reader: ClassVar[type[StreamReader]]

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        redactor: Redactor | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        settings.check_ready()
        self._settings = settings
        self._redactor = redactor if redactor is not None else default_redactor()
        self._redactor.add(*settings.secrets())
        self._client: C = self._connect(client_options(settings, http_client))

    @property
    def settings(self) -> ProviderSettings:
        return self._settings

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Part]:
        wire = self._wire(request)
        ctx = ErrorContext(self._settings, wire.model, self._redactor)
        reader = self.reader(ctx)
        response: httpx2.Response | None = None
        try:
            response = await self._send(wire)
            media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
            if media == "application/json" or media.endswith("+json"):  # not a stream
                raise ctx.bad_answer(media, await response.aread())
            decoder = SseDecoder()
            async for chunk in response.aiter_bytes():
                for event, data in decoder.feed(chunk):
                    for part in reader.feed(event, data):
                        yield part
            if not reader.stopped:
                raise ctx.ended_early()
            for part in reader.assembler.complete():
                yield part
        except _FAILURES as exc:
            error = translate_error(exc, ctx, mid_stream=response is not None)
            log = logging.getLogger(type(self).__module__)  # the adapter's module logs it
            name, host = self._settings.name, ctx.host
            log.info("%s at %s: stream failed: %s (%s)", name, host, error.message, error.kind)
            raise error from None
        finally:
            if response is not None:
                await response.aclose()

    # ------------------------------------------------------------ vendor steps

    @abstractmethod
    def _connect(self, options: ClientOptions) -> C:
        """The SDK client for these options."""

    @abstractmethod
    def _wire(self, request: ModelRequest) -> W:
        """``request`` in the wire API's terms, for :attr:`settings`."""

    @abstractmethod
    async def _send(self, wire: W) -> httpx2.Response:
        """POST ``wire`` (its body encoded by us) through the SDK client, streaming; the
        raw response once its status is a success (the SDK raises for the others)."""
