"""Model providers: wire-API adapters, connection settings, normalised stream parts.

``settings`` knows where providers are and how to authenticate; the adapters
(``openai_chat``, ``anthropic_messages``) know their wire format and turn its stream
into :data:`~.parts.Part` values (import those from ``parts``); ``errors`` types every
failure. See docs/providers.md.
"""

from __future__ import annotations

import httpx2

from threadline.base.redact import Redactor
from threadline.services.agent.providers._config import load_providers
from threadline.services.agent.providers.anthropic_messages import AnthropicMessagesAdapter
from threadline.services.agent.providers.errors import ProviderError
from threadline.services.agent.providers.openai_chat import OpenAIChatAdapter
from threadline.services.agent.providers.parts import ModelAdapter, ModelRequest
from threadline.services.agent.providers.settings import ProviderRegistry, ProviderSettings, Secret

__all__ = [
    "ModelAdapter",
    "ModelRequest",
    "ProviderError",
    "ProviderRegistry",
    "ProviderSettings",
    "Secret",
    "adapter_for",
    "load_providers",
]


def adapter_for(
    settings: ProviderSettings,
    *,
    redactor: Redactor | None = None,
    http_client: httpx2.AsyncClient | None = None,
) -> ModelAdapter:
    """The adapter for ``settings.api``, its key registered with ``redactor`` (the
    process-wide one by default). Raises ``ConfigurationError`` when the provider lacks
    a key, URL or model; nothing is sent until ``stream`` is iterated.
    """
    if settings.api == "anthropic":
        return AnthropicMessagesAdapter(settings, redactor=redactor, http_client=http_client)
    return OpenAIChatAdapter(settings, redactor=redactor, http_client=http_client)
