"""Item 13, reconnects: 100 mid-stream SSE disconnects, each resumed with ``Last-Event-ID``,
give exactly the stored stream: 0 gaps, 0 duplicates, the same bytes.

The real agent streams long answers from the dev model (a few hundred coalesced
``text_delta`` events each) while a client follows the session's events. The client
cuts its connection at a random byte of the stream (often in the middle of an event,
which it then never saw) and reconnects at once with the id of the last whole event it
received, as ``EventSource`` does; when an answer ends before 100 cuts, it asks for
another. At the end its events are compared with the session's stored events, and the
gateway holds no stream, subscription or slot.

``THREADLINE_RECONNECTS`` (default 100) and ``THREADLINE_RECONNECT_SEED`` change the
number of cuts and the random cut points (the seed used is in the figure).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.hardening.stack import Stack, running_stack
from threadline.events.schema import TERMINAL_KINDS
from threadline.services.devmodel import DevModelSettings
from threadline.services.runtime.natsserver import EmbeddedNats

CUTS = int(os.environ.get("THREADLINE_RECONNECTS", "100"))
LONG_ANSWER = "[[words:1500]] [[pace:tps=600]]"  # ~2.5 s, a few hundred deltas
_BLOCK = re.compile(rb"(.*?)\n\n", re.S)


@dataclass
class Follower:
    """An SSE client that keeps what it received and cuts its connection on purpose."""

    stack: Stack
    session: str
    rng: random.Random
    events: list[tuple[int, str, bytes]] = field(default_factory=list)
    cuts: int = 0
    connections: int = 0

    @property
    def last_id(self) -> int:
        return self.events[-1][0] if self.events else 0

    async def connect_once(self, cut_after_bytes: int | None, turns: int) -> None:
        """One connection: read until ``cut_after_bytes`` (then drop it), or until the
        end of the ``turns``-th answer."""
        headers = {"Last-Event-ID": str(self.last_id)} if self.events else {}
        url = f"/v1/sessions/{self.session}/events"
        self.connections += 1
        async with self.stack.client("alice").stream("GET", url, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            pending = b""
            received = 0
            async for chunk in response.aiter_bytes():
                if cut_after_bytes is not None and received + len(chunk) >= cut_after_bytes:
                    chunk = chunk[: cut_after_bytes - received]  # the rest is lost
                    self._take(pending + chunk)
                    self.cuts += 1
                    return  # leaving the block closes the connection mid-stream
                received += len(chunk)
                pending = self._take(pending + chunk)
                if self.ended() >= turns:
                    return

    def _take(self, data: bytes) -> bytes:
        """Record every whole event in ``data``; return the incomplete rest."""
        end = 0
        for match in _BLOCK.finditer(data):
            end = match.end()
            fields = dict(
                line.split(b": ", 1) for line in match.group(1).split(b"\n") if b": " in line
            )
            if b"id" in fields:
                kind = fields[b"event"].decode()
                self.events.append((int(fields[b"id"]), kind, fields[b"data"]))
        return data[end:]

    def ended(self) -> int:
        """Turns whose end this client has received."""
        return sum(kind in TERMINAL_KINDS for _, kind, _ in self.events)


async def test_a_hundred_random_disconnects_lose_and_repeat_nothing(
    nats_server: EmbeddedNats, tmp_path: Path, figure: Callable[[str], None]
) -> None:
    seed = int(os.environ.get("THREADLINE_RECONNECT_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    devmodel = DevModelSettings(ttft_ms=20, tokens_per_second=600)
    async with running_stack(nats_server.url, tmp_path, devmodel=devmodel) as stack:
        session = await stack.new_session()
        follower = Follower(stack, session, rng)
        turns = stalls = 0
        async with asyncio.timeout(240):
            while follower.cuts < CUTS:
                if follower.ended() == turns:  # nothing in flight: ask for a long answer
                    await stack.say(session, LONG_ANSWER)
                    turns += 1
                # cut somewhere in the next ~1-4 events' worth of bytes (more after cuts
                # that got no whole event: the answer's assistant_message is ~10 KB)
                seen = len(follower.events)
                await follower.connect_once(rng.randint(1, 1600 * 4 ** min(stalls, 4)), turns)
                stalls = 0 if len(follower.events) > seen else stalls + 1
            # then follow to the end of the answer in progress
            while follower.ended() < turns:
                await follower.connect_once(None, turns)
        stored = await stack.store.load(session)
        await stack.gateway.hub.settled(lambda: stack.gateway.hub.clients() == 0)
        assert stack.gateway.limiter.count("alice") == 0
        assert stack.gateway.hub.upstreams == 0

    got = [position for position, _, _ in follower.events]
    want = [rec.position for rec in stored]
    duplicates = len(got) - len(set(got))
    gaps = len(set(want) - set(got))
    assert duplicates == 0 and gaps == 0, f"seed {seed}: {duplicates} duplicates, {gaps} gaps"
    assert got == want, f"seed {seed}: out of order"
    assert [(k, d) for _, k, d in follower.events] == [(r.kind, r.raw) for r in stored]
    figure(
        f"{follower.cuts} mid-stream disconnects (at a random byte, seed {seed}) over {turns} "
        f"answers, {follower.connections} connections, {len(got)} events: "
        f"{gaps} gaps, {duplicates} duplicates, byte-identical to the stored stream"
    )
