"""The agent worker: a durable pull consumer on user messages, shared by any number of
agent processes; one turn per session at a time, many sessions at once.

Crash safety: a message is acked only after its turn ended in a terminal event; while a
turn runs the worker sends in-progress acks. A redelivered message whose turn already
ended is acked and skipped; one whose turn was interrupted starts a new attempt (the
``TurnStarted`` of attempt n+1 fences the old attempt's writer off); after
``max_attempts`` attempts the turn fails with ``max_deliveries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Final, Literal

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from threadline.base.errors import StoreError, StoreUnavailable
from threadline.base.logs import log_context
from threadline.events.fold import SessionState, fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import CancelRequested, TurnFailed, is_fork_copy
from threadline.events.store import recorded_from_bytes
from threadline.services.agent.turn import AgentDeps, RestartAttempt, Turn, agent_actor
from threadline.services.agent.writer import Fenced, TurnWriter

log = logging.getLogger(__name__)

DURABLE: Final = "threadline-agent"
_PULL_BATCH: Final = 64
_PULL_EXPIRES_NS: Final = 30 * 10**9
_HB_NS: Final = 5 * 10**9
Outcome = Literal["done", "busy", "fenced"]


@dataclass
class _Running:
    turn_id: str
    cancel: asyncio.Event


class AgentWorker:
    def __init__(
        self,
        store: JetStreamEventStore,
        deps: AgentDeps,
        *,
        concurrency: int = 500,
        ack_wait_s: float = 30.0,
        busy_delay_s: float = 0.25,
        durable: str = DURABLE,
    ) -> None:
        self.store = store
        self.deps = deps
        self.concurrency = concurrency
        self.ack_wait_s = ack_wait_s
        self.busy_delay_s = busy_delay_s
        self.durable = durable
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, _Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then let running turns finish (or be cancelled)."""
        watcher = asyncio.create_task(self._watch_cancels(await self.store.last_position()))
        settings = self.store.settings
        js = self.store.nc.jetstream()
        await js.add_consumer(
            settings.name,
            config=ConsumerConfig(
                durable_name=self.durable,
                filter_subject=f"{settings.prefix}.*.user_message",
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait_s,
                max_ack_pending=self.concurrency * 2,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        inbox = self.store.nc.new_inbox()
        sub = await self.store.nc.subscribe(inbox)
        stopping = asyncio.create_task(stop.wait())
        try:
            await self._pull(sub, inbox, stopping)
        finally:
            stopping.cancel()
            watcher.cancel()
            await self._drain()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _pull(self, sub: Subscription, inbox: str, stopping: asyncio.Task[bool]) -> None:
        """Keep one pull request open and start each message's turn as soon as it arrives
        (a fetch-and-wait loop would hold early messages back until the batch fills)."""
        settings = self.store.settings
        next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{settings.name}.{self.durable}"
        requested = 0
        while not stopping.done():
            if requested == 0:
                await self._slots.acquire()  # wait for a free slot, then ask for that many
                self._slots.release()
                requested = min(_PULL_BATCH, self._free())
                request = {
                    "batch": requested,
                    "expires": _PULL_EXPIRES_NS,
                    "idle_heartbeat": _HB_NS,
                }
                await self.store.nc.publish(next_subject, json.dumps(request).encode(), inbox)
            receive = asyncio.create_task(sub.next_msg(timeout=_HB_NS / 1e9 * 3))
            await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                return
            try:
                msg = receive.result()
            except (nats.errors.TimeoutError, TimeoutError):
                requested = 0  # no heartbeat: the request is gone (reconnect, restart)
                continue
            status = (msg.headers or {}).get("Status") if not msg.data else None
            if status == "100":
                continue  # idle heartbeat
            if status is not None:
                requested = 0  # 404/408/409: this pull request is over
                continue
            requested -= 1
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(msg))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _free(self) -> int:
        return max(1, self.concurrency - len(self._tasks))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _drain(self, grace_s: float = 10.0) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in pending:
            task.cancel()  # not acked: redelivered to another worker as a new attempt
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, msg: Msg) -> None:
        heartbeat = asyncio.create_task(self._in_progress(msg))
        try:
            rec = recorded_from_bytes(msg.metadata.sequence.stream, msg.data)
            outcome: Outcome = "done"
            # A fork's copy of a user message is history, not a question: its turn is
            # copied right after it, and answering it in between would answer it twice.
            if rec.turn is not None and not is_fork_copy(rec.envelope):
                with log_context(session=rec.session, turn=rec.turn):
                    outcome = await self.process(rec.session, rec.turn)
            if outcome == "busy":
                await msg.nak(delay=self.busy_delay_s)
            elif outcome == "done":
                await msg.ack()
            # fenced: leave the delivery alone; the attempt that fenced us owns the turn
        except (StoreUnavailable, nats.errors.Error) as exc:
            log.warning("turn postponed, store unavailable: %s", exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
        except StoreError as exc:  # an undecodable message: nothing a retry can fix
            log.error("dropping undecodable user message: %s", exc)
            with contextlib.suppress(Exception):
                await msg.term()
        finally:
            heartbeat.cancel()

    async def _in_progress(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.ack_wait_s / 3)  # a heartbeat timer, not a poll
                await msg.in_progress()

    async def process(self, session: str, turn_id: str) -> Outcome:
        """Run ``turn_id`` of ``session`` to a terminal event, or say why not now."""
        if session in self._running:
            return "busy"
        for _ in range(self.deps.settings.max_attempts + 1):
            state = fold(await self.store.load(session))
            verdict = self._verdict(state, turn_id)
            if verdict is not None:
                return verdict
            if state.turns[turn_id].attempt >= self.deps.settings.max_attempts:
                try:
                    await self._give_up(state, turn_id)
                except Fenced as exc:  # the interrupted attempt came back meanwhile
                    log.info("session %s: %s", session, exc)
                    return "fenced"
                return "done"
            running = self._running[session] = _Running(turn_id, asyncio.Event())
            try:
                await Turn(self.deps, state, turn_id, running.cancel).run()
                return "done"
            except RestartAttempt:
                continue
            except Fenced as exc:
                log.info("session %s: %s", session, exc)
                return "fenced"
            finally:
                self._running.pop(session, None)
        return "done"

    @staticmethod
    def _verdict(state: SessionState, turn_id: str) -> Outcome | None:
        if turn_id not in state.turns or state.is_terminal(turn_id):
            return "done"
        for earlier in state.order:
            if earlier == turn_id:
                return None
            if not state.is_terminal(earlier):
                return "busy"  # answered in order: an earlier turn has not ended
        return None

    async def _give_up(self, state: SessionState, turn_id: str) -> None:
        turn = state.turns[turn_id]
        writer = TurnWriter(
            self.store, state.session, turn_id, turn.attempt, state.version,
            actor=agent_actor(self.deps.settings.worker),
        )  # fmt: skip
        await writer.append(
            TurnFailed(
                error="max_deliveries",
                message=f"gave up after {turn.attempt} attempts (the turn kept being interrupted)",
            )
        )
        self.deps.telemetry.given_up()

    async def _watch_cancels(self, after: int) -> None:
        async for rec in self.store.follow_all(kinds={"cancel_requested"}, after=after):
            running = self._running.get(rec.session)
            if running is None or not isinstance(rec.event, CancelRequested):
                continue
            if rec.turn in (None, running.turn_id):
                running.cancel.set()
