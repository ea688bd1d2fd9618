"""Every write to a session, in one place: :class:`SessionCommands`.

REST, the AI SDK routes and the CLI translate their requests into the commands of
:mod:`threadline.services.commands.requests` and call these methods; who may write
to which session (ownership, admins) is checked before, by the caller. Commands raise
typed errors (:mod:`threadline.base.errors`), never HTTP ones. Idempotency is in
:mod:`threadline.services.commands.keys`; the rules about turns come from the
session's state (:class:`~threadline.events.fold.SessionState`, kept current by a
:class:`~threadline.events.sessions.SessionCache`), which also holds every key a
command stored, so a retry is found however long after the store's duplicate window.
"""

from __future__ import annotations

import secrets
from typing import Final

from msgspec.structs import replace

from threadline.base.config import DoubleTexting
from threadline.base.errors import (
    ApprovalDecided,
    CommandRefused,
    ConcurrencyError,
    IdempotencyKeyReused,
    NothingToCancel,
    TurnFinished,
    TurnNotFound,
    TurnRunning,
)
from threadline.events import schema as ev
from threadline.events.approvals import SYSTEM, Decision, decide, expired, expiry, find
from threadline.events.fold import SessionState
from threadline.events.ids import new_id, validate_session_id
from threadline.events.sessions import SessionCache
from threadline.events.store import EventStore, NewEvent, Recorded, records_at
from threadline.services.commands import requests as rq
from threadline.services.commands.catalog import Catalog, check_choice
from threadline.services.commands.fork import fork_events, started_from, write_fork
from threadline.services.commands.keys import (
    DerivedIds,
    client_key,
    regenerate_key,
    same_request,
    stop_key,
)

#: how often a message is decided again when its session moved on meanwhile
_ADMIT_TRIES: Final = 20


