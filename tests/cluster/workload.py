"""Concurrent conversations against a cluster, and the checks that the log came through
faults intact: one terminal event per turn, nothing acknowledged lost, nothing doubled."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from threadline.base.errors import StoreError, StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS, SessionStarted, TextDelta, UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.events.verify import verify_session

#: Back-off before appending again after an unacknowledged attempt (same event, same
#: idempotency key, so the retry is safe); not used to wait for anything.
RETRY_S = 0.2
#: On a replicated stream nats-server reports a wrong expected sequence with err_code
#: 10164, which the store does not yet translate into a concurrency conflict (only
#: 10071), so ``append(expected_version=None)`` does not retry it by itself.
WRONG_LAST_SEQUENCE = "wrong last sequence"


def turn_id(session: str, n: int) -> str:
    return f"{session}-t{n}"


def message(session: str, n: int) -> str:
    return f'turn {n} of {session} [[tool:echo {{"text": "{session}/{n}"}}]] [[words:12]]'


@dataclass
class Workload:
    """``sessions`` conversations of ``turns`` turns, each turn with a tool call."""

    store: JetStreamEventStore
    sessions: list[str]
    turns: int = 2
    owner: str = "dev"
    probes: list[str] = field(default_factory=list)  # sessions of plain appends, no turns
    acked: dict[str, Recorded] = field(default_factory=dict)  # idempotency key -> record
    unacked: int = 0  # attempts that ended without an acknowledgement (retried)
    conflicts: int = 0  # attempts refused with "wrong last sequence" 10164 (retried)

    async def append(self, session: str, new: NewEvent) -> Recorded:
        """Append until acknowledged, retrying the same event (its key makes it safe)."""
        while True:
            try:
                (rec,) = await self.store.append(session, new)
            except StoreUnavailable:
                self.unacked += 1
                await asyncio.sleep(RETRY_S)
                continue
            except StoreError as exc:
                if WRONG_LAST_SEQUENCE not in str(exc):
                    raise
                self.conflicts += 1  # a stale head (read from a follower): read it again
                continue
            self.acked[new.key] = rec
            return rec

    async def start_session(self, session: str) -> None:
        started = SessionStarted(owner=self.owner, provider="dev", tool_servers=("threadline",))
        await self.append(session, NewEvent(event=started, actor=f"user:{self.owner}"))
        await self.send(session, 1)

    async def send(self, session: str, n: int) -> None:
        event = UserMessage(text=message(session, n))
        new = NewEvent(event=event, actor=f"user:{self.owner}", turn=turn_id(session, n))
        await self.append(session, new)

    async def probe(self, session: str, stop: asyncio.Event, limit: int) -> None:
        """Append one event after another until ``stop`` (or ``limit``): a steady stream of
        acknowledged appends across the faults. Agents and views ignore these sessions."""
        started = SessionStarted(owner=self.owner, title="probe")
        await self.append(session, NewEvent(event=started, actor=f"user:{self.owner}"))
        for i in range(limit):
            if stop.is_set():
                return
            await self.append(session, NewEvent(event=TextDelta(text=f"p{i}"), actor="probe"))

    def all_turns(self) -> set[str]:
        return {turn_id(s, n) for s in self.sessions for n in range(1, self.turns + 1)}


def session_of(turn: str) -> tuple[str, int]:
    session, _, n = turn.rpartition("-t")
    return session, int(n)


async def check_log(
    work: Workload, seen: dict[int, Recorded]
) -> tuple[dict[str, list[Recorded]], list[str]]:
    """Read every session back and list every violation found (empty: all good)."""
    store, problems = work.store, []
    logs = {s: await store.load(s) for s in work.sessions + work.probes}
    stored = {r.position: r for recs in logs.values() for r in recs}
    for session, recs in logs.items():
        versions = [r.version for r in recs]
        if versions != list(range(1, len(recs) + 1)):
            problems.append(f"{session}: versions not contiguous: {versions}")
        keys = Counter(r.envelope.key for r in recs)
        problems += [f"{session}: key {k} stored {c} times" for k, c in keys.items() if c > 1]
        raw = store.follow_raw([f"{store.prefix}.{session}.*"], until_end=True)
        report = await verify_session(session, raw)
        if not report.ok or report.events != len(recs):
            problems.append(
                f"{session}: verify failed: {report.problems} ({report.events} events "
                f"verified up to version {report.last_version}, {len(recs)} loaded)"
            )
        steps = Counter(
            (r.turn, r.attempt, getattr(r.event, "step", None))
            for r in recs
            if r.kind == "assistant_message"
        )
        problems += [f"{session}: assistant message {k} x{c}" for k, c in steps.items() if c > 1]
    terminals = Counter(r.turn for recs in logs.values() for r in recs if r.kind in TERMINAL_KINDS)
    for turn in work.all_turns():
        if terminals[turn] != 1:
            problems.append(f"turn {turn}: {terminals[turn]} terminal events")
    for key, rec in work.acked.items():
        if stored.get(rec.position) is None or stored[rec.position].raw != rec.raw:
            problems.append(f"acknowledged append {key} at {rec.position} lost or changed")
    for position, rec in seen.items():
        if rec.session in logs and (position not in stored or stored[position].raw != rec.raw):
            problems.append(f"event at {position} ({rec.kind}) was delivered but is not stored")
    return logs, problems
