"""What every adapter accepts and produces: :class:`ModelRequest` in, parts out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import msgspec

from threadline.events.conversation import Message, ToolSpec
from threadline.services.agent.providers.parts import Part
from threadline.services.agent.providers.settings import ProviderSettings


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One model step: the vendor-neutral conversation and how to sample it.

    Empty ``model`` means the provider's default model; ``None`` temperature/max_tokens
    mean the provider's configured values, ``None`` top_p the provider's default.
    ``provider_data_key`` names the entry of ``AssistantTurn.provider_data`` this
    provider reads back (e.g. a thinking signature); empty means the provider's name.
    ``reasoning_budget_tokens`` turns on extended thinking (Anthropic). The gateway
    refuses it for OpenAI-wire providers; the OpenAI adapter leaves it out (it can get
    there only through a fallback provider). See docs/providers.md, "Session settings".
    """

    model: str = ""
    system: str = ""
    messages: tuple[Message, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    provider_data_key: str = ""
    reasoning_budget_tokens: int | None = None


@runtime_checkable
class ModelAdapter(Protocol):
    """A wire API: streams one model step as normalised parts.

    ``stream`` raises only :class:`~.errors.ProviderError` (redacted, typed); closing
    the iterator early (``aclose()``, or leaving an ``async for``) cancels the request.
    """

    @property
    def settings(self) -> ProviderSettings: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[Part]: ...

    async def aclose(self) -> None: ...
