"""Idempotency, defined once: the keys commands give their events, the ids of sessions
made by retryable commands, and what counts as the same request.

A retryable command carries the client's key (an ``Idempotency-Key``, a
``client_message_id``, an AI SDK message id). Its event is stored under
``<kind>:<client key>`` (``create:``, ``message:``, ``cancel:``); the store keeps one
event per key and session (docs/eventstore.md), so a retry appends nothing and gets
the stored record back, which must hold the event asked for
(:func:`same_request`). A command that makes a session (create, fork, an AI SDK chat)
with a key derives the session's id from the owner and the key, so every retry lands
in the same session and two owners' keys never meet.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal

from threadline.base.errors import IdempotencyKeyReused, InvalidSessionId
from threadline.events.ids import validate_session_id
from threadline.events.schema import LEGACY_COPY_KEY_SUFFIX, Event
from threadline.events.store import Recorded

#: a client's key as it may appear in an event's key: printable ASCII without spaces
KEY_PATTERN: Final = r"^[!-~]{1,200}$"
_PLAIN: Final = re.compile(KEY_PATTERN)

ClientKind = Literal["create", "message", "cancel"]


def _digest(text: str, size: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def is_plain(key: str) -> bool:
    """Whether a client's key is used as it is (else a digest of it is)."""
    return _PLAIN.fullmatch(key) is not None


def client_key(kind: ClientKind, given: str) -> str:
    """The event key of a command retried with the client's key ``given``.

    A key that is not plain, or that would end like an old fork copy's key (and so be
    taken for a copy, :func:`~threadline.events.schema.is_fork_copy`), is replaced by a
    digest (``aisdk-``: named when only AI SDK message ids needed it; kept so stored
    keys still match)."""
    if is_plain(given) and not given.endswith(LEGACY_COPY_KEY_SUFFIX):
        return f"{kind}:{given}"
    return f"{kind}:aisdk-{_digest(given, 40)}"


def regenerate_key(turn: str) -> str:
    """A regenerated answer to the message of ``turn``: one new turn however often asked."""
    return f"regenerate:{turn}"


def fork_key(source: str, version: int) -> str:
    """The first event of a fork of ``source`` at ``version``."""
    return f"fork/{source}/{version}"


def copy_key(source: str, version: int) -> str:
    """A fork's copy of event ``version`` of ``source``."""
    return f"copy/{source}/{version}"


def session_id(owner: str, key: str) -> str:
    """The session a create with ``key`` makes: the same for every retry (owner + key)."""
    return _digest(f"{owner}\0{key}", 32)


def fork_id(owner: str, key: str) -> str:
    """The session a fork with ``key`` makes."""
    return session_id(owner, f"fork:{key}")


def chat_session(owner: str, chat: str) -> str:
    """The session of an AI SDK chat: its id when that is a valid session id, else
    ``ai-`` and a digest of owner and chat id."""
    try:
        return validate_session_id(chat)
    except InvalidSessionId:
        digest = _digest(f"aisdk\0{owner}\0{chat}", 32)
        return f"ai-{digest}"


def same_request(stored: Recorded, wanted: Event, turn: str | None = None) -> Recorded:
    """``stored`` if it holds ``wanted`` (for ``turn``, when one is named): a retry;
    else the key was reused for another request (:class:`IdempotencyKeyReused`)."""
    if stored.event != wanted or (turn is not None and stored.turn != turn):
        raise IdempotencyKeyReused()
    return stored
