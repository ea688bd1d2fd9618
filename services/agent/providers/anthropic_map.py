"""Conversation -> Anthropic Messages request (Anthropic, the dev model's Anthropic wire).

* The system prompt is the ``system`` parameter, with the untrusted-data notice when
  tools are involved (see :mod:`.history`).
* Tool results are ``tool_result`` blocks in a user message; their content is the
  fenced ``<tool_output>`` element, and ``is_error`` is passed through.
* An assistant step whose ``provider_data[provider_data_key]`` holds a ``signature``
  is replayed with its thinking block first (and a ``redacted_data`` entry as a
  ``redacted_thinking`` block), as the API requires for tool use with thinking.
* The API requires alternating roles, so consecutive messages of the same role
  (tool results followed by a user message, two user messages...) are merged into
  one message; empty text blocks, which the API rejects, are left out.

:meth:`AnthropicRequest.body` is the JSON the SDK's ``messages.create`` would send for
these fields, byte for byte (its keys in the SDK's order, sampling after them as its
``extra_body`` would put them), encoded by msgspec. With a :class:`~.wire_cache.WireCache`
the session's ended turns come encoded already (``msgspec.Raw`` items of ``messages``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from anthropic.types import ContentBlockParam, MessageParam, ThinkingConfigEnabledParam, ToolParam

from threadline.events.conversation import AssistantTurn, Message, ToolSpec, ToolTurn, UserTurn
from threadline.services.agent.providers.history import repair, system_prompt, wrap_tool_output
from threadline.services.agent.providers.parts import ModelRequest
from threadline.services.agent.providers.settings import ProviderSettings
from threadline.services.agent.providers.wire_cache import WireCache, has_tool_turns

#: output tokens kept for the answer when extended thinking is on
THINKING_HEADROOM = 1024


@dataclass(frozen=True, slots=True)
class AnthropicRequest:
    """The arguments of ``messages.create`` (besides ``stream``)."""

    model: str
    system: str
    #: (an item encoded already is a ``msgspec.Raw``: see :mod:`.wire_cache`)
    messages: list[MessageParam | msgspec.Raw]
    tools: list[ToolParam]
    max_tokens: int
    temperature: float | None
    top_p: float | None
    thinking: ThinkingConfigEnabledParam | None

    def sampling(self) -> dict[str, float]:
        """``temperature`` and ``top_p`` as set: raw body fields after the others (SDK
        2.x has no typed parameters for them)."""
        pairs = (("temperature", self.temperature), ("top_p", self.top_p))
        return {name: value for name, value in pairs if value is not None}

    def body(self) -> bytes:
        """The streaming request's JSON body."""
        body: dict[str, Any] = {"max_tokens": self.max_tokens, "messages": self.messages}
        optional = {"system": self.system, "thinking": self.thinking, "tools": self.tools}
        body |= {"model": self.model, "stream": True} | {k: v for k, v in optional.items() if v}
        return msgspec.json.encode(body | self.sampling())


def to_anthropic(
    request: ModelRequest, settings: ProviderSettings, cache: WireCache | None = None
) -> AnthropicRequest:
    """The request as sent (its ended turns from ``cache`` when one is given: a cache of
    :func:`map_messages` for :func:`data_key`). The session's settings are sent as they
    are (the gateway checked them); the provider's defaults give way to extended
    thinking: its ``max_tokens`` is raised to leave the budget room and its temperature
    is left out."""
    max_tokens = request.max_tokens or settings.max_tokens
    temperature = request.temperature if request.temperature is not None else settings.temperature
    thinking: ThinkingConfigEnabledParam | None = None
    budget = request.reasoning_budget_tokens
    if budget:
        thinking = {"type": "enabled", "budget_tokens": budget}
        if request.max_tokens is None:
            max_tokens = max(max_tokens, budget + THINKING_HEADROOM)
        temperature = request.temperature  # the provider's own is not allowed with thinking
    messages: list[MessageParam | msgspec.Raw] = []
    if cache is None:
        messages += map_messages(request.messages, data_key(request, settings))
        tool_turns = has_tool_turns(request.messages)
    else:
        mapped, tool_turns = cache.wire(request.messages, request.history)
        messages += mapped
    return AnthropicRequest(
        model=settings.model_for(request.model),
        system=system_prompt(request.system, tool_turns or bool(request.tools)),
        messages=messages,
        tools=map_tools(request.tools),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=request.top_p,
        thinking=thinking,
    )


def data_key(request: ModelRequest, settings: ProviderSettings) -> str:
    """The ``provider_data`` entry the request's assistant steps are replayed with."""
    return request.provider_data_key or settings.name


def map_tools(tools: tuple[ToolSpec, ...]) -> list[ToolParam]:
    out: list[ToolParam] = []
    for tool in tools:
        param: ToolParam = {"name": tool.name, "input_schema": tool.parameters}
        if tool.description:
            param["description"] = tool.description
        out.append(param)
    return out


def map_messages(messages: Sequence[Message], provider_data_key: str) -> list[MessageParam]:
    merged: list[tuple[Literal["user", "assistant"], list[ContentBlockParam]]] = []
    for message in repair(messages):
        role: Literal["user", "assistant"] = (
            "assistant" if isinstance(message, AssistantTurn) else "user"
        )
        blocks = _blocks(message, provider_data_key)
        if not blocks:
            continue
        if merged and merged[-1][0] == role:
            merged[-1][1].extend(blocks)
        else:
            merged.append((role, blocks))
    return [
        {"role": "user", "content": blocks}
        if role == "user"
        else {"role": "assistant", "content": blocks}
        for role, blocks in merged
    ]


def _blocks(message: Message, provider_data_key: str) -> list[ContentBlockParam]:
    if isinstance(message, UserTurn):
        return [{"type": "text", "text": message.text}] if message.text.strip() else []
    if isinstance(message, ToolTurn):
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.call_id,
                "content": wrap_tool_output(message),
                "is_error": message.is_error,
            }
        ]
    return _assistant_blocks(message, message.provider_data.get(provider_data_key, {}))


def _assistant_blocks(turn: AssistantTurn, data: dict[str, Any]) -> list[ContentBlockParam]:
    blocks: list[ContentBlockParam] = []
    signature = data.get("signature")
    if isinstance(signature, str) and signature:
        blocks.append({"type": "thinking", "thinking": turn.reasoning, "signature": signature})
    redacted = data.get("redacted_data")
    if isinstance(redacted, str) and redacted:
        blocks.append({"type": "redacted_thinking", "data": redacted})
    if turn.text.strip():
        blocks.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.call_id, "name": call.tool, "input": call.arguments}
        )
    return blocks
