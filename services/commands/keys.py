"""Idempotency, defined once: the keys commands give their events, the ids of sessions
made by retryable commands, and what counts as the same request.

A retryable command carries the client's key (an ``Idempotency-Key``, a
``client_message_id``, an AI SDK message id). Its event is stored under
``<kind>:<client key>`` (``create:``, ``message:``, ``cancel:``); the store keeps one
event per key and session (docs/eventstore.md), so a retry appends nothing and gets
the stored record back, which must hold the event asked for
(:func:`same_request`). A command that makes a session (create, fork, an AI SDK chat)
with a key derives the session's id from the owner and the key (:class:`DerivedIds`,
keyed with the deployment's secret), so every retry lands in the same session, two
owners' keys never meet and nobody can compute, and take first, another owner's id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final, Literal

from threadline.base.errors import IdempotencyKeyReused
from threadline.events.schema import LEGACY_COPY_KEY_SUFFIX, Event
from threadline.events.store import Recorded

#: a client's key as it may appear in an event's key: printable ASCII without spaces
KEY_PATTERN: Final = r"^[!-~]{1,200}$"
_PLAIN: Final = re.compile(KEY_PATTERN)

ClientKind = Literal["create", "message", "cancel", "rename"]


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
    return f"{kind}:aisdk-{hashlib.sha256(given.encode()).hexdigest()[:40]}"


def regenerate_key(turn: str) -> str:
    """A regenerated answer to the message of ``turn``: one new turn however often asked."""
    return f"regenerate:{turn}"


def stop_key(policy: str, turn: str) -> str:
    """The stop request a message sent with double-texting ``policy`` makes for the open
    ``turn``: one per turn however many messages (or retries) ask it."""
    return f"{policy}:{turn}"


def fork_key(source: str, version: int) -> str:
    """The first event of a fork of ``source`` at ``version``."""
    return f"fork/{source}/{version}"


def copy_key(source: str, version: int) -> str:
    """A fork's copy of event ``version`` of ``source``."""
    return f"copy/{source}/{version}"


class DerivedIds:
    """The ids of sessions made with a client's key: an HMAC of the owner and the key
    under the deployment's secret (``Settings.id_key``), so the same for every retry
    and every gateway, and unguessable to anyone but the owner, who only learns them
    from the answers."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _digest(self, *parts: str) -> str:
        message = "\0".join(parts).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def session(self, owner: str, key: str) -> str:
        """The session a create with ``key`` makes."""
        return self._digest(owner, key)

    def fork(self, owner: str, key: str) -> str:
        """The session a fork with ``key`` makes."""
        return self._digest(owner, f"fork:{key}")

    def chat(self, owner: str, chat: str) -> str:
        """The session of ``owner``'s AI SDK chat ``chat`` (unless ``chat`` names a
        session of theirs): ``ai-`` and 32 hex digits, per owner."""
        return f"ai-{self._digest('aisdk', owner, chat)}"


def same_request(stored: Recorded, wanted: Event, turn: str | None = None) -> Recorded:
    """``stored`` if it holds ``wanted`` (for ``turn``, when one is named): a retry;
    else the key was reused for another request (:class:`IdempotencyKeyReused`)."""
    if stored.event != wanted or (turn is not None and stored.turn != turn):
        raise IdempotencyKeyReused()
    return stored