class SessionCommands:
    """The commands over an event store. ``catalog`` checks the providers, models and
    tool servers a command names; ``None`` accepts any (operators' tools). ``sessions``:
    where session states come from (default: a cache of this store's, no snapshots).
    ``ids``: how keyed commands derive session ids (default: under a random secret of
    this process, for tools that send no keys)."""

    def __init__(
        self,
        store: EventStore,
        catalog: Catalog | None = None,
        *,
        sessions: SessionCache | None = None,
        ids: DerivedIds | None = None,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.sessions = SessionCache(store) if sessions is None else sessions
        self.ids = ids or DerivedIds(secrets.token_bytes(32))

    async def state(self, session: str) -> SessionState:
        """The session's state now (the fold of its events, from the cache): the one
        way commands read it. Raises ``SessionNotFound``."""
        return await self.sessions.get(session)

    async def create_session(self, cmd: rq.StartSession) -> Recorded:
        """Start a session; answers its ``session_started`` record."""
        provider, model = cmd.provider, cmd.model
        if self.catalog is not None:
            provider, model = check_choice(
                self.catalog, provider, model, cmd.tool_servers, cmd.params
            )
        event = replace(started_from(cmd), provider=provider, model=model)
        session = cmd.session or (self.ids.session(cmd.owner, cmd.key) if cmd.key else new_id())
        key = client_key("create", cmd.key) if cmd.key else new_id()
        new = NewEvent(event=event, actor=cmd.actor, key=key)
        (rec,) = await self.store.append(session, new, expected_version=0)
        self.sessions.appended(rec)  # its first message needs no read of it
        return same_request(rec, event)

    async def post_message(self, cmd: rq.SendMessage) -> Recorded:
        """Append a user message with a new turn id; answers its record (``rec.turn``)."""
        event = ev.UserMessage(text=cmd.text, client_message_id=cmd.client_message_id)
        key = client_key("message", cmd.key) if cmd.key else new_id()
        state = await self.state(cmd.session)
        if cmd.key and (retried := await self._retried(state, key, event)):
            return retried
        return await self._open_turn(state, event, key, cmd.actor)

    def double_texting(self, state: SessionState) -> DoubleTexting:
        """What a message sent to the session while a turn is open does: the session's
        choice, else the deployment's (the catalog's; none: ``enqueue``)."""
        default = self.catalog.double_texting if self.catalog is not None else "enqueue"
        return state.double_texting or default

    async def _open_turn(
        self, state: SessionState, event: ev.UserMessage, key: str, actor: str
    ) -> Recorded:
        """Append ``event`` as the message of a new turn, as the session's double-texting
        policy says (docs/human-in-the-loop.md): queued behind the open turns
        (``enqueue``), refused while one is open (``reject``), or after a stop request
        for each open turn (``interrupt``; ``rollback`` also leaves them out of the
        model's context: the fold's rule). Those three append at the version they decided
        on, so of two messages at once the one that loses decides again."""
        policy = self.double_texting(state)
        new = NewEvent(event=event, actor=actor, turn=new_id(), key=key)
        if policy == "enqueue":
            (rec,) = await self.store.append(state.session, new)  # a retry racing it: one stored
            return same_request(rec, event)
        for _ in range(_ADMIT_TRIES):
            stops = _stops(state, policy, actor)
            try:
                *_, rec = await self.store.append(
                    state.session, [*stops, new], expected_version=state.version
                )
                return same_request(rec, event)
            except ConcurrencyError:
                state = await self.state(state.session)
                if retried := await self._retried(state, key, event):
                    return retried
        raise ConcurrencyError(state.session, state.version)

    async def rename(self, cmd: rq.Rename) -> Recorded:
        """Set the session's title; answers the ``session_renamed`` record."""
        state = await self.state(cmd.session)  # the session must exist
        event = ev.SessionRenamed(title=cmd.title)
        key = client_key("rename", cmd.key) if cmd.key else new_id()
        if cmd.key and (retried := await self._retried(state, key, event)):
            return retried
        (rec,) = await self.store.append(
            cmd.session, NewEvent(event=event, actor=cmd.actor, key=key)
        )
        return same_request(rec, event)

    async def cancel(self, cmd: rq.CancelTurn) -> Recorded:
        """Ask the agent to stop a turn; answers the ``cancel_requested`` record (the one
        already there if the turn was asked to stop before)."""
        state = await self.state(cmd.session)
        key = client_key("cancel", cmd.key) if cmd.key else new_id()
        event = ev.CancelRequested(reason=cmd.reason)
        named = cmd.turn or None
        if cmd.key and (retried := await self._retried(state, key, event, named)):
            return retried
        turn = _cancellable(state, cmd.turn or current_turn(state))
        if earlier := state.turns[turn].cancel_position:  # asked before: that one answers
            return await self.store.get(earlier)
        new = NewEvent(event=event, actor=cmd.actor, turn=turn, key=key)
        if not (ends := _ended_waiting(state, turn, cmd.actor)):
            (rec,) = await self.store.append(cmd.session, new)
            return same_request(rec, event, named)
        try:  # no worker holds a turn waiting for approval: the stop ends it here
            rec, *_ = await self.store.append(
                cmd.session, [new, *ends], expected_version=state.version
            )
        except ConcurrencyError:  # decided (or stopped) meanwhile: decide again
            return await self.cancel(cmd)
        return same_request(rec, event, named)

    async def answer_approval(self, cmd: rq.AnswerApproval) -> Recorded:
        """Decide the tool call ``cmd.call_id`` waiting for approval; answers the decision's
        record (the same request again: the same record). ``ApprovalDecided`` when another
        answer, or the deadline, decided first (an answer after the deadline records the
        deadline's denial first); ``ApprovalNotFound``, ``TurnFinished``."""
        state = await self.state(cmd.session)
        found = find(state, cmd.call_id)
        if found is not None and found[1].decision is None and expired(found[1]):
            await decide(self.store, self.sessions, cmd.session, expiry(cmd.call_id), SYSTEM)
        decision: type[Decision] = ev.ApprovalGranted if cmd.approved else ev.ApprovalDenied
        event = decision(call_id=cmd.call_id, reason=cmd.reason)
        rec = await decide(self.store, self.sessions, cmd.session, event, cmd.actor)
        if rec.event != event or rec.envelope.actor != cmd.actor:
            how = "approved" if isinstance(rec.event, ev.ApprovalGranted) else "denied"
            raise ApprovalDecided(f"call {cmd.call_id!r} was {how} already ({rec.envelope.actor})")
        return rec

    async def _retried(
        self, state: SessionState, key: str, event: ev.Event, turn: str | None = None
    ) -> Recorded | None:
        """The record an earlier request with ``key`` stored in the session, if any (one
        direct read, found in the state's keys); it must be the same request
        (:func:`same_request`)."""
        position = state.requests.get(key)
        if position is None:
            return None
        return same_request(await self.store.get(position), event, turn)

    async def regenerate(self, cmd: rq.Regenerate) -> Recorded:
        """Ask the message with client key ``cmd.key`` again, as a new turn; while the
        latest answer to it runs, answer that turn's message instead."""
        state = await self.state(cmd.session)
        if cmd.key:
            sent = state.requests.get(client_key("message", cmd.key))
            for turn in reversed(state.turns.values()):  # the latest ask: sent, or asked again
                user = turn.user
                if user is None:
                    continue
                if user.position == sent or getattr(user.event, "client_message_id", "") == cmd.key:
                    return await self._ask_again(state, turn.turn_id, cmd.actor)
        return await self.post_message(cmd)  # never sent: this is its first answer

    async def retry(self, cmd: rq.Retry) -> Recorded:
        """Ask ``cmd.turn``'s question again (default: the latest turn's), as a new turn;
        while that turn runs, answer its message instead."""
        state = await self.state(cmd.session)
        turn = cmd.turn or next(reversed(state.turns), None)
        if turn is None:
            raise CommandRefused("the session has no turn to retry")
        if turn not in state.turns or state.turns[turn].user is None:
            raise TurnNotFound(turn)
        return await self._ask_again(state, turn, cmd.actor)

    async def _ask_again(self, state: SessionState, turn: str, actor: str) -> Recorded:
        """A new turn with ``turn``'s user message (once per turn: a retry of the request
        gets the same one back); ``turn``'s own message while it has not ended."""
        asked = state.turns[turn].user
        assert asked is not None and isinstance(asked.event, ev.UserMessage)
        if not state.is_terminal(turn):
            return await self.store.get(asked.position)
        event = asked.event  # the same question, asked again
        key = regenerate_key(turn)
        if retried := await self._retried(state, key, event):
            return retried
        return await self._open_turn(state, event, key, actor)

    async def fork(self, cmd: rq.Fork) -> Recorded:
        """Make the fork (idempotent with ``cmd.key`` or ``cmd.session``); answers its last
        record (``rec.session`` is the fork)."""
        events = fork_events(
            await records_at(self.store, cmd.source, cmd.version), cmd, self.catalog
        )
        started = events[0].event
        assert isinstance(started, ev.SessionStarted)
        if cmd.session:
            target = validate_session_id(cmd.session)
        else:
            target = self.ids.fork(started.owner, cmd.key) if cmd.key else new_id()
        try:
            fresh = not (cmd.session or cmd.key)
            return await write_fork(self.store, target, events, fresh=fresh)
        except ConcurrencyError:
            if cmd.key and not cmd.session:
                raise IdempotencyKeyReused() from None
            raise


def current_turn(state: SessionState) -> str | None:
    """The turn being answered, else the next to be (what a cancel without a turn stops,
    what an AI SDK resume streams)."""
    return state.in_flight or next(iter(state.pending), None)


def _stops(state: SessionState, policy: DoubleTexting, actor: str) -> list[NewEvent]:
    """The stop requests a new message sent with ``policy`` makes: one for each open turn
    not yet asked (``rollback``: asked to roll back); ``reject`` refuses the message
    while a turn is open."""
    if policy == "reject" and state.open_turns:
        raise TurnRunning("a turn of this session is still running; wait for it or stop it")
    if policy not in ("interrupt", "rollback"):
        return []
    rollback = policy == "rollback"
    reason = "rolled back by a new message" if rollback else "interrupted by a new message"
    stop = ev.CancelRequested(reason=reason, rollback=rollback)
    return [
        new
        for turn in state.open_turns
        if not (state.turns[turn].rollback if rollback else state.turns[turn].cancel_requested)
        for new in (
            NewEvent(event=stop, actor=actor, turn=turn, key=stop_key(policy, turn)),
            *_ended_waiting(state, turn, actor),
        )
    ]


def _ended_waiting(state: SessionState, turn: str, actor: str) -> list[NewEvent]:
    """The end of ``turn`` when a stop reaches it while it waits for approval (no worker
    holds it to write one): cancelled, in its attempt (which fences off a worker that
    took it up meanwhile). Appended with the stop, at the version that saw it wait."""
    waiting = state.turns[turn]
    if not waiting.awaiting:
        return []
    ended = ev.TurnCancelled(reason="stopped while waiting for approval")
    return [
        NewEvent(
            event=ended, actor=actor, turn=turn, attempt=waiting.attempt, key=f"{turn}/cancelled"
        )
    ]


def _cancellable(state: SessionState, turn: str | None) -> str:
    """``turn`` if it may be asked to stop, else why not."""
    if turn is None:
        raise NothingToCancel("no turn is running or waiting")
    if turn not in state.turns:
        raise TurnNotFound(turn)
    if state.is_terminal(turn):
        raise TurnFinished(f"turn {turn!r} has already ended")
    return turn
