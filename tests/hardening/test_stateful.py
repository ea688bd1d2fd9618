"""Concurrency, as a hypothesis state machine: turns, crashes, takeovers, stale writers and
stops against the real event store, turn writer and worker, checked against the fold and
the projections.

What is real: the event store — :class:`MemoryEventStore`, which checks appends in a
single nats-server's order (and, in ``TestTurnMachineClusteredOrder``, a cluster's), and a
real nats-server (``test_turn_machine_on_jetstream``, a stream per example) — with each
worker on a client of its own (its own head cache, like a process), the
:class:`TurnWriter` and its fencing, :meth:`AgentWorker.process` (its verdicts, attempts,
give-up) and the whole :class:`Turn` (coalescing, tool steps, retries, fallbacks, stop),
the session fold, ``verify_session`` and the projector writing the sessions and usage
views into SQLite. What is fake: the model and the tools, which implement our own protocols
(:class:`ModelAdapter`, ``Tools``) and block at *gates* until a rule says what happens
next. A crashed worker is one whose gates are never answered again (kill -9 or SIGSTOP);
a stale writer coming back is such a worker whose gate is answered after all.

Rules: a user message; a (re)delivery to a new worker, which may stall between reading
the session and its first append; a delta (text or reasoning), a tool call, the end of a
step (completion), a provider fault (429, 500, dropped connection, stall, 401, context
too long, "does not support tools": retries, fallbacks, failures); a tool result; a crash;
a stale writer coming back; a stop (``CancelRequested``); the projector catching up.

Invariants, after every step: versions contiguous and the hash chain intact; the fold
has no anomaly; at most one terminal event per turn, and turns end in order; only the
writer of a turn's newest attempt lands events for it (a fenced writer never lands one
after the takeover) and nothing lands after the terminal event. Whenever the projector
runs: the sessions and usage views (messages shown, turns, the last status; per turn
the attempt that counted and its status) say what the session model says, and the
incremental fold equals the fold from scratch. At the end, quiescence: every pending
turn is run to an end, every stalled worker comes back (and is fenced off), every turn
is terminal, ``verify_session`` passes and the views still say what the fold says.

Everything runs on one event loop per example, driven by the rules: after each step the
loop runs until every worker is blocked at a gate or finished (no sleeps, no clocks:
the coalescing window and the retry backoff are zero). The number of examples is 500 by
default, a fifth of that on the other two stores (about 50 s, 20 s and 25 s on a 2-core
machine); ``THREADLINE_STATEFUL_EXAMPLES=5000`` runs more,
``THREADLINE_STATEFUL_JETSTREAM_EXAMPLES`` sets the real server's. The defects it found are
replayed by the ``test_regression_*`` tests at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import fresh_stream
from threadline.events import codec
from threadline.events.conversation import ToolSpec, ToolTurn
from threadline.events.fold import SessionState, fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import (
    TERMINAL_KINDS,
    CancelRequested,
    ErrorKind,
    SessionStarted,
    ToolResult,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
    UserMessage,
)
from threadline.events.store import EventStore, NewEvent, Recorded, Stored, subject_for
from threadline.events.verify import verify_session
from threadline.events.workqueue import MemoryWorkQueue
from threadline.projections.config import ProjectorConfig
from threadline.projections.projector import Projector
from threadline.projections.recorder import ViewRecorder
from threadline.projections.sql import Db
from threadline.services.agent.providers import (
    ModelRequest,
    ProviderError,
    ProviderRegistry,
    ProviderSettings,
)
from threadline.services.agent.providers.parts import (
    FinishPart,
    Part,
    ReasoningDelta,
    TextDelta,
    ToolCallEnd,
    ToolCallStart,
    UsagePart,
)
from threadline.services.agent.tools import (
    ToolContext,
    ToolListing,
    ToolOutcome,
    UnavailableServer,
)
from threadline.services.agent.turn import AgentDeps, AgentSettings
from threadline.services.agent.worker import AgentWorker
from threadline.services.agent.writer import Fenced, TurnWriter
from threadline.services.gateway.history import session_detail

SESSION = "stateful"
TOOL = "fake__lookup"
MAX_TURNS = 3
MAX_WORKERS = 8
EXAMPLES = int(os.environ.get("THREADLINE_STATEFUL_EXAMPLES", "500"))
#: on the key-first order of a clustered stream, and on a real nats-server (slower)
CLUSTERED_ORDER_EXAMPLES = max(1, EXAMPLES // 5)
JETSTREAM_EXAMPLES = int(os.environ.get("THREADLINE_STATEFUL_JETSTREAM_EXAMPLES", EXAMPLES // 5))
AGENT = AgentSettings(
    delta_window_s=0.0,  # every delta is appended at once: no timer
    max_steps=1,  # the step limit is within reach: one tool step, then an answer
    max_retries=1,
    retry_base_s=0.0,  # backoff sleeps are sleep(0)
    max_attempts=3,
    fallback_providers=("backup",),
)
SETTLE_GUARD_S = 10.0  # a deadlock guard only: settling never waits for time to pass


# ----------------------------------------------------------------------------- gates


@dataclass(frozen=True)
class Delta:
    text: str
    reasoning: bool = False


@dataclass(frozen=True)
class Call:
    call_id: str


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class Fault:
    """A provider error, as the adapters type it (``providers/sdk_errors.py``)."""

    name: str
    kind: ErrorKind
    retryable: bool
    before_output_only: bool  # an HTTP status arrives before any part is streamed
    tools_unsupported: bool = False

    def error(self) -> ProviderError:
        return ProviderError(
            f"fake provider: {self.name}", kind=self.kind, provider="fake",
            retryable=self.retryable, retry_after_s=0.0 if self.retryable else None,
            tools_unsupported=self.tools_unsupported,
        )  # fmt: skip


FAULTS = (
    Fault("429 retry-after", "rate_limit", True, True),
    Fault("500", "provider_error", True, False),  # also as an error event mid-stream
    Fault("dropped connection", "network", True, False),
    Fault("stall past the timeout", "timeout", True, False),
    Fault("401", "auth", False, True),
    Fault("400 context", "context_too_long", False, True),
    Fault("400 does not support tools", "bad_request", False, True, tools_unsupported=True),
)


@dataclass(frozen=True)
class Result:
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Resume:
    pass


Command = Delta | Call | End | Fault | Result | Resume


@dataclass
class Gate:
    """A fake blocked until the test answers: ``model`` (the next part of a stream),
    ``tool`` (a call's result) or ``fold`` (a worker stalled after reading the session)."""

    kind: str
    future: asyncio.Future[Command]
    call_id: str = ""
    tools: bool = False  # model: the request offers tools
    streamed: bool = False  # model: this stream already produced a part

    @property
    def open(self) -> bool:
        return not self.future.done()


class Pulse:
    """Wakes the test whenever something happened (a gate opened, an event was appended,
    a worker finished); the test then re-checks what it waits for."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def poke(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter


class Channel:
    """One worker's gates."""

    def __init__(self, pulse: Pulse) -> None:
        self.pulse = pulse
        self.gates: list[Gate] = []
        self.answered: list[str] = []  # tool calls given a result

    async def wait(self, kind: str, **details: Any) -> Command:
        gate = Gate(kind, asyncio.get_running_loop().create_future(), **details)
        self.gates.append(gate)
        self.pulse.poke()
        try:
            return await gate.future
        finally:
            self.gates.remove(gate)

    def open_gates(self, kind: str | None = None) -> list[Gate]:
        return [g for g in self.gates if g.open and (kind is None or g.kind == kind)]

    def answer(self, gate: Gate, command: Command) -> None:
        if gate.kind == "tool":
            self.answered.append(gate.call_id)
        gate.future.set_result(command)


class FakeModel:
    """A :class:`ModelAdapter` whose every part is decided by the test."""

    def __init__(self, channel: Channel, provider: str) -> None:
        self.channel = channel
        self.settings = ProviderSettings(name=provider, api="openai", base_url=None)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Part]:
        calls = 0
        streamed = False
        while True:
            command = await self.channel.wait("model", tools=bool(request.tools), streamed=streamed)
            streamed = True
            if isinstance(command, Delta):
                yield (
                    ReasoningDelta(text=command.text)
                    if command.reasoning
                    else TextDelta(text=command.text)
                )
            elif isinstance(command, Call):
                arguments = {"id": command.call_id}
                yield ToolCallStart(index=calls, call_id=command.call_id, name=TOOL)
                yield ToolCallEnd(
                    call_id=command.call_id, name=TOOL, arguments=arguments,
                    raw_arguments=codec.encode(arguments).decode(),
                )  # fmt: skip
                calls += 1
            elif isinstance(command, Fault):
                raise command.error()
            else:
                yield UsagePart(usage=Usage(input_tokens=3, output_tokens=2))
                yield FinishPart(reason="tool_calls" if calls else "stop")
                return

    async def aclose(self) -> None:
        return None


