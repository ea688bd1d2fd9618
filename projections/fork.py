"""Fork: a new session whose history is a copy of another's finished turns up to a version.

The fork starts with a ``session_started`` carrying ``forked_from = (source, version)``
(and the source's settings, with the provider and model optionally replaced, and the
owner optionally replaced), followed by copies of the user messages and the events of
every turn that had ended by that version (completed, failed or cancelled), attempt
that counted only. Turns still pending or running at that version are left out, so
nothing in the fork is waiting for an answer. Copies keep their actor, turn and
attempt; their keys are new and deterministic.

Forking again into the same ``session`` is idempotent: a fork that is already there
is answered as it is, one that stopped half-way is completed, and a session holding
anything else is a :class:`~threadline.base.errors.ConcurrencyError`.
"""

from __future__ import annotations

import contextlib
from typing import Final

from threadline.base.errors import ConcurrencyError
from threadline.events.fold import TERMINAL, fold
from threadline.events.ids import new_id, validate_session_id
from threadline.events.schema import ForkOrigin, SessionStarted, UserMessage
from threadline.events.store import EventStore, NewEvent, Recorded
from threadline.projections.asof import records_at

#: ends the key of every event a fork copies (views tell copies by it)
COPY_KEY_SUFFIX: Final = "~fork"


async def fork_session(
    store: EventStore,
    source: str,
    version: int,
    provider: str | None = None,
    model: str | None = None,
    actor: str = "system",
    *,
    session: str | None = None,
    owner: str | None = None,
) -> str:
    """Create the fork (as ``session``, or a new id) and return its session id.

    ``provider``, ``model`` and ``owner`` default to the source's (``None``); an empty
    ``model`` means the provider's default model.
    """
    records = await records_at(store, source, version)
    target = validate_session_id(session) if session is not None else new_id()
    first = _started(records, source, version, provider, model, owner)
    # Deterministic keys: retrying the same fork into the same session is idempotent.
    events = [NewEvent(event=first, actor=actor, key=f"fork/{source}/{version}"), *_copies(records)]
    if session is None:
        await store.append(target, events, expected_version=0)
    else:
        await _complete(store, target, events)
    return target


async def _complete(store: EventStore, target: str, events: list[NewEvent]) -> None:
    """Append what ``target`` lacks of ``events``; refuse if it holds anything else."""
    stored: list[Recorded] = []
    if (await store.head(target)).version > 0:
        async with contextlib.aclosing(store.read(target)) as records:
            stored = [rec async for rec in records]
    for rec, new in zip(stored, events, strict=False):
        if rec.envelope.key != new.key or rec.event != new.event:
            raise ConcurrencyError(target, 0, stored[-1].version)
    if len(stored) > len(events):
        raise ConcurrencyError(target, 0, stored[-1].version)
    if len(stored) < len(events):
        await store.append(target, events[len(stored) :], expected_version=len(stored))


def _started(
    records: list[Recorded],
    source: str,
    version: int,
    provider: str | None,
    model: str | None,
    owner: str | None,
) -> SessionStarted:
    state = fold(records)
    origin = ForkOrigin(session=source, version=version)
    first = next((r.event for r in records if isinstance(r.event, SessionStarted)), None)
    return SessionStarted(
        owner=state.owner if owner is None else owner,
        title=first.title if first is not None else "",
        provider=state.provider if provider is None else provider,
        model=state.model if model is None else model,
        system_prompt=state.system_prompt,
        tool_servers=state.tool_servers,
        params=state.params,
        forked_from=origin,
    )


def _copies(records: list[Recorded]) -> list[NewEvent]:
    state = fold(records)
    finished = {t: s.attempt for t, s in state.turns.items() if s.status in TERMINAL}
    ended: set[str] = set()
    out: list[NewEvent] = []
    for rec in records:
        event, turn = rec.event, rec.turn
        if isinstance(event, SessionStarted):
            continue
        if isinstance(event, UserMessage):
            keep = turn is None or turn in finished
        else:
            keep = (
                turn in finished
                and turn not in ended
                and (rec.attempt is None or rec.attempt == finished[turn])
            )
        if not keep:
            continue
        if turn is not None and rec.kind in ("turn_completed", "turn_failed", "turn_cancelled"):
            ended.add(turn)
        out.append(
            NewEvent(
                event=event,
                actor=rec.envelope.actor,
                turn=turn,
                attempt=rec.attempt,
                key=f"{rec.envelope.key}{COPY_KEY_SUFFIX}",
            )
        )
    return out
