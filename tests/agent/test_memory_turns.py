"""Whole turns in memory: the real worker and Turn on MemoryEventStore and MemoryWorkQueue,
a scripted model (tests/agent/fakes.py) and tools in process. No server, no sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.agent.fakes import (
    PROVIDER,
    Break,
    Hold,
    LocalTools,
    ScriptedModel,
    WatchedQueue,
    answer,
    tool_call,
)
from tests.events.test_sessions import CountingStore
from threadline.base.metrics import Registry
from threadline.events.conversation import AssistantTurn, Message, ToolTurn, UserTurn
from threadline.events.fold import fold
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import (
    TERMINAL_KINDS,
    AssistantMessage,
    SessionStarted,
    TextDelta,
    ToolCall,
    ToolResult,
    TurnCompleted,
    TurnStarted,
    UserMessage,
)
from threadline.events.store import NewEvent, Recorded
from threadline.events.workqueue import MemoryWorkQueue
from threadline.services.agent.providers import ModelRequest
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.agent.turn import AgentDeps, AgentSettings, Turn
from threadline.services.agent.worker import AgentWorker


async def echo(text: str) -> str:
    return f"echo: {text}"


@dataclass
class Agent:
    """One in-memory deployment: a store, the agents' queue, a worker at a time."""

    store: MemoryEventStore = field(default_factory=MemoryEventStore)
    model: ScriptedModel = field(default_factory=ScriptedModel)
    tools: LocalTools = field(default_factory=lambda: LocalTools(echo=echo))
    registry: Registry = field(default_factory=Registry)
    ack_wait_s: float = 3.0
    delta_window_s: float = 0.0
    queue: WatchedQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = WatchedQueue(MemoryWorkQueue(self.store, ack_wait_s=self.ack_wait_s))
        self.telemetry = AgentTelemetry(self.registry)

    def deps(self) -> AgentDeps:
        return AgentDeps(
            store=self.store, providers=self.model.registry(), adapter=lambda _: self.model,
            tools=self.tools, telemetry=self.telemetry,
            settings=AgentSettings(worker="mem", delta_window_s=self.delta_window_s),
        )  # fmt: skip

    @contextlib.asynccontextmanager
    async def worker(self, *, grace_s: float = 10.0) -> AsyncIterator[AgentWorker]:
        worker = AgentWorker(
            self.store, self.queue, self.deps(), busy_delay_s=0.02, grace_s=grace_s
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await task

    async def start(self, session: str, *, tools: bool = False) -> None:
        servers = (self.tools.server,) if tools else ()
        event = SessionStarted(owner="alice", provider=PROVIDER, tool_servers=servers)
        await self.store.append(session, NewEvent(event=event), expected_version=0)

    async def say(self, session: str, text: str, turn: str) -> Recorded:
        [rec] = await self.store.append(session, NewEvent(event=UserMessage(text=text), turn=turn))
        return rec

    async def until_terminal(self, session: str, turn: str) -> list[Recorded]:
        """Every event of ``turn`` up to its terminal event."""
        out: list[Recorded] = []
        async with asyncio.timeout(30):  # a deadlock guard, not a wait
            async for rec in self.store.follow(session):
                if rec.turn == turn and rec.kind != "user_message":
                    out.append(rec)
                    if rec.kind in TERMINAL_KINDS:
                        return out
        raise AssertionError("unreachable")


@pytest.fixture
def agent() -> Agent:
    return Agent()


def kinds(records: list[Recorded]) -> list[str]:
    return [r.kind for r in records]


async def test_plain_turn(agent: Agent) -> None:
    agent.model.script(answer("Hello", ", ", "alice"))
    await agent.start("s")
    asked = await agent.say("s", "hi there", "t1")
    async with agent.worker():
        events = await agent.until_terminal("s", "t1")
        await agent.queue.until(lambda settled: bool(settled))
    assert kinds(events) == [
        "turn_started", "text_delta", "text_delta", "text_delta", "assistant_message",
        "turn_completed",
    ]  # fmt: skip
    message = events[-2].event
    assert isinstance(message, AssistantMessage) and message.text == "Hello, alice"
    done = events[-1].event
    assert isinstance(done, TurnCompleted) and done.usage.input_tokens == 7 and done.steps == 1
    [request] = agent.model.requests
    assert request.messages == (UserTurn(text="hi there"),)
    assert [(s.how, s.position, s.attempts) for s in agent.queue.settled] == [
        ("ack", asked.position, 1)
    ]
    agent.model.verify()


async def test_tool_call_turn(agent: Agent) -> None:
    agent.model.script(tool_call("local__echo", '{"text": "ping"}'), answer("it said ", "ping"))
    await agent.start("s", tools=True)
    await agent.say("s", "call echo", "t1")
    async with agent.worker():
        events = await agent.until_terminal("s", "t1")
    call = next(r.event for r in events if isinstance(r.event, ToolCall))
    result = next(r.event for r in events if isinstance(r.event, ToolResult))
    assert (call.tool, call.server, call.arguments) == ("local__echo", "local", {"text": "ping"})
    assert result.call_id == call.call_id and result.content == "echo: ping"
    [(name, arguments, context)] = agent.tools.calls
    assert (name, arguments, context.session_id, context.turn_id) == (
        "local__echo", {"text": "ping"}, "s", "t1"
    )  # fmt: skip
    first, second = agent.model.requests
    assert [t.name for t in first.tools] == ["local__echo"]
    assert isinstance(second.messages[1], AssistantTurn)
    assert second.messages[2] == ToolTurn(
        call_id=call.call_id, tool="local__echo", content="echo: ping", is_error=False
    )
    assert fold(await agent.store.load("s")).status("t1") == "completed"
    agent.model.verify()


async def test_interrupted_turn_is_redelivered_as_a_new_attempt(agent: Agent) -> None:
    agent.queue = WatchedQueue(MemoryWorkQueue(agent.store, ack_wait_s=0.5))
    hold = Hold()
    first, second = answer("partial", hold, "never sent"), answer("whole answer")
    agent.model.script(first, second)
    await agent.start("s")
    asked = await agent.say("s", "go", "t1")
    async with agent.worker(grace_s=0):  # a worker that stops now: its turn is interrupted
        await hold.reached.wait()
    assert first.closed.is_set() and not first.finished
    assert fold(await agent.store.load("s")).status("t1") == "running"  # nothing acked
    async with agent.worker():  # the next worker gets it once the ack wait has run out
        events = await agent.until_terminal("s", "t1")
        await agent.queue.until(lambda settled: bool(settled))
    started = [r.event for r in events if isinstance(r.event, TurnStarted)]
    assert [s.attempt for s in started] == [1, 2]
    assert events[-1].attempt == 2 and isinstance(events[-1].event, TurnCompleted)
    assert [(s.how, s.position, s.attempts) for s in agent.queue.settled] == [
        ("ack", asked.position, 2)
    ]
    texts = [(r.attempt, r.event.text) for r in await agent.store.load("s")
             if isinstance(r.event, TextDelta)]  # fmt: skip
    assert texts == [(1, "partial"), (2, "whole answer")]
    agent.model.verify()


def own_messages(request: ModelRequest) -> tuple[Message, ...]:
    """What a request sends of the turn it answers (after the session's history)."""
    return request.messages[request.history :]


async def test_a_new_attempt_after_a_crash_is_not_sent_the_old_attempts_steps(
    agent: Agent,
) -> None:
    """Attempt 1 finishes a tool step and dies in the next; attempt 2 starts the turn
    over: its first request carries the question only, none of attempt 1's output."""
    agent.queue = WatchedQueue(MemoryWorkQueue(agent.store, ack_wait_s=0.5))
    hold = Hold()
    agent.model.script(
        tool_call("local__echo", '{"text": "attempt one"}'),
        answer("partial", hold, "never sent"),
        answer("whole answer"),
    )
    await agent.start("s", tools=True)
    await agent.say("s", "go", "t1")
    async with agent.worker(grace_s=0):  # dies in attempt 1's second step
        await hold.reached.wait()
    async with agent.worker():
        events = await agent.until_terminal("s", "t1")
    assert events[-1].attempt == 2 and isinstance(events[-1].event, TurnCompleted)
    first, second, retried = agent.model.requests
    assert len(own_messages(second)) == 3  # attempt 1 was sent its own step and result
    assert own_messages(retried) == (UserTurn(text="go"),)
    # what the model was sent is what the history shows of the turn
    assert fold(await agent.store.load("s")).turn_messages("t1")[:1] == own_messages(retried)
    agent.model.verify()


async def test_a_restarted_attempt_is_not_sent_the_old_attempts_steps(agent: Agent) -> None:
    """A stream that breaks after output restarts the attempt in the same worker
    (``RestartAttempt``): the new attempt starts from the question alone."""
    agent.model.script(
        tool_call("local__echo", '{"text": "attempt one"}'),
        answer("partial", Break()),
        answer("whole answer"),
    )
    await agent.start("s", tools=True)
    await agent.say("s", "go", "t1")
    async with agent.worker():
        events = await agent.until_terminal("s", "t1")
    assert [r.attempt for r in events if r.kind == "turn_started"] == [1, 2]
    assert events[-1].attempt == 2 and isinstance(events[-1].event, TurnCompleted)
    _, _, retried = agent.model.requests
    assert own_messages(retried) == (UserTurn(text="go"),)
    agent.model.verify()


async def test_busy_session_is_naked_and_answered_in_order(agent: Agent) -> None:
    hold = Hold()
    agent.model.script(answer("first", hold, " answer"), answer("second answer"))
    await agent.start("s")
    await agent.say("s", "one", "t1")
    async with agent.worker():
        await hold.reached.wait()
        second = await agent.say("s", "two", "t2")
        await agent.queue.until(
            lambda settled: any(s.how == "nak" and s.position == second.position for s in settled)
        )
        hold.released.set()
        await agent.until_terminal("s", "t2")
        await agent.queue.until(lambda settled: sum(s.how == "ack" for s in settled) == 2)
    records = await agent.store.load("s")
    ended_t1 = next(r.version for r in records if r.kind == "turn_completed" and r.turn == "t1")
    started_t2 = next(r.version for r in records if r.kind == "turn_started" and r.turn == "t2")
    assert started_t2 > ended_t1
    [ack_t2] = [s for s in agent.queue.settled if s.how == "ack" and s.position == second.position]
    assert ack_t2.attempts >= 2  # delivered, handed back while t1 ran, delivered again
    assert agent.model.requests[1].messages[-1] == UserTurn(text="two")
    agent.model.verify()


async def test_failed_heartbeat_stops_the_attempt(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    memory = MemoryWorkQueue(agent.store, ack_wait_s=0.6)
    agent.queue = WatchedQueue(memory)
    hold = Hold()
    first, second = answer("started", hold, "never sent"), answer("retried")
    agent.model.script(first, second)
    await agent.start("s")
    asked = await agent.say("s", "go", "t1")
    caplog.set_level(logging.ERROR, logger="threadline.services.agent.worker")
    async with agent.worker():
        await hold.reached.wait()
        memory.expire(asked.position)  # as if this worker had stalled past its ack wait
        events = await agent.until_terminal("s", "t1")
    assert first.closed.is_set() and not first.finished  # the attempt's stream was stopped
    assert not hold.released.is_set()
    assert events[-1].attempt == 2 and isinstance(events[-1].event, TurnCompleted)
    takeover = next(r.version for r in events if r.kind == "turn_started" and r.attempt == 2)
    assert all(r.version < takeover for r in events if r.attempt == 1)
    assert agent.telemetry.heartbeat_failures.value() == 1
    [line] = [r.getMessage() for r in caplog.records if "heartbeat failed" in r.getMessage()]
    assert "session s" in line and "turn t1" in line
    agent.model.verify()


async def test_a_stopped_attempt_leaves_nothing_to_flush() -> None:
    """A turn cancelled from outside (shutdown, lost heartbeat) drops what its coalescer
    holds: a timer firing later must not append into a turn another worker retries."""
    agent = Agent(delta_window_s=60.0)  # the second delta waits for a timer
    hold = Hold()
    agent.model.script(answer("sent at once", "buffered", hold))
    await agent.start("s")
    await agent.say("s", "go", "t1")
    state = fold(await agent.store.load("s"))
    turn = Turn(agent.deps(), state, "t1", asyncio.Event())
    running = asyncio.create_task(turn.run())
    await hold.reached.wait()
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await turn.coalescer.flush()  # what the pending timer would do
    texts = [r.event.text for r in await agent.store.load("s") if isinstance(r.event, TextDelta)]
    assert texts == ["sent at once"]
    agent.model.verify()


async def test_an_ended_attempt_is_freed_without_the_cycle_collector() -> None:
    """Nothing of an attempt refers back to it (its telemetry holds it weakly): once it
    ends, reference counting frees it (and the session state it folded) at once. A cycle
    would keep every turn's state alive until a collection of the older generations, a
    pause that grows with the turns since and that every turn in flight waits out."""
    agent = Agent()
    agent.model.script(answer("Hello", ", ", "alice"))
    await agent.start("s")
    await agent.say("s", "go", "t1")
    turn = Turn(agent.deps(), fold(await agent.store.load("s")), "t1", asyncio.Event())
    await turn.run()
    freed = [weakref.ref(turn), weakref.ref(turn.writer), weakref.ref(turn.coalescer)]
    gc.disable()
    try:
        del turn
        assert [ref() for ref in freed] == [None, None, None]
    finally:
        gc.enable()
    agent.model.verify()


async def test_a_sessions_next_turn_reads_only_what_others_appended() -> None:
    """The worker's session cache folds what an attempt appends and the delivered user
    message, so the session's next turn reads nothing before it starts (was: the last
    turn's every event, then the user message as well)."""
    store = CountingStore()
    agent = Agent(store=store)
    agent.model.script(answer("Hello", ", ", "alice"), answer("again"))
    await agent.start("s")
    await agent.say("s", "one", "t1")
    async with agent.worker():
        first = await agent.until_terminal("s", "t1")
        await agent.queue.until(lambda settled: len(settled) == 1)
        store.reads()
        await agent.say("s", "two", "t2")
        await agent.until_terminal("s", "t2")
        await agent.queue.until(lambda settled: len(settled) == 2)
    assert len(first) == 6  # turn_started, three deltas, assistant_message, turn_completed
    assert store.reads() == 0
    agent.model.verify()