class FakeTools:
    """The agent's ``Tools`` protocol: one tool whose results the test hands out."""

    def __init__(self, channel: Channel, mcp_down: bool) -> None:
        self.channel = channel
        self.mcp_down = mcp_down

    async def list_tools(self, servers: Sequence[str]) -> ToolListing:
        down = (UnavailableServer(server="down", reason="connection refused"),)
        return ToolListing(tools=(ToolSpec(name=TOOL),), unavailable=down if self.mcp_down else ())

    async def call(
        self,
        prefixed_name: str,
        arguments: dict[str, object],
        *,
        context: ToolContext,
        progress: object = None,
    ) -> ToolOutcome:
        command = await self.channel.wait("tool", call_id=str(arguments["id"]))
        assert isinstance(command, Result)
        return ToolOutcome(
            content=command.content, is_error=command.is_error, duration_ms=1.0,
            summary=command.content, server="fake", tool=prefixed_name,
        )  # fmt: skip


class StallingStore:
    """The worker's handle on the store: the real store, except that the worker may stall
    (at a ``fold`` gate) right after reading the session, before its first append."""

    def __init__(self, store: EventStore, channel: Channel, stall: bool) -> None:
        self._store = store
        self._channel = channel
        self._stall = stall

    async def load(self, session: str) -> list[Recorded]:
        records = await self._store.load(session)
        if self._stall:
            self._stall = False
            await self._channel.wait("fold")
        return records

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class Worker:
    name: str
    turn: str
    channel: Channel
    agent: AgentWorker
    task: asyncio.Task[str]
    frozen: bool = False

    @property
    def live(self) -> bool:
        return not self.frozen and not self.task.done()

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else "live"
        if self.task.done():
            state = "done" if self.task.cancelled() or self.task.exception() else self.task.result()
        gates = ",".join(g.kind for g in self.channel.open_gates())
        return f"<{self.name} {self.turn} {state} gates={gates}>"


