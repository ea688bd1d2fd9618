"""The agent worker: takes user messages (and decisions on tool calls that wait for
approval) from a work queue, shared by any number of agent processes; one turn per
session at a time, many sessions at once.

It sees two ports only: the event store and the work queue (``threadline.events.
workqueue``), so a whole turn runs in memory in tests; JetStream lives in the adapters.

Crash safety: a delivery is acked only after its turn ended in a terminal event (or
stopped to wait for approval: the latest decision's delivery carries it on); while a
turn runs the worker sends in-progress acks. When one fails (connection lost, consumer
deleted, the delivery no longer ours) the attempt stops at once, loudly (an error log
and ``threadline_agent_heartbeat_failures_total``), and redelivery decides the turn. A
redelivered message whose turn already ended is acked and skipped; one whose turn was
interrupted starts a new attempt (the ``TurnStarted`` of attempt n+1 fences the old
attempt's writer off); after ``max_attempts`` attempts the turn fails with
``max_deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Final, Literal

from threadline.base.errors import DeliveryLost, StoreError, StoreUnavailable
from threadline.base.logs import log_context
from threadline.events.fold import SessionState
from threadline.events.schema import TurnFailed, is_fork_copy
from threadline.events.sessions import SessionCache
from threadline.events.signing import REJECTED
from threadline.events.store import EventStore
from threadline.events.workqueue import Delivery, WorkQueue
from threadline.services.agent.deadlines import keep_deadlines
from threadline.services.agent.turn import AgentDeps, RestartAttempt, Turn, agent_actor, until
from threadline.services.agent.writer import Fenced, TurnWriter

log = logging.getLogger(__name__)

Outcome = Literal["done", "busy", "fenced"]

#: in-progress acks per ack wait. The first is sent as soon as the turn is taken (the
#: delivery's clock has run since the server sent it), then one every ack wait / this:
#: a delivery rides out an event-loop stall of up to (1 - 1/this) of the ack wait, less
#: the ack's round trip (:func:`ack_wait_for`)
HEARTBEATS_PER_ACK_WAIT: Final = 3


def ack_wait_for(stall_s: float) -> float:
    """The shortest ack wait whose in-progress acks ride out an event-loop stall of
    ``stall_s`` seconds (a busy process: many turns starting at once on a loaded host)."""
    return stall_s * HEARTBEATS_PER_ACK_WAIT / (HEARTBEATS_PER_ACK_WAIT - 1)


@dataclass
class _Running:
    turn_id: str
    cancel: asyncio.Event


class AgentWorker:
    def __init__(
        self,
        store: EventStore,
        queue: WorkQueue,
        deps: AgentDeps,
        *,
        concurrency: int = 500,
        busy_delay_s: float = 0.25,
        grace_s: float = 10.0,
        sessions: SessionCache | None = None,
        deadlines: WorkQueue | None = None,
    ) -> None:
        """``grace_s``: how long a stopping worker lets running turns finish before it
        cancels them (they are redelivered as new attempts); ``sessions``: the session
        states, kept between turns (default: a cache without snapshots); ``deadlines``:
        the queue of approval deadlines this worker helps keep (None: none)."""
        self.deadlines = deadlines
        self.store = store
        self.sessions = SessionCache(store) if sessions is None else sessions
        self.queue = queue
        self.deps = deps
        self.concurrency = concurrency
        self.busy_delay_s = busy_delay_s
        self.grace_s = grace_s
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, _Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then let running turns finish (or be cancelled)."""
        watcher = asyncio.create_task(self._watch_cancels(await self.store.last_position()))
        keeper = asyncio.create_task(
            keep_deadlines(self.deadlines, self.store, self.sessions)
            if self.deadlines is not None
            else asyncio.sleep(0)
        )
        try:
            consumer = await until(self._consume(), stop.wait())
        finally:
            watcher.cancel()
            keeper.cancel()
            await self._drain()
            await asyncio.gather(watcher, keeper, return_exceptions=True)
        if consumer is not None:
            consumer.result()  # raises when the queue failed

    async def _consume(self) -> None:
        """Start each delivery's turn as soon as it arrives, up to ``concurrency``."""
        async with contextlib.aclosing(self.queue.deliveries(self._room)) as deliveries:
            async for delivery in deliveries:
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._done)

    async def _room(self) -> int:
        await self._slots.acquire()  # wait for a free slot, then ask for that many
        self._slots.release()
        return max(1, self.concurrency - len(self._tasks))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.grace_s)
        for task in pending:
            task.cancel()  # not acked: redelivered to another worker as a new attempt
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, delivery: Delivery) -> None:
        rec = delivery.record
        try:
            # a record whose signature the trust policy (if any) refuses: a forged
            # question is never answered
            trust = self.store.trust
            why = None if trust is None else trust.check(rec.raw, rec.envelope, rec.position)
            if why is not None:
                REJECTED.inc(by="agent")
                log.warning(
                    "not acting on the %s at position %d (session %s, version %d): %s",
                    rec.kind, rec.position, rec.session, rec.version, why,
                )  # fmt: skip
                await delivery.term()
                return
            outcome: Outcome | None = "done"
            # A fork's copy of a user message is history, not a question: its turn is
            # copied right after it, and answering it in between would answer it twice.
            if rec.turn is not None and not is_fork_copy(rec.envelope):
                # a decision on a call: its position (the latest decision drives the turn)
                decided = rec.position if rec.kind != "user_message" else None
                with log_context(session=rec.session, turn=rec.turn):
                    outcome = await self._attended(delivery, rec.session, rec.turn, decided)
            if outcome == "busy":
                await delivery.nak(self.busy_delay_s)
            elif outcome == "done":
                await delivery.ack()
            # fenced: leave the delivery alone; the attempt that fenced us owns the turn
            # None: the heartbeat failed; redelivery decides
        except StoreUnavailable as exc:
            log.warning("turn postponed, store unavailable: %s", exc)
            with contextlib.suppress(StoreError):
                await delivery.nak(1.0)
        except StoreError as exc:  # an undecodable session: nothing a retry can fix
            log.error("dropping user message at position %d: %s", rec.position, exc)
            with contextlib.suppress(StoreError):
                await delivery.term()

    async def _attended(
        self, delivery: Delivery, session: str, turn: str, decided: int | None
    ) -> Outcome | None:
        """:meth:`process` while the delivery's heartbeat holds; ``None`` if it failed
        (the attempt is stopped without another write)."""
        # the delivered record is the log's: folded here when it follows on from the
        # cached state, the state's read finds nothing new (the head only, no probes
        # and batch for the one record)
        self.sessions.appended(delivery.record)
        try:
            work = await until(
                self.process(session, turn, decided=decided, seen=delivery.record.version),
                self._heartbeat(delivery),
            )
            assert work is not None  # the heartbeat only ends by failing
        except DeliveryLost as exc:
            self.deps.telemetry.heartbeat_failures.inc()
            log.error(
                "heartbeat failed, attempt stopped (session %s, turn %s, delivery %d): %s",
                session, turn, delivery.attempts, exc,
            )  # fmt: skip
            return None
        return work.result()

    async def _heartbeat(self, delivery: Delivery) -> None:
        every = self.queue.ack_wait_s / HEARTBEATS_PER_ACK_WAIT
        while True:
            # at once first: see HEARTBEATS_PER_ACK_WAIT. A turn found busy ends the
            # heartbeat while that ack is in flight: in_progress raises the cancellation
            # even if its request dropped it (the heartbeat would hold the slot for ever)
            await delivery.in_progress()
            await asyncio.sleep(every)  # a heartbeat timer, not a poll

    async def process(
        self, session: str, turn_id: str, *, decided: int | None = None, seen: int = 0
    ) -> Outcome:
        """Run ``turn_id`` of ``session`` to a terminal event (or until it waits for a
        person's approval), or say why not now. ``decided``: the delivery is the decision
        at that position; of a turn's decisions the latest drives it (carries the
        waiting attempt on, or, redelivered after its worker died, starts a new one as a
        user message would) and the others are done. ``seen``: the delivery's version
        (a session seen young is folded without asking the snapshot store)."""
        if session in self._running:
            return "busy"
        for _ in range(self.deps.settings.max_attempts + 1):
            state = await self.sessions.get(session, seen=seen)  # folds only what is new
            if turn_id not in state.turns or state.is_terminal(turn_id):
                return "done"
            # answered in order: busy while an earlier turn has not ended (O(open turns))
            if next(iter(state.open_turns), turn_id) != turn_id:
                return "busy"
            turn = state.turns[turn_id]
            if turn.awaiting or (decided is not None and decided != turn.last_decision):
                return "done"  # it waits for a person, held by no one: a decision brings it back
            if not turn.resumable and turn.attempt >= self.deps.settings.max_attempts:
                try:
                    await self._give_up(state, turn_id)
                except Fenced as exc:  # the interrupted attempt came back meanwhile
                    log.info("session %s: %s", session, exc)
                    return "fenced"
                return "done"
            running = self._running[session] = _Running(turn_id, asyncio.Event())
            try:
                # the session cache folds what the attempt appends: the session's next
                # turn reads only what others appended since (its user message), not
                # this one's every delta again, before it can start
                await Turn(
                    self.deps, state, turn_id, running.cancel, resume=turn.resumable,
                    recorded=self.sessions.appended,
                ).run()  # fmt: skip
                return "done"
            except RestartAttempt:
                continue
            except Fenced as exc:
                log.info("session %s: %s", session, exc)
                return "fenced"
            finally:
                self._running.pop(session, None)
        return "done"

    async def _give_up(self, state: SessionState, turn_id: str) -> None:
        turn = state.turns[turn_id]
        writer = TurnWriter(
            self.store, state.session, turn_id, turn.attempt, state.version,
            actor=agent_actor(self.deps.settings.worker), on_record=self.sessions.appended,
        )  # fmt: skip
        failed = TurnFailed(
            error="max_deliveries",
            message=f"gave up after {turn.attempt} attempts (the turn kept being interrupted)",
        )
        await writer.append(failed)
        self.deps.telemetry.ended(failed, "", "")

    async def _watch_cancels(self, after: int) -> None:
        async for rec in self.store.follow_all(kinds={"cancel_requested"}, after=after):
            running = self._running.get(rec.session)
            if running is not None and rec.turn in (None, running.turn_id):
                running.cancel.set()
