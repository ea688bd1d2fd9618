"""The command layer: every write to a session, for REST, the AI SDK routes and the CLI.

:class:`SessionCommands` runs the commands (:mod:`~threadline.services.commands.requests`)
over the event-store port and the provider :class:`Catalog`; idempotency is defined in
:mod:`~threadline.services.commands.keys`. See docs/commands.md.
"""

from threadline.services.commands.catalog import Catalog, ProviderEntry
from threadline.services.commands.requests import (
    AnswerApproval,
    CancelTurn,
    Fork,
    Regenerate,
    Rename,
    Retry,
    SendMessage,
    StartSession,
)
from threadline.services.commands.session import SessionCommands

__all__ = [
    "AnswerApproval",
    "CancelTurn",
    "Catalog",
    "Fork",
    "ProviderEntry",
    "Regenerate",
    "Rename",
    "Retry",
    "SendMessage",
    "SessionCommands",
    "StartSession",
]
