"""CPU a followed record costs: ``store.follow`` catching up on stored events.

``python -m bench.followcpu [--events N] [--readers K]`` appends N events to one
session, then lets K readers, one after the other, follow the session from its start
until they have seen all N, and prints each reader's process CPU per record (and
their median). Run it from two checkouts in turns to compare their follow paths
(docs/benchmarks.md, "The follow path"): a single-event latency figure is mostly the
wake-ups, this one the per-record work.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import median, nats_server, progress
from bench.eventlog import PAYLOAD, _settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.store import NewEvent


async def measure(url: str, events: int, readers: int) -> list[float]:
    """Each reader's CPU per followed record, in microseconds."""
    settings = _settings()
    writer = await JetStreamEventStore.connect(url, settings)
    try:
        for start in range(0, events, 100):
            batch = [NewEvent(event=PAYLOAD) for _ in range(min(100, events - start))]
            await writer.append("s", batch)
        results = []
        for _ in range(readers):
            reader = await JetStreamEventStore.connect(url, settings)
            seen, began = 0, time.process_time()
            follow = reader.follow("s")
            async for _ in follow:
                seen += 1
                if seen == events:
                    break
            await follow.aclose()
            results.append((time.process_time() - began) / events * 1e6)
            await reader.close()
        return results
    finally:
        await writer.close()


async def main(events: int, readers: int) -> None:
    async with nats_server() as server:
        progress(f"following {events:,} stored events, {readers} readers")
        results = await measure(server.url, events, readers)
    each = " ".join(f"{r:.2f}" for r in results)
    print(f"CPU per followed record (us): median {median(results):.2f}; readers: {each}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--readers", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.readers))