# ----------------------------------------------------------------------------- the log


@dataclass
class LogChecker:
    """Invariants of the session's log, checked incrementally as it grows."""

    session: str
    state: SessionState | None = None
    count: int = 0
    version: int = 0
    prev: str = ""
    order: list[str] = field(default_factory=list)  # turns, by user message
    ended: dict[str, int] = field(default_factory=dict)  # turn -> version of its terminal
    owner: dict[str, tuple[int, str]] = field(default_factory=dict)  # turn -> (attempt, actor)
    terminals: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.prev = codec.genesis_hash(self.session)

    def check(self, records: list[Recorded]) -> SessionState:
        new = records[self.count :]
        self.count = len(records)
        for rec in new:
            assert rec.version == self.version + 1, f"version {rec.version} after {self.version}"
            assert rec.envelope.prev == self.prev, f"hash chain broken at version {rec.version}"
            self.version, self.prev = rec.version, rec.hash
            self._turn_rules(rec)
        if new:
            self.state = fold(new, self.state)
        assert self.state is not None
        assert self.state.anomalies == [], self.state.anomalies
        return self.state

    def _turn_rules(self, rec: Recorded) -> None:
        env, turn = rec.envelope, rec.turn
        if isinstance(rec.event, UserMessage) and turn is not None:
            self.order.append(turn)
        if turn is None or not env.actor.startswith("agent:"):
            return
        where = f"{rec.kind} (version {rec.version}, {env.actor}, attempt {env.attempt})"
        assert turn not in self.ended, f"{where} landed after turn {turn} ended"
        owner = self.owner.get(turn)
        gave_up = isinstance(rec.event, TurnFailed) and rec.event.error == "max_deliveries"
        if isinstance(rec.event, TurnStarted):
            assert env.attempt == rec.event.attempt
            assert owner is None or env.attempt > owner[0], f"{where} after attempt {owner}"
            self.owner[turn] = (env.attempt, env.actor)
        elif gave_up and owner is not None and env.attempt == owner[0]:
            pass  # another worker gives up on the attempt it found interrupted
        else:
            # fencing: only the writer of the newest attempt lands events for the turn
            assert owner == (env.attempt, env.actor), f"{where} but {owner} owns {turn}"
        if rec.kind in TERMINAL_KINDS:
            self.terminals[turn] += 1
            assert self.terminals[turn] == 1, f"second terminal event for {turn}"
            self.ended[turn] = rec.version
            earlier = self.order[: self.order.index(turn)]
            assert all(t in self.ended for t in earlier), f"{turn} ended before {earlier}"


