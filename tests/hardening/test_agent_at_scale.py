"""The agent's crash and fault handling at the issue's scale: 100 turns each.

* **kill -9 mid-stream**: an agent process is killed with SIGKILL while half the turns
  stream, then its replacement too while it redoes them; a third agent finishes. Every
  turn ends with exactly one terminal event, completed, with the full answer; no event
  is duplicated and no attempt writes after a later one took its turn over.
* **provider faults mid-stream**: 429 with Retry-After, 500, a dropped connection, a
  stall past the timeout, 401, and the fallback chain, spread over concurrent turns.
  Each turn ends completed after its retries or fallback, or failed with the right typed
  kind; every retry and fallback is an event, and the dev model's count of requests is
  exactly what the events account for.

Each has a quick size that runs in every ``make test`` and the issue's 100 under
``slow`` (part of the default run too; ``-m 'not slow'`` leaves it out while
iterating). The figures are printed (``-s``) and recorded in docs/reliability-agent.md.
"""

from __future__ import annotations

import asyncio
import signal
import time
from asyncio.subprocess import DEVNULL
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.agent.procs import spawn_agent
from threadline.base.config import Settings
from threadline.events.fold import fold
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import (
    TERMINAL_KINDS,
    AssistantMessage,
    Fallback,
    SessionStarted,
    TextDelta,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from threadline.events.store import NewEvent, Recorded, Stored, subject_for
from threadline.events.verify import verify_session
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings
from threadline.services.agent.worker import ack_wait_for
from threadline.services.devmodel import DevModelSettings, answer_for, serve

QUICK = 20
FULL = 100


def slow_full(quick: int, full: int) -> list[object]:
    return [
        pytest.param(quick, id=f"{quick}-turns"),
        pytest.param(full, id=f"{full}-turns", marks=pytest.mark.slow),
    ]


# ----------------------------------------------------------------------------- checks


async def session_records(store: JetStreamEventStore, sessions: list[str]) -> list[Recorded]:
    out: list[Recorded] = []
    for session in sessions:
        records = await store.load(session)
        report = await verify_session(session, _raw(records))
        assert report.ok, (session, report.problems)  # contiguous versions, intact chain
        assert fold(records).anomalies == [], session
        out += records
    return out


async def _raw(records: list[Recorded]) -> AsyncIterator[Stored]:
    for rec in records:
        yield Stored(rec.position, subject_for("tl", rec.session, rec.kind), rec.raw)


def check_exactly_once(records: list[Recorded], turns: list[str]) -> Counter[str]:
    """One terminal event per turn, no duplicated event, and fencing held: once attempt n
    of a turn started, nothing of an earlier attempt of that turn was appended."""
    terminals = Counter(r.turn or "" for r in records if r.kind in TERMINAL_KINDS)
    assert sorted(terminals) == sorted(turns), "every turn ended"
    assert set(terminals.values()) == {1}, "exactly one terminal event each"
    keys = Counter((r.session, r.envelope.key) for r in records)
    assert all(n == 1 for n in keys.values()), "no idempotency key twice"
    started = Counter((r.turn, r.attempt) for r in records if r.kind == "turn_started")
    assert all(n == 1 for n in started.values()), "no attempt started twice"
    steps = Counter(
        (r.turn, r.attempt, r.event.step) for r in records if isinstance(r.event, AssistantMessage)
    )
    assert all(n == 1 for n in steps.values()), "no duplicate assistant_message"
    newest: dict[str, int] = {}
    for rec in records:  # in version order per session
        if rec.turn is None or rec.attempt is None:
            continue
        if isinstance(rec.event, TurnStarted):
            assert rec.attempt > newest.get(rec.turn, 0)
            newest[rec.turn] = rec.attempt
        assert rec.attempt == newest.get(rec.turn), f"{rec.kind} of a superseded attempt landed"
    return terminals


# ----------------------------------------------------------------------------- kill -9


@pytest.fixture
async def paced_devmodel() -> AsyncIterator[str]:
    async with serve(DevModelSettings(ttft_ms=0, tokens_per_second=50)) as url:
        yield url


WORDS = 80  # 1.6 s of streaming per attempt at 50 tokens/s
#: the event-loop stall an agent's in-progress acks must ride out here. Every turn uses
#: all three attempts (two kills), so one spurious takeover fails it with
#: max_deliveries. Measured on the shared 2-core machine at load average ~10: the
#: replacement agent, starting 100 turns at once, ran its timers ~1 s late, past the
#: 1.0 s that the former fixed ack wait of 1.5 s tolerated (every heartbeat failed:
#: "the ack deadline passed before the in-progress ack was sent"). Twice that; the
#: ack wait follows from the agent's heartbeat cadence (a redelivery after a kill
#: waits for it: about 1.5 s more per kill than before).
STALL_S = 2.0


@pytest.mark.parametrize("turns", slow_full(QUICK, FULL))
async def test_kill_minus_nine_mid_stream_at_scale(
    js_store: JetStreamEventStore, paced_devmodel: str, tmp_path: Path, turns: int
) -> None:
    store, started_at = js_store, time.monotonic()
    after = await store.last_position()
    sessions = [f"k{i}" for i in range(turns)]
    text = f"go [[words:{WORDS}]]"
    for i, session in enumerate(sessions):
        await store.append(session, NewEvent(event=SessionStarted(owner="o", provider="dev")))
        await store.append(session, NewEvent(event=UserMessage(text=text), turn=f"t{i}"))
    # stderr unread, so not piped: a full pipe would stall the agent
    ack_wait = ack_wait_for(STALL_S)
    spawn = partial(spawn_agent, store, paced_devmodel, tmp_path, ack_wait=ack_wait, stderr=DEVNULL)
    agents = [await spawn()]  # all at once
    streamed: dict[str, set[str]] = {}  # agent (actor) -> turns it streamed text for
    began: dict[str, set[str]] = {}  # agent (actor) -> turns it started
    dead: set[str] = set()
    ended: set[str] = set()
    kills: list[tuple[int, int]] = []  # per kill: turns mid-stream, turns started and open
    events = 0
    async with asyncio.timeout(120):
        async for rec in store.follow_all(after=after):
            events += 1
            actor, turn_id = rec.envelope.actor, rec.turn or ""
            if rec.kind == "turn_started":
                began.setdefault(actor, set()).add(turn_id)
            elif rec.kind == "text_delta":
                streamed.setdefault(actor, set()).add(turn_id)
            elif rec.kind in TERMINAL_KINDS:
                ended.add(turn_id)
                if len(ended) == turns:
                    break
            if len(kills) == 2:
                continue
            mine = {t for a, ts in streamed.items() if a not in dead for t in ts}
            live = mine - ended
            # half the turns mid-stream, or a quarter once this agent's first turns end
            if len(live) >= turns // 2 or (mine & ended and len(live) >= max(2, turns // 4)):
                opened = {t for a, ts in began.items() if a not in dead for t in ts} - ended
                kills.append((len(live), len(opened)))
                agents[-1].send_signal(signal.SIGKILL)  # mid-stream, no goodbye
                await agents[-1].wait()
                dead |= set(streamed) | set(began)  # every agent so far
                agents.append(await spawn())
    elapsed = time.monotonic() - started_at
    agents[-1].send_signal(signal.SIGTERM)
    await agents[-1].wait()
    assert len(kills) == 2
    records = await session_records(store, sessions)
    terminals = check_exactly_once(records, [f"t{i}" for i in range(turns)])
    assert {r.kind for r in records if r.kind in TERMINAL_KINDS} == {"turn_completed"}
    answer = answer_for(text)
    attempts: Counter[int] = Counter()
    for session in sessions:
        state = fold(r for r in records if r.session == session)
        (turn,) = state.turns.values()
        attempts[turn.attempt] += 1
        counted = [
            r for r in records if r.session == session and r.attempt == turn.attempt
        ]  # the attempt that counted streamed the whole answer, once
        assert "".join(r.event.text for r in counted if isinstance(r.event, TextDelta)) == answer
        assert [r.event.text for r in counted if isinstance(r.event, AssistantMessage)] == [answer]
    assert attempts[2] + attempts[3] > 0  # turns really were taken over
    print(
        f"\nkill -9 at scale: {turns} turns, {len(terminals)}/{turns} with exactly one "
        f"terminal event (all completed), 0 duplicates; kills interrupted "
        f"{' and '.join(f'{a} turns mid-stream ({b} started)' for a, b in kills)}; counted "
        f"attempt 1/2/3: {attempts[1]}/{attempts[2]}/{attempts[3]}; {events} events; "
        f"{elapsed:.1f} s"
    )


# ----------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Scenario:
    name: str
    text: str
    ends: str  # "completed", or the TurnFailed error kind
    fallbacks: tuple[str, ...]  # kinds, in order
    attempts: tuple[int, ...] = (1,)
    provider: str = "dev"

    @property
    def requests(self) -> int:
        """Provider calls the turn makes: each ends in a fallback, an assistant message
        or the turn's failure; a restarted attempt's fallback is its failed call."""
        return len(self.fallbacks) + 1


RETRY_AFTER_S = 0.1
SCENARIOS = (
    Scenario(
        "429 with Retry-After, twice, then fine",
        f"[[fail:429 retry-after={RETRY_AFTER_S} times=2]] hello",
        "completed",
        ("retry", "retry"),
    ),
    Scenario("500 once, then fine", "[[fail:500 times=1]] hello", "completed", ("retry",)),
    Scenario(
        "dropped connection mid-stream, every time",
        "[[drop:after=3]] [[words:20]]",
        "network",
        ("retry", "retry"),
        attempts=(1, 2, 3),
    ),
    Scenario(
        "stall past the timeout mid-stream, every time",
        "[[stall:5000 after=2]] [[words:10]]",
        "timeout",
        ("retry", "retry"),
        attempts=(1, 2, 3),
    ),
    Scenario("401", "[[fail:401]] hello", "auth", ()),
    Scenario(
        "401 from the primary, then the fallback provider",
        "hello",
        "completed",
        ("provider_switched",),
        provider="primary-bad-key",
    ),
    Scenario(
        "429 on the primary and on the fallback provider",
        "[[fail:429 retry-after=0.01]] hello",
        "rate_limit",
        ("retry", "retry", "retry", "provider_switched", "retry", "retry", "retry"),
        provider="primary",
    ),
)


@pytest.fixture
async def fast_devmodel() -> AsyncIterator[str]:
    async with serve(DevModelSettings.fast()) as url:
        yield url


def faulty_settings(data: Path, devmodel: str) -> Settings:
    primary = {
        "api": "openai", "base_url": f"{devmodel}/v1", "models": ["threadline-dev"],
        "default_model": "threadline-dev", "timeout_s": 1.0,
    }  # fmt: skip
    return Settings(
        data_dir=str(data),
        providers={
            "dev": {"timeout_s": 1.0},
            "primary": {**primary, "key_env": "PRIMARY_KEY"},
            "primary-bad-key": {**primary, "key_env": "PRIMARY_BAD_KEY"},
        },
        mcp_servers={"threadline": {"transport": "stdio", "command": ["true"]}},  # unused
    )


async def requests_served(devmodel: str) -> int:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{devmodel}/debug/requests")
    reply.raise_for_status()
    return int(reply.json()["total"])


@pytest.mark.parametrize("turns", slow_full(2 * len(SCENARIOS), FULL))
async def test_provider_faults_mid_stream_at_scale(
    js_store: JetStreamEventStore, fast_devmodel: str, tmp_path: Path, turns: int
) -> None:
    store, started_at = js_store, time.monotonic()
    agent = AgentSettings(
        worker="faults", retry_base_s=0.01, delta_window_s=0.005, fallback_providers=("dev",)
    )
    env = {"PRIMARY_KEY": "good-key", "PRIMARY_BAD_KEY": "bad-key"}
    plan = {f"f{i}": SCENARIOS[i % len(SCENARIOS)] for i in range(turns)}
    before = await requests_served(fast_devmodel)
    after = await store.last_position()
    async with serve_agent(
        faulty_settings(tmp_path, fast_devmodel), store, devmodel_url=fast_devmodel,
        agent=agent, env=env, ack_wait_s=10,
    ):  # fmt: skip
        for session, scenario in plan.items():
            start = SessionStarted(owner="o", provider=scenario.provider)
            await store.append(session, NewEvent(event=start))
            text = f"{scenario.text} ({session})"  # `times=N` counts per conversation
            await store.append(session, NewEvent(event=UserMessage(text=text), turn="t"))
        ended: set[str] = set()
        async with asyncio.timeout(120):
            async for rec in store.follow_all(after=after):
                if rec.kind in TERMINAL_KINDS:
                    ended.add(rec.session)
                    if len(ended) == turns:
                        break
    elapsed = time.monotonic() - started_at
    records = await session_records(store, list(plan))
    for session, scenario in plan.items():
        mine = [r for r in records if r.session == session]
        check_exactly_once(mine, ["t"])
        where = f"{session}: {scenario.name}"
        last = mine[-1].event
        if scenario.ends == "completed":
            assert mine[-1].kind == "turn_completed", (where, last)
        else:
            assert isinstance(last, TurnFailed) and last.error == scenario.ends, (where, last)
        fallbacks = [r for r in mine if isinstance(r.event, Fallback)]
        assert tuple(r.event.fallback for r in fallbacks) == scenario.fallbacks, where  # type: ignore[union-attr]
        assert tuple(r.attempt for r in mine if r.kind == "turn_started") == scenario.attempts
        calls = sum(1 for r in mine if r.kind == "assistant_message") + len(fallbacks)
        calls += isinstance(last, TurnFailed)
        assert calls == scenario.requests, where  # every provider call is on record
        if "Retry-After" in scenario.name:  # the retries waited as told
            at = [r.envelope.at for r in fallbacks] + [
                next(r.envelope.at for r in mine if r.kind == "text_delta")
            ]
            gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
            assert min(gaps) >= RETRY_AFTER_S * 1e6, (where, gaps)
    served = await requests_served(fast_devmodel) - before
    expected = sum(s.requests for s in plan.values())
    assert served == expected, "the dev model saw exactly the calls the events account for"
    outcomes = Counter(
        "completed" if r.kind == "turn_completed" else r.event.error  # type: ignore[union-attr]
        for r in records
        if r.kind in TERMINAL_KINDS
    )
    fallback_count = sum(1 for r in records if isinstance(r.event, Fallback))
    print(
        f"\nprovider faults at scale: {turns} turns, {len(SCENARIOS)} scenarios; outcomes "
        f"{dict(sorted(outcomes.items()))}; {fallback_count} fallback events; {served} provider "
        f"requests, all accounted for by events; {elapsed:.1f} s"
    )
