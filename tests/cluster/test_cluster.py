"""End to end on a local three-node cluster: 50 conversations with tool calls while the
stream's leader node and an agent process are killed with -9 and restarted.

Every turn ends in exactly one terminal event; every acknowledged append and every
delivered event is in the final log, byte for byte; no idempotency key is stored twice,
versions are contiguous and every session's hash chain verifies; readers that keep
reconnecting (SSE with ``Last-Event-ID`` hopping between both gateways, and
``store.follow`` with ``after=``) see each session's log exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster.readers import Watch, watch_sse, watch_store
from tests.cluster.workload import Workload, check_log, session_of, turn_id
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS
from threadline.events.store import Recorded
from threadline.services.agent.turn import agent_actor, worker_id
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.runtime.cluster import LocalCluster

SESSIONS = 50
TURNS = 2
WATCHED = 10  # sessions followed by reconnecting readers
KILL_WHEN_STREAMING = 10  # turns streaming when the faults start...
KILL_WHEN_VICTIM_STREAMING = 3  # ...of which at least this many on agent 0
HEAL_AFTER = 20  # turns ended on the degraded cluster before the node comes back
PROBES, PROBE_LIMIT = 3, 150  # sessions appended to back to back across the faults


@pytest.fixture
async def devmodel() -> AsyncIterator[str]:
    async with serve(DevModelSettings(ttft_ms=50, tokens_per_second=100)) as url:
        yield url


class Faults:
    """Kill the stream leader node and agent 0 once turns are streaming (some of them on
    agent 0, so its death interrupts them); bring the agent back at once and the node
    after ``HEAL_AFTER`` more turns have ended."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.go = asyncio.Event()
        self.heal = asyncio.Event()
        self.ended_at_kill: int | None = None
        self.victim: int | None = None

    def victim_actor(self) -> str:
        """Agent 0's ``actor`` in the events it writes (``agent:<host>-<pid>``)."""
        return agent_actor(worker_id(self.cluster.agents[0].pid))

    def progress(self, streaming: int, on_victim: int, ended: int) -> None:
        if streaming >= KILL_WHEN_STREAMING and on_victim >= KILL_WHEN_VICTIM_STREAMING:
            if not self.go.is_set():  # at this very event, while agent 0's turns stream
                self.cluster.agents[0].signal_group(signal.SIGKILL)
            self.go.set()
        if self.ended_at_kill is not None and ended >= self.ended_at_kill + HEAL_AFTER:
            self.heal.set()

    async def run(self, ended: set[str]) -> None:
        await self.go.wait()
        # agent 0 got SIGKILL in progress(): reap it; the leader node goes right after
        await asyncio.gather(self.cluster.kill_agent(0), self._kill_leader())
        self.ended_at_kill = len(ended)
        await self.cluster.restart_agent(0)
        await self.heal.wait()
        assert self.victim is not None
        await self.cluster.restart_node(self.victim)

    async def _kill_leader(self) -> None:
        leader = await self.cluster.stream_leader()
        self.victim = 0 if leader is None else leader
        await self.cluster.kill_node(self.victim)


async def run_probes(work: Workload, faults: Faults, done: asyncio.Event) -> None:
    await faults.go.wait()
    await asyncio.gather(*(work.probe(p, done, PROBE_LIMIT) for p in work.probes))


async def drive(cluster: LocalCluster, store: JetStreamEventStore) -> None:
    start = await store.last_position()
    work = Workload(store, [f"c{i}" for i in range(SESSIONS)], turns=TURNS)
    work.probes = [f"probe{i}" for i in range(PROBES)]
    faults = Faults(cluster)
    seen: dict[int, Recorded] = {}
    streaming: set[str] = set()
    on_victim: set[str] = set()  # turns streaming on agent 0, before the kill
    victim = faults.victim_actor()
    ended: set[str] = set()
    watches = [Watch(s, turn_id(s, TURNS)) for s in work.sessions[:WATCHED]]
    probes_done = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:  # any failure cancels the rest and surfaces
        fault_task = tasks.create_task(faults.run(ended))
        tasks.create_task(run_probes(work, faults, probes_done))
        await asyncio.gather(*(work.start_session(s) for s in work.sessions))
        # half over the gateways' SSE (if this build has them), the rest over store.follow
        sse = watches[: WATCHED // 2] if cluster.gateway_urls else []
        for w in sse:
            tasks.create_task(watch_sse(cluster.gateway_urls, cluster.gateway_token, w))
        for w in watches[len(sse) :]:
            tasks.create_task(watch_store(store, w))
        follow = store.follow_all(after=start)
        async with contextlib.aclosing(follow):
            async for rec in follow:
                seen[rec.position] = rec
                if rec.kind == "text_delta" and rec.turn:
                    streaming.add(rec.turn)
                    if rec.envelope.actor == victim and rec.turn not in ended:
                        on_victim.add(rec.turn)
                if rec.kind in TERMINAL_KINDS and rec.turn and rec.turn not in ended:
                    ended.add(rec.turn)
                    session, n = session_of(rec.turn)
                    if n < TURNS:
                        tasks.create_task(work.send(session, n + 1))
                faults.progress(len(streaming), len(on_victim - ended), len(ended))
                if ended >= work.all_turns():
                    break
        faults.heal.set()  # everything ended before the threshold: heal now
        await fault_task
        probes_done.set()
    await cluster.wait_healthy()
    await cluster.wait_caught_up()  # reads are served by any replica: let them agree

    logs, problems = await check_log(work, seen)
    assert not problems, "\n".join(problems[:20])
    assert work.acked and len(seen) > SESSIONS * TURNS * 6
    kinds = {r.kind for recs in logs.values() for r in recs}
    assert {"tool_call", "tool_result", "turn_completed"} <= kinds
    assert not kinds & {"turn_failed", "turn_cancelled"}
    restarted = {r.turn for recs in logs.values() for r in recs if (r.attempt or 1) > 1}
    assert restarted, "the agent kill interrupted no turn: the test proved nothing"
    for watch in watches:
        assert watch.positions == [r.position for r in logs[watch.session]], watch.session
    assert all(w.reconnects >= 2 for w in watches), [w.reconnects for w in watches]
    info = await store.nc.jetstream().stream_info(cluster.stream.name)
    assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    assert all(peer.current for peer in info.cluster.replicas or [])
    assert all(p.running for p in cluster.agents + cluster.projectors + cluster.gateways)
    print(
        f"{len(seen)} events, {len(ended)} turns ({len(restarted)} restarted), node "
        f"{faults.victim} and agent 0 killed, {len(work.acked)} appends acknowledged "
        f"({work.unacked} unacknowledged and {work.conflicts} refused with 10164, retried), "
        f"{sum(w.reconnects for w in watches)} reader reconnects "
        f"({'SSE and ' if cluster.gateway_urls else ''}store.follow)"
    )


@pytest.mark.slow
async def test_fifty_conversations_survive_node_and_agent_kills(
    tmp_path: Path, devmodel: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["THREADLINE_DEVMODEL_URL"] = devmodel
    cluster = LocalCluster(tmp_path, agents=2, gateways=2, env=env, agent_args=["--ack-wait", "3"])
    async with cluster:
        store = await JetStreamEventStore.connect(
            cluster.nats_urls, cluster.stream, heartbeat_s=0.5, timeout_s=3
        )
        try:
            async with asyncio.timeout(240):  # a liveness bound: ~35 s when idle
                await drive(cluster, store)
        finally:
            await store.close()