# ----------------------------------------------------------------------------- the views


def view_rows(db: Db) -> tuple[tuple[object, ...], list[tuple[object, ...]]]:
    """The session's row in the sessions view, and its turns' rows in the usage view."""
    row = db.one(
        "SELECT message_count, turn_count, last_turn, last_status FROM {p}sessions "
        "WHERE session = ?",
        SESSION,
    )
    assert row is not None
    usage = db.all(
        "SELECT turn, attempt, status FROM {p}usage WHERE session = ? ORDER BY turn", SESSION
    )
    return tuple(row), [tuple(r) for r in usage]


def compare(
    summary: tuple[object, ...], usage: list[tuple[object, ...]], state: SessionState
) -> None:
    """The views say what the session model says: the messages the history shows, the
    turns, the last one's status; per started turn, the attempt that counts and its status.
    And the history renders the model as it is."""
    shown = [e for e in state.transcript() if not isinstance(e.message, ToolTurn)]
    last = next(reversed(state.turns), "")
    assert summary == (len(shown), len(state.turns), last, state.status(last) or "")
    started = sorted((t.turn_id, t.attempt, t.status) for t in state.turns.values() if t.started)
    assert usage == started, "the usage view's attempt that counts"
    detail = session_detail(state)
    assert [(t.turn_id, t.status, t.attempt) for t in detail.turns] == [
        (t.turn_id, t.status, t.attempt) for t in state.turns.values()
    ]
    assert [m.version for m in detail.messages] == sorted(m.version for m in detail.messages)


# ----------------------------------------------------------------------------- machine


