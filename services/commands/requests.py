"""The commands as values: what a caller (REST, the AI SDK routes, the CLI) asks for.

``actor`` is who asks (``user:<owner>``, ``system``); ``key`` is the client's
idempotency key, empty for none (see :mod:`threadline.services.commands.keys`).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from threadline.base.config import DoubleTexting
from threadline.events.schema import GenerationParams


class StartSession(msgspec.Struct, frozen=True, kw_only=True):
    """Start a session owned by ``owner``; provider, model and tool servers are checked
    against the catalog (empty provider: the deployment's default)."""

    owner: str
    actor: str
    title: str = ""
    provider: str = ""
    model: str = ""
    system_prompt: str = ""
    tool_servers: tuple[str, ...] = ()
    params: GenerationParams = msgspec.field(default_factory=GenerationParams)
    #: what a message sent while a turn is open does (None: the deployment's default)
    double_texting: DoubleTexting | None = None
    #: ``always``: every tool call waits for a person's approval
    approval: Literal["always"] | None = None
    key: str = ""
    #: the session's id; default: derived from ``owner`` and ``key``, else a new one
    session: str = ""


class _ToSession(msgspec.Struct, frozen=True, kw_only=True):
    """A command to the existing session ``session``."""

    session: str
    actor: str


class SendMessage(_ToSession, frozen=True, kw_only=True):
    """A user message: it starts a new turn."""

    text: str
    key: str = ""
    client_message_id: str = ""


class Regenerate(SendMessage, frozen=True, kw_only=True):
    """Answer the message with client key ``key`` again, as a new turn (sent as a new
    message first if it never was)."""


class Retry(_ToSession, frozen=True, kw_only=True):
    """Ask ``turn``'s question again, as a new turn (default: the session's latest turn);
    a failed turn's question is in the model's context only through such a retry."""

    turn: str = ""


class Rename(_ToSession, frozen=True, kw_only=True):
    """Set the session's title (shown in place of the one it started with)."""

    title: str
    key: str = ""


class CancelTurn(_ToSession, frozen=True, kw_only=True):
    """Stop ``turn``; default: the running turn, else the oldest waiting one."""

    turn: str = ""
    reason: str = ""
    key: str = ""


class AnswerApproval(_ToSession, frozen=True, kw_only=True):
    """A person's decision on the tool call ``call_id`` waiting for approval."""

    call_id: str
    approved: bool
    reason: str = ""


class Fork(msgspec.Struct, frozen=True, kw_only=True):
    """A new session whose history is ``source``'s finished turns up to ``version``."""

    source: str
    version: int
    actor: str
    #: the fork's owner; default: the source's
    owner: str | None = None
    #: default: the source's
    provider: str = ""
    #: default: the source's model, or with another provider that provider's default
    model: str = ""
    key: str = ""
    #: the fork's id; default: derived from ``owner`` and ``key``, else a new one
    session: str = ""
