"""Fork: a new session whose history is a copy of another's finished turns up to a version.

The fork starts with a ``session_started`` carrying ``forked_from = (source, version)``
and the source's settings (owner, provider and model possibly replaced), followed by
copies of the user messages and events of every turn that had ended by that version
(completed, failed or cancelled), attempt that counted only. Turns still pending or
running at that version are left out, so nothing in the fork waits for an answer.
Copies keep their event, actor, turn and attempt; their envelope says what they are a
copy of (``copied_from``), so the agent and the views never take them for new work;
their keys are new and deterministic.

Forking again into the same session is idempotent: a fork that is there already is
answered as it is, one that stopped half-way is completed, and a session holding
anything else is a :class:`~threadline.base.errors.ConcurrencyError`.
"""

from __future__ import annotations

import contextlib

import msgspec
from msgspec.structs import replace

from threadline.base.errors import ConcurrencyError, InvalidField
from threadline.events.fold import SessionState, fold
from threadline.events.schema import ForkOrigin, SessionStarted, UserMessage
from threadline.events.store import EventStore, NewEvent, Recorded
from threadline.services.commands.catalog import Catalog, check_choice
from threadline.services.commands.keys import copy_key, fork_key
from threadline.services.commands.requests import Fork


def fork_events(records: list[Recorded], cmd: Fork, catalog: Catalog | None) -> list[NewEvent]:
    """The fork's events, from the source's ``records`` up to ``cmd.version``."""
    state = fold(records)
    provider, model = _choice(state, cmd, catalog)
    started = replace(
        started_from(state), owner=state.owner if cmd.owner is None else cmd.owner,
        title=state.named, provider=provider, model=model,
        forked_from=ForkOrigin(session=cmd.source, version=cmd.version),
    )  # fmt: skip
    first = NewEvent(event=started, actor=cmd.actor, key=fork_key(cmd.source, cmd.version))
    return [first, *_copies(records, state)]


def started_from(settings: object) -> SessionStarted:
    """A ``session_started`` with the settings (owner, title, provider, model...) of
    ``settings``: a command's, or a session's state."""
    return msgspec.convert(settings, SessionStarted, from_attributes=True)


def _choice(state: SessionState, cmd: Fork, catalog: Catalog | None) -> tuple[str, str]:
    """(provider, model): the source's unless replaced, checked against the catalog
    (``None``: not checked, for operators)."""
    if not cmd.provider:
        if cmd.model and catalog is not None:
            if not any(e.name == state.provider for e in catalog.providers):
                raise InvalidField(
                    "provider", f"the source's provider {state.provider!r} is not offered; name one"
                )
            check_choice(catalog, state.provider, cmd.model, ())
        return state.provider, cmd.model or state.model
    if catalog is None:
        return cmd.provider, cmd.model
    provider, model = check_choice(catalog, cmd.provider, cmd.model, (), state.params)
    entry = next(e for e in catalog.providers if e.name == provider)
    return provider, model or entry.default_model


def _copies(records: list[Recorded], state: SessionState) -> list[NewEvent]:
    """Copies of what the ended turns settled on, and of user messages outside turns."""
    return [
        NewEvent(
            event=rec.event,
            actor=rec.envelope.actor,
            turn=rec.turn,
            attempt=rec.attempt,
            key=copy_key(rec.session, rec.version),
            copied_from=ForkOrigin(session=rec.session, version=rec.version),
        )
        for rec in records
        if state.settled(rec) or (rec.turn is None and isinstance(rec.event, UserMessage))
    ]


async def write_fork(
    store: EventStore, target: str, events: list[NewEvent], *, fresh: bool
) -> Recorded:
    """Append the fork to ``target`` (``fresh``: a new id, which must be empty), or
    complete what ``target`` lacks of it; answer its last record."""
    if fresh:
        return (await store.append(target, events, expected_version=0))[-1]
    stored: list[Recorded] = []
    if (await store.head(target)).version > 0:
        async with contextlib.aclosing(store.read(target)) as records:
            stored = [rec async for rec in records]
    copied = [(rec.envelope.key, rec.envelope.event, rec.envelope.copied_from) for rec in stored]
    if copied != [(new.key, new.event, new.copied_from) for new in events[: len(stored)]]:
        raise ConcurrencyError(target, 0, stored[-1].version)  # other events, or more
    if len(stored) == len(events):
        return stored[-1]
    appended = await store.append(target, events[len(stored) :], expected_version=len(stored))
    return appended[-1]