class TurnMachine(RuleBasedStateMachine):
    """The machine on :class:`MemoryEventStore`, which checks an append in a single
    nats-server's order (the expected position, then the key)."""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.store: EventStore = MemoryEventStore()
        self.mirror: list[Recorded] = []  # the log as a follower saw it
        self.pulse = Pulse()
        self.providers = ProviderRegistry({})
        self.workers: list[Worker] = []
        self.turns: list[str] = []
        self.calls = 0
        self.cancels = 0
        self.projected = 0  # log length at the last projection
        self.checker = LogChecker(SESSION)
        self.tmp = tempfile.mkdtemp(prefix="tl-stateful-")
        self.recorder: ViewRecorder | None = None
        self.follower: asyncio.Task[None] | None = None
        self.runner.run(self._start())

    async def open_store(self) -> EventStore:
        return MemoryEventStore()

    async def client(self) -> EventStore:
        """Another client of the store's log."""
        assert isinstance(self.store, MemoryEventStore)
        return self.store.another_client()

    async def close_store(self) -> None:
        await self.store.close()

    async def _start(self) -> None:
        self.store = await self.open_store()
        self.follower = asyncio.create_task(self._follow())
        started = SessionStarted(owner="alice", provider="fake", tool_servers=("fake",))
        await self.store.append(SESSION, NewEvent(event=started, actor="user:alice"))
        await self._user_message("hi")  # every example has a turn to work on
        config = ProjectorConfig(sqlite_path=os.path.join(self.tmp, "views.sqlite3"))
        self.recorder = await asyncio.to_thread(config.open)

    async def _follow(self) -> None:
        async for rec in self.store.follow_all():
            self.mirror.append(rec)
            self.pulse.poke()

    async def _caught_up(self) -> None:
        """Until the follower has seen every stored event (nothing moves meanwhile:
        every worker is at a gate)."""
        end = await self.store.last_position()
        async with asyncio.timeout(SETTLE_GUARD_S):
            while (self.mirror[-1].position if self.mirror else 0) < end:
                await self.pulse.wait()

    # ------------------------------------------------------------------ driving

    async def _deliver(self, turn: str, stall: bool, mcp_down: bool) -> Worker:
        """The user message of ``turn`` reaches a new worker (first delivery or a
        redelivery after a crash or an ack deadline): the real ``process``."""
        name = f"w{len(self.workers) + 1}"
        channel = Channel(self.pulse)
        tools = FakeTools(channel, mcp_down)
        store = await self.client()  # each worker a process of its own: its own head cache
        deps = AgentDeps(
            store=store, providers=self.providers,
            adapter=lambda provider: FakeModel(channel, provider), tools=tools,
            settings=replace(AGENT, worker=name),
        )  # fmt: skip
        stalling = StallingStore(store, channel, stall)
        agent = AgentWorker(stalling, MemoryWorkQueue(store), deps)  # type: ignore[arg-type]
        task = asyncio.create_task(agent.process(SESSION, turn))
        task.add_done_callback(lambda _: self.pulse.poke())
        worker = Worker(name, turn, channel, agent, task)
        self.workers.append(worker)
        await self._settle(worker)
        return worker

    async def _send(self, worker: Worker, gate: Gate, command: Command) -> None:
        worker.channel.answer(gate, command)
        await self._settle(worker)

    async def _settle(self, worker: Worker) -> None:
        """Run the loop until ``worker`` is finished or blocked at a gate."""
        async with asyncio.timeout(SETTLE_GUARD_S):
            while not self._settled(worker):
                await self.pulse.wait()
        await self._caught_up()
        if worker.task.done() and not worker.task.cancelled():
            error = worker.task.exception()
            if error is not None:
                raise AssertionError(f"{worker.name}: process raised {error!r}") from error

    def _settled(self, worker: Worker) -> bool:
        if worker.task.done():
            return True
        running = worker.agent._running.get(SESSION)
        if running is not None and running.cancel.is_set():
            return False  # the turn is being stopped: it ends
        gates = worker.channel.open_gates()
        if any(g.kind != "tool" for g in gates):
            return True
        if not gates:
            return False
        results = {r.event.call_id for r in self.log() if isinstance(r.event, ToolResult)}
        return all(call in results for call in worker.channel.answered)

    def log(self) -> list[Recorded]:
        return list(self.mirror)

    def workers_at(self, kind: str, *, live: bool = True) -> list[Worker]:
        return [
            w
            for w in self.workers
            if not w.task.done() and w.live == live and w.channel.open_gates(kind)
        ]

    def pick_gate(self, data: st.DataObject, kind: str, live: bool = True) -> tuple[Worker, Gate]:
        worker = data.draw(st.sampled_from(self.workers_at(kind, live=live)), label="worker")
        gate = data.draw(st.sampled_from(worker.channel.open_gates(kind)), label="gate")
        return worker, gate

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: len(self.turns) < MAX_TURNS)
    @rule(text=st.sampled_from(["hi", "what is 2+2?", "tell me a story", "ünïcode ✓"]))
    def user_message(self, text: str) -> None:
        self.runner.run(self._user_message(text))

    async def _user_message(self, text: str) -> None:
        turn = f"t{len(self.turns) + 1}"
        self.turns.append(turn)
        new = NewEvent(event=UserMessage(text=text), turn=turn, actor="user:alice")
        await self.store.append(SESSION, new)
        await self._caught_up()

    @initialize(mcp_down=st.integers(0, 4))
    def first_delivery(self, mcp_down: int) -> None:
        """The first turn's message reaches a worker (so most rules apply from the start)."""
        self.runner.run(self._deliver("t1", False, mcp_down == 0))

    @precondition(lambda self: self.turns and len(self.workers) < MAX_WORKERS)
    @rule(data=st.data(), stall=st.integers(0, 3), mcp_down=st.integers(0, 4))
    def deliver(self, data: st.DataObject, stall: int, mcp_down: int) -> None:
        """A (re)delivery of a user message to a new worker, possibly one that stalls
        between reading the session and its first append."""
        turn = data.draw(st.sampled_from(self.turns), label="turn")
        self.runner.run(self._deliver(turn, stall == 0, mcp_down == 0))

    @precondition(lambda self: self.workers_at("model"))
    @rule(
        data=st.data(),
        text=st.sampled_from(["The ", "answer", " is ", "4.", "🙂"]),
        reasoning=st.integers(0, 4),
    )
    def delta(self, data: st.DataObject, text: str, reasoning: int) -> None:
        worker, gate = self.pick_gate(data, "model")
        self.runner.run(self._send(worker, gate, Delta(text, reasoning == 0)))

    def offering_tools(self) -> list[Worker]:
        return [w for w in self.workers_at("model") if w.channel.open_gates("model")[0].tools]

    @precondition(lambda self: self.offering_tools())
    @rule(data=st.data())
    def tool_call(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(self.offering_tools()), label="worker")
        self.calls += 1
        gate = worker.channel.open_gates("model")[0]
        self.runner.run(self._send(worker, gate, Call(f"call{self.calls}")))

    @precondition(lambda self: self.workers_at("model"))
    @rule(data=st.data())
    def end_step(self, data: st.DataObject) -> None:
        """The model ends its step: the turn completes, or runs the step's tool calls."""
        worker, gate = self.pick_gate(data, "model")
        self.runner.run(self._send(worker, gate, End()))

    @precondition(lambda self: self.workers_at("model"))
    @rule(data=st.data(), fault=st.sampled_from(FAULTS))
    def provider_fault(self, data: st.DataObject, fault: Fault) -> None:
        """429 with Retry-After, 500, a dropped connection, a stall past the timeout, 401,
        context too long, or Ollama's "does not support tools": retries, fallbacks
        (retry, provider_switched, tools_disabled) and failures."""
        worker, gate = self.pick_gate(data, "model")
        if fault.before_output_only and gate.streamed:
            fault = FAULTS[2]  # an HTTP status comes before the stream; mid-stream it drops
        self.runner.run(self._send(worker, gate, fault))

    @precondition(lambda self: self.workers_at("tool"))
    @rule(data=st.data(), content=st.sampled_from(["42", "sunny", ""]), error=st.booleans())
    def tool_result(self, data: st.DataObject, content: str, error: bool) -> None:
        worker, gate = self.pick_gate(data, "tool")
        self.runner.run(self._send(worker, gate, Result(content, error)))

    @precondition(lambda self: any(w.live for w in self.workers))
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """The worker dies (kill -9) or stalls past its ack deadline mid-turn: its writer
        is abandoned where it stands."""
        worker = data.draw(st.sampled_from([w for w in self.workers if w.live]), label="worker")
        worker.frozen = True

    @precondition(lambda self: any(w.frozen and not w.task.done() for w in self.workers))
    @rule(data=st.data(), what=st.integers(0, 3))
    def stale_writer_returns(self, data: st.DataObject, what: int) -> None:
        """A stalled worker comes back and carries on where it stopped; if its turn was
        taken over meanwhile, its next append is fenced off."""
        frozen = [w for w in self.workers if w.frozen and not w.task.done()]
        worker = data.draw(st.sampled_from(frozen), label="worker")
        worker.frozen = False
        gate = data.draw(st.sampled_from(worker.channel.open_gates()), label="gate")
        self.runner.run(self._send(worker, gate, self._comeback(gate, what)))

    @precondition(lambda self: self.workers_at("fold"))
    @rule(data=st.data())
    def resume_after_fold(self, data: st.DataObject) -> None:
        worker, gate = self.pick_gate(data, "fold")
        self.runner.run(self._send(worker, gate, Resume()))

    @precondition(lambda self: not self.cancels)  # one stop per example leaves room
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """The gateway appends CancelRequested; every live worker's cancel watcher sees it."""
        turn = data.draw(st.sampled_from(self.turns), label="turn")
        self.cancels += 1
        self.runner.run(self._cancel(turn))

    async def _cancel(self, turn: str) -> None:
        stop = NewEvent(event=CancelRequested(reason="stop pressed"), turn=turn, actor="user:alice")
        await self.store.append(SESSION, stop)
        for worker in self.workers:
            if not worker.live:
                continue
            running = worker.agent._running.get(SESSION)  # as AgentWorker._watch_cancels does
            if running is not None and turn == running.turn_id:
                running.cancel.set()
            await self._settle(worker)
        await self._caught_up()

    @rule()
    def project(self) -> None:
        """The projector catches up (incrementally) and the views say what the fold says."""
        if len(self.log()) > self.projected:  # else nothing new to compare
            self.runner.run(self._project())

    async def _project(self) -> None:
        assert self.recorder is not None
        records = self.log()
        await Projector(self.store, self.recorder, until_end=True).run()
        assert len(self.log()) == len(records)  # every worker is at a gate: nothing moves
        summary, usage = await asyncio.to_thread(self.recorder.query, view_rows)
        state = fold(records)  # from scratch: also checks the incremental fold
        assert state == self.checker.check(records)
        compare(summary, usage, state)
        self.projected = len(records)

    def _comeback(self, gate: Gate, what: int) -> Command:
        if gate.kind == "tool":
            return Result("late")
        if gate.kind == "fold":
            return Resume()
        self.calls += 1
        options: list[Command] = [Delta("late "), End(), FAULTS[1], Call(f"call{self.calls}")]
        return options[what] if gate.tools or what < 3 else Delta("late ")

    # ------------------------------------------------------------------ invariants

    @invariant()
    def log_is_sound(self) -> None:
        """Contiguous versions, an intact hash chain, no anomaly in the fold, at most one
        terminal event per turn, turns ending in order, and no event landed by a writer
        after another attempt took its turn over."""
        self.checker.check(self.log())

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None:  # the run passed so far: finish it and check
                self.runner.run(self._quiesce())
        finally:
            if self.follower is not None:
                self.follower.cancel()
            try:
                self.runner.run(self.close_store())
            finally:
                self.runner.close()
            if self.recorder is not None:
                self.recorder.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def _quiesce(self) -> None:
        """Run every pending turn to an end; then let every stalled worker come back."""
        for _ in range(100):
            live = [w for w in self.workers if w.live]
            if live:
                gate = live[0].channel.open_gates()[0]
                await self._send(live[0], gate, self._finish(gate))
                continue
            state = self.checker.check(self.log())
            open_turns = [t for t in state.turns if not state.is_terminal(t)]
            if not open_turns:
                break
            await self._deliver(open_turns[0], stall=False, mcp_down=False)
        else:
            raise AssertionError(f"no quiescence: {self.checker.check(self.log()).turns}")
        state = self.checker.check(self.log())
        assert all(state.is_terminal(t) for t in state.turns), state.turns
        for worker in self.workers:
            worker.frozen = False
            while not worker.task.done():
                gate = worker.channel.open_gates()[0]
                await self._send(worker, gate, self._finish(gate))
            assert worker.task.result() in ("done", "fenced", "busy"), worker
        state = self.checker.check(self.log())
        assert all(state.is_terminal(t) for t in state.turns), state.turns
        assert all(state.is_terminal(t) for t in self.turns), state.turns
        report = await verify_session(SESSION, _raw(self.log()))
        assert report.ok and report.events == len(self.log()), report.problems
        await self._project()
        if currently_in_test_context():  # not in the regression tests below
            self._statistics(state)

    def _statistics(self, state: SessionState) -> None:
        """What the example reached (``--hypothesis-show-statistics``)."""
        for kind in sorted({r.kind for r in self.log()}):
            event(f"log has {kind}")
        for name in sorted({f.fallback for t in state.turns.values() for f in t.fallbacks}):
            event(f"fallback {name}")
        if any(t.error.startswith("gave up") for t in state.turns.values()):
            event("a turn was given up after max_attempts (max_deliveries)")
        for outcome in sorted({w.task.result() for w in self.workers}):
            event(f"a worker's process() returned {outcome}")
        event(f"highest attempt {max((t.attempt for t in state.turns.values()), default=0)}")

    @staticmethod
    def _finish(gate: Gate) -> Command:
        finish: dict[str, Command] = {"tool": Result("done"), "fold": Resume()}
        return finish.get(gate.kind, End())


