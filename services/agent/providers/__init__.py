"""Model providers: wire-API adapters, connection settings, normalised stream parts.

``settings`` knows where providers are and how to authenticate; the adapters
(``openai_chat``, ``anthropic_messages``) know their wire format and turn its stream
into :data:`~.parts.Part` values; ``errors`` types every failure. See docs/providers.md.
"""

from threadline.services.agent.providers._config import load_providers
from threadline.services.agent.providers.base import ModelAdapter, ModelRequest
from threadline.services.agent.providers.errors import (
    ProviderError,
    parse_retry_after,
    translate_error,
)
from threadline.services.agent.providers.factory import adapter_for
from threadline.services.agent.providers.parts import (
    FinishPart,
    Part,
    PartsAssembler,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallEnd,
    ToolCallStart,
    UsagePart,
)
from threadline.services.agent.providers.settings import (
    DEFAULT_PREFERENCE,
    ProviderInfo,
    ProviderRegistry,
    ProviderSettings,
    Secret,
)

__all__ = [
    "DEFAULT_PREFERENCE",
    "FinishPart",
    "ModelAdapter",
    "ModelRequest",
    "Part",
    "PartsAssembler",
    "ProviderError",
    "ProviderInfo",
    "ProviderRegistry",
    "ProviderSettings",
    "ReasoningDelta",
    "ReasoningEnd",
    "Secret",
    "TextDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "UsagePart",
    "adapter_for",
    "load_providers",
    "parse_retry_after",
    "translate_error",
]
