"""Conversation -> OpenAI Chat Completions request (OpenAI, OpenRouter, Gemini, Ollama, dev).

* The system prompt is the first message (``role: system``), with the untrusted-data
  notice when tools are involved (see :mod:`.history`).
* Tool results are ``role: tool`` messages whose content is the fenced
  ``<tool_output>`` element; ``is_error`` shows in its ``status`` attribute.
* Reasoning and ``provider_data`` of earlier steps are not sent back: Chat Completions
  has no field for them.
* Consecutive user turns, and consecutive assistant turns without tool calls, are
  merged: the API accepts either, but several OpenAI-compatible servers apply chat
  templates that require alternating roles.

:meth:`OpenAIRequest.body` is the JSON the SDK's ``chat.completions.create`` would send
for these fields, byte for byte (its keys in the SDK's order), encoded by msgspec
without the SDK's per-message transformation. With a :class:`~.wire_cache.WireCache`
the session's ended turns come encoded already (``msgspec.Raw`` items of ``messages``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from threadline.events.conversation import AssistantTurn, Message, ToolSpec, UserTurn
from threadline.services.agent.providers.history import repair, system_prompt, wrap_tool_output
from threadline.services.agent.providers.parts import ModelRequest
from threadline.services.agent.providers.settings import MaxTokensParam, ProviderSettings
from threadline.services.agent.providers.wire_cache import WireCache, has_tool_turns


@dataclass(frozen=True, slots=True)
class OpenAIRequest:
    """The arguments of ``chat.completions.create`` (besides the streaming switches)."""

    model: str
    #: (an item encoded already is a ``msgspec.Raw``: see :mod:`.wire_cache`)
    messages: list[ChatCompletionMessageParam | msgspec.Raw]
    tools: list[ChatCompletionFunctionToolParam]
    max_tokens: int
    max_tokens_param: MaxTokensParam
    temperature: float | None
    top_p: float | None

    def body(self) -> bytes:
        """The streaming request's JSON body."""
        tools = self.tools or None
        optional = {"temperature": self.temperature, "tools": tools, "top_p": self.top_p}
        body: dict[str, Any] = {"model": self.model, "stream": True, "messages": self.messages}
        body[self.max_tokens_param] = self.max_tokens
        body["stream_options"] = {"include_usage": True}
        return msgspec.json.encode(body | {k: v for k, v in optional.items() if v is not None})


def to_openai(
    request: ModelRequest, settings: ProviderSettings, cache: WireCache | None = None
) -> OpenAIRequest:
    """The request as sent (its ended turns from ``cache`` when one is given)."""
    if cache is None:
        mapped, tool_turns = map_messages(request.messages), has_tool_turns(request.messages)
    else:
        mapped, tool_turns = cache.wire(request.messages, request.history)
    system = system_prompt(request.system, tool_turns or bool(request.tools))
    messages: list[ChatCompletionMessageParam | msgspec.Raw] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(mapped)
    return OpenAIRequest(
        model=settings.model_for(request.model),
        messages=messages,
        tools=map_tools(request.tools),
        max_tokens=request.max_tokens or settings.max_tokens,
        max_tokens_param=settings.max_tokens_param,
        temperature=settings.temperature if request.temperature is None else request.temperature,
        top_p=request.top_p,
    )


def map_tools(tools: tuple[ToolSpec, ...]) -> list[ChatCompletionFunctionToolParam]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]


def map_messages(messages: Sequence[Message]) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    previous: Message | None = None
    for message in repair(messages):
        if isinstance(message, UserTurn):
            if isinstance(previous, UserTurn):
                message = UserTurn(text=f"{previous.text}\n\n{message.text}")
                out.pop()
            out.append({"role": "user", "content": message.text})
        elif isinstance(message, AssistantTurn):
            if _text_only(previous) and _text_only(message):
                assert isinstance(previous, AssistantTurn)
                message = AssistantTurn(text=f"{previous.text}\n\n{message.text}".strip())
                out.pop()
            out.append(_assistant(message))
        else:
            content = wrap_tool_output(message)
            out.append({"role": "tool", "tool_call_id": message.call_id, "content": content})
        previous = message
    return out


def _text_only(message: Message | None) -> bool:
    return isinstance(message, AssistantTurn) and not message.tool_calls


def _assistant(turn: AssistantTurn) -> ChatCompletionAssistantMessageParam:
    message: ChatCompletionAssistantMessageParam = {
        "role": "assistant",
        "content": turn.text or None,
    }
    calls: list[ChatCompletionMessageFunctionToolCallParam] = [
        {
            "id": call.call_id,
            "type": "function",
            "function": {"name": call.tool, "arguments": json.dumps(call.arguments)},
        }
        for call in turn.tool_calls
    ]
    if calls:
        message["tool_calls"] = calls
    elif not turn.text:
        message["content"] = ""
    return message