async def _raw(records: list[Recorded]) -> AsyncIterator[Stored]:
    for rec in records:
        yield Stored(rec.position, subject_for("tl", rec.session, rec.kind), rec.raw)


TurnMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTurnMachine = TurnMachine.TestCase


class ClusteredOrderTurnMachine(TurnMachine):
    """The machine on a :class:`MemoryEventStore` that checks an append in a clustered
    stream's order (the key, then the expected position)."""

    async def open_store(self) -> EventStore:
        return MemoryEventStore(clustered=True)


ClusteredOrderTurnMachine.TestCase.settings = settings(
    TurnMachine.TestCase.settings, max_examples=CLUSTERED_ORDER_EXAMPLES
)
TestTurnMachineClusteredOrder = ClusteredOrderTurnMachine.TestCase


class JetStreamTurnMachine(TurnMachine):
    """The machine on a real nats-server: a stream of its own per example."""

    url = ""  # the server's: a subclass per server sets it

    async def open_store(self) -> EventStore:
        self.clients: list[JetStreamEventStore] = []
        return await JetStreamEventStore.connect(self.url, fresh_stream(), heartbeat_s=0.5)

    async def client(self) -> EventStore:
        assert isinstance(self.store, JetStreamEventStore)
        settings = self.store.settings
        self.clients.append(await JetStreamEventStore.connect(self.url, settings, ensure=False))
        return self.clients[-1]

    async def close_store(self) -> None:
        assert isinstance(self.store, JetStreamEventStore)
        for client in self.clients:
            await client.close()
        await self.store.nc.jetstream().delete_stream(self.store.settings.name)
        await self.store.close()


