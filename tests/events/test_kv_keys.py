"""Listing a KV bucket's keys under a prefix (the sessions directory's rows) on a real
nats-server: every listing is whole, however many run at once. With nats-py's watcher a
listing could come back empty under load (the watcher said "nothing stored" before the
entries being sent reached it): a gateway then showed an owner's list cut short."""

from __future__ import annotations

import asyncio

import nats

from tests.conftest import fresh_stream
from threadline.events.directory import Row
from threadline.events.kv import KVDirectory, buckets


async def test_concurrent_listings_are_whole(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        directory = KVDirectory(nc, buckets(fresh_stream())[1])
        rows = [Row(1_700_000_000_000 + i, f"s{i:03d}") for i in range(300)]
        for row in rows:
            await directory.put("alice", row, b"x")
        await directory.put("bob", Row(1, "b0"), b"y")
        for _ in range(5):
            listings = await asyncio.gather(*(directory.rows("alice") for _ in range(40)))
            assert all(sorted(listing) == rows for listing in listings)
        assert await directory.rows("bob") == [Row(1, "b0")]
        assert await directory.rows("carol") == []
    finally:
        await nc.close()
