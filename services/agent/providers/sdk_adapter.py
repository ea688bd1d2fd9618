"""What the two SDK-backed adapters share: the client's settings and the stream's life.

:class:`SdkAdapter` builds the vendor SDK's client from :class:`ProviderSettings`
(registering its secrets with the redactor first) and runs one model step: translate
the request, open the SDK's stream, feed each event to a :class:`StreamReader`, demand
the stream's proper end (a stream cut short is a ``network`` error, not an answer),
then the assembler's closing parts. Every failure leaves as a typed, redacted
:class:`~.errors.ProviderError`, and the SDK stream is closed however the step ends
(including the caller leaving its ``async for`` early). Subclasses supply the
vendor-specific steps: :meth:`~SdkAdapter._connect`, ``_wire``, ``_open``, ``_reader``
and ``_translate``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar, Final, Generic, Protocol, TypedDict, TypeVar

import httpx2

from threadline.base.redact import Redactor, default_redactor
from threadline.services.agent.providers.base import ModelRequest
from threadline.services.agent.providers.errors import ErrorContext, ProviderError
from threadline.services.agent.providers.parts import Part, PartsAssembler
from threadline.services.agent.providers.settings import ProviderSettings

__all__ = ["NO_KEY", "ClientOptions", "SdkAdapter", "SdkStream", "StreamReader", "client_options"]

#: sent as the key (OpenAI's bearer token, Anthropic's x-api-key) to servers that need
#: none (Ollama, the dev model): without an explicit key the SDKs would look for
#: OPENAI_API_KEY / ANTHROPIC_API_KEY in the environment (and credential files)
NO_KEY: Final = "threadline-no-key"

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)
E_contra = TypeVar("E_contra", contravariant=True)


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
    timeouts, retries and headers, never anything from the environment."""
    return ClientOptions(
        api_key=settings.api_key.reveal() if settings.api_key else NO_KEY,
        base_url=settings.base_url,
        timeout=httpx2.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        max_retries=settings.max_retries_in_sdk,
        default_headers=settings.headers or None,
        http_client=http_client,
    )


class SdkClient(Protocol):
    async def close(self) -> None: ...


class SdkStream(Protocol[E_co]):
    """An SDK's streamed response (``openai.AsyncStream``, ``anthropic.AsyncStream``)."""

    def __aiter__(self) -> AsyncIterator[E_co]: ...

    async def close(self) -> None: ...


class StreamReader(Protocol[E_contra]):
    """Turns one vendor's stream events into parts, through :attr:`assembler`."""

    @property
    def assembler(self) -> PartsAssembler: ...

    @property
    def stopped(self) -> bool:
        """The stream said it is complete (without that, it was cut short)."""
        ...

    def feed(self, event: E_contra) -> list[Part]: ...


class WireRequest(Protocol):
    @property
    def model(self) -> str: ...


C = TypeVar("C", bound=SdkClient)
W = TypeVar("W", bound=WireRequest)


class SdkAdapter(ABC, Generic[C, W, E]):
    """A :class:`~.base.ModelAdapter` over a vendor SDK client ``C`` at
    ``settings.base_url``; ``W`` is its wire request, ``E`` its stream's events."""

    #: the SDK's own exception base (besides httpx2's, ProviderError and ValueError)
    sdk_error: ClassVar[type[Exception]]

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
        self._client = self._connect(client_options(settings, http_client))

    @property
    def settings(self) -> ProviderSettings:
        return self._settings

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Part]:
        wire = self._wire(request)
        ctx = ErrorContext(self._settings, wire.model, self._redactor)
        reader = self._reader()
        stream: SdkStream[E] | None = None
        mid_stream = False
        try:
            stream = await self._open(wire)
            mid_stream = True
            async for event in stream:
                for part in reader.feed(event):
                    yield part
            if not reader.stopped:
                raise ctx.ended_early()
            for part in reader.assembler.complete():
                yield part
        except (self.sdk_error, httpx2.HTTPError, ProviderError, ValueError) as exc:
            error = self._translate(exc, ctx, mid_stream=mid_stream)
            log = logging.getLogger(type(self).__module__)  # the adapter's module logs it
            log.info("%s stream failed: %s (%s)", self._settings.name, error.message, error.kind)
            raise error from None
        finally:
            if stream is not None:
                await stream.close()

    # ------------------------------------------------------------ vendor steps

    @abstractmethod
    def _connect(self, options: ClientOptions) -> C:
        """The SDK client for these options."""

    @abstractmethod
    def _wire(self, request: ModelRequest) -> W:
        """``request`` in the wire API's terms, for :attr:`settings`."""

    @abstractmethod
    async def _open(self, wire: W) -> SdkStream[E]:
        """Send ``wire``; the response's event stream."""

    @abstractmethod
    def _reader(self) -> StreamReader[E]:
        """A fresh reader (and assembler) for one response's events."""

    @abstractmethod
    def _translate(self, exc: Exception, ctx: ErrorContext, *, mid_stream: bool) -> ProviderError:
        """``exc`` (raised opening or reading the stream) as a ProviderError."""