async def test_turn_machine_on_jetstream(nats_url: str) -> None:
    """The machine against the real server (in a thread: each example runs its own
    event loop, and this one keeps serving the test session's nats-server)."""
    machine = type("OnTheTestServer", (JetStreamTurnMachine,), {"url": nats_url})
    run = partial(
        run_state_machine_as_test,
        machine,
        settings=settings(TurnMachine.TestCase.settings, max_examples=JETSTREAM_EXAMPLES),
    )
    await asyncio.to_thread(run)


# ----------------------------------------------------------------------------- regressions
# Defects the machine found (fixed in services/agent/writer.py and worker.py), replayed.


def test_regression_give_up_is_recorded() -> None:
    """After ``max_attempts`` interrupted attempts, the worker's ``TurnFailed
    (max_deliveries)`` had the idempotency key of attempt 3's ``TurnStarted``
    (``t1/3/1``): the store returned that event instead of appending, ``process`` said
    "done" (the message was acked) and the turn stayed running for ever. And had it
    landed, attempt 3 coming back would not have been fenced by it (same attempt)."""
    machine = TurnMachine()
    try:
        for _ in range(3):  # three workers start the turn, each dies mid-stream
            dying = machine.runner.run(machine._deliver("t1", False, False))
            machine.runner.run(machine._send(dying, dying.channel.open_gates()[0], Delta("a")))
            dying.frozen = True
        last = machine.runner.run(machine._deliver("t1", False, False))
        assert last.task.done() and last.task.result() == "done"
        turn = machine.checker.check(machine.log()).turns["t1"]
        assert (turn.status, turn.attempt) == ("failed", 3) and "gave up" in turn.error
        third = machine.workers[2]  # attempt 3 comes back: fenced, nothing lands
        third.frozen = False
        machine.runner.run(machine._send(third, third.channel.open_gates()[0], End()))
        assert third.task.done() and third.task.result() == "fenced"
        machine.log_is_sound()
    finally:
        machine.teardown()


