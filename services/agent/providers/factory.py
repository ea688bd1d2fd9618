"""Choosing the adapter for a provider's wire API."""

from __future__ import annotations

import httpx2

from threadline.base.redact import Redactor
from threadline.services.agent.providers.anthropic_messages import AnthropicMessagesAdapter
from threadline.services.agent.providers.base import ModelAdapter
from threadline.services.agent.providers.openai_chat import OpenAIChatAdapter
from threadline.services.agent.providers.settings import ProviderSettings

__all__ = ["adapter_for"]


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
