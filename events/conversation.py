"""The conversation as the agent sends it to a model: vendor-neutral messages.

Provider adapters map these to their wire formats (one module per direction); the
session fold (:mod:`threadline.events.fold`) produces them from the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from threadline.events.schema import ToolCallRef


class UserTurn(msgspec.Struct, frozen=True, kw_only=True, tag="user", tag_field="role"):
    text: str


class AssistantTurn(msgspec.Struct, frozen=True, kw_only=True, tag="assistant", tag_field="role"):
    """One model step: text, optional reasoning, and the tool calls it asked for."""

    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallRef, ...] = ()
    #: opaque data per provider name (e.g. ``{"anthropic": {"signature": "..."}}``)
    provider_data: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class ToolTurn(msgspec.Struct, frozen=True, kw_only=True, tag="tool", tag_field="role"):
    """The result of one tool call, fed back to the model.

    Tool output is untrusted content: adapters present it as data, never as
    instructions (see docs/security.md).
    """

    call_id: str
    tool: str
    content: str
    is_error: bool = False


Message = UserTurn | AssistantTurn | ToolTurn


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A tool offered to the model: name (server-prefixed), description, JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})


def answered_steps(steps: Iterable[Message]) -> tuple[Message, ...]:
    """The steps up to the last one whose tool calls all have results (what a cancelled
    turn keeps: a model must never see a tool call without its result)."""
    kept: list[Message] = []
    pending: list[Message] = []
    open_calls: set[str] = set()
    for message in steps:
        pending.append(message)
        if isinstance(message, AssistantTurn):
            open_calls |= {c.call_id for c in message.tool_calls}
        elif isinstance(message, ToolTurn):
            open_calls.discard(message.call_id)
        if not open_calls:
            kept.extend(pending)
            pending.clear()
    return tuple(kept)