def test_regression_two_workers_that_read_the_same_state() -> None:
    """A worker stalled between reading the session and its first append (past its ack
    deadline); the message was redelivered and another worker started attempt 1. The
    stalled one then appended its own ``TurnStarted(attempt=1)`` with the same key
    (``t1/1/1``), was handed the other's event as if it were its own, and both wrote
    as attempt 1: interleaved events, and a second terminal event."""
    machine = TurnMachine()
    try:
        stalled = machine.runner.run(machine._deliver("t1", True, False))
        other = machine.runner.run(machine._deliver("t1", False, False))
        machine.runner.run(machine._send(stalled, stalled.channel.open_gates()[0], Resume()))
        assert stalled.task.done() and stalled.task.result() == "fenced"
        machine.runner.run(machine._send(other, other.channel.open_gates()[0], End()))
        assert other.task.done() and other.task.result() == "done"
        machine.log_is_sound()
    finally:
        machine.teardown()


async def test_regression_writers_of_the_same_attempt_fence_each_other() -> None:
    store = MemoryEventStore()
    await store.append("s", NewEvent(event=SessionStarted(owner="o")))
    await store.append("s", NewEvent(event=UserMessage(text="hi"), turn="t1"))
    first = TurnWriter(store, "s", "t1", 1, 2, actor="agent:a")
    second = TurnWriter(store, "s", "t1", 1, 2, actor="agent:b")  # read the same state
    await second.append(TurnStarted(turn_id="t1", attempt=1, provider="p", model="m"))
    with pytest.raises(Fenced):
        await first.append(TurnStarted(turn_id="t1", attempt=1, provider="p", model="m"))
    await second.append(TurnCompleted())
    with pytest.raises(Fenced):
        await first.append(TurnCompleted())
    written = [r.envelope.actor for r in await store.load("s") if r.attempt is not None]
    assert written == ["agent:b", "agent:b"]
