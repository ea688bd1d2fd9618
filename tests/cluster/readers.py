"""Clients that watch one session until a turn ends, reconnecting as they go: over the
gateways' Server-Sent Events (``Last-Event-ID``) or, without a gateway, ``store.follow``
(``after=``). Both record every position they were given, so a test can check that
the concatenation over all reconnects is exactly the session's log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import httpx

from threadline.base.errors import StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS

#: Back-off between reconnect attempts after an error (not synchronisation: the next
#: attempt simply starts again from the last position seen).
RETRY_S = 0.2


@dataclass
class Watch:
    session: str
    last_turn: str
    positions: list[int] = field(default_factory=list)
    reconnects: int = 0

    @property
    def after(self) -> int:
        return self.positions[-1] if self.positions else 0

    def take(self, position: int, kind: str, turn: str | None) -> bool:
        """Record one event; True once the last turn has ended."""
        self.positions.append(position)
        return kind in TERMINAL_KINDS and turn == self.last_turn


async def _sse_events(
    client: httpx.AsyncClient, url: str, after: int
) -> AsyncIterator[tuple[int, str, str | None]]:
    headers = {"Last-Event-ID": str(after)} if after else {}
    async with client.stream("GET", url, headers=headers) as resp:
        resp.raise_for_status()
        ident, kind, data = "", "", ""
        async for line in resp.aiter_lines():
            if line.startswith("id:"):
                ident = line[3:].strip()
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and ident and data:
                yield int(ident), kind, json.loads(data).get("turn")
                ident, kind, data = "", "", ""


async def watch_sse(
    gateways: Sequence[str], token: str, watch: Watch, *, switch_every: int = 5
) -> Watch:
    """Read the session's SSE stream, hopping to the next gateway (``Last-Event-ID``)
    after every ``switch_every`` events and after any error or cut stream."""
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(headers=auth, timeout=httpx.Timeout(10.0, read=30.0)) as client:
        hop = 0
        while True:
            base = gateways[hop % len(gateways)]
            url = f"{base}/v1/sessions/{watch.session}/events"
            count = 0
            try:
                async for position, kind, turn in _sse_events(client, url, watch.after):
                    if watch.take(position, kind, turn):
                        return watch
                    count += 1
                    if count >= switch_every:
                        break  # leave mid-stream on purpose and resume elsewhere
            except (httpx.HTTPError, ValueError):
                await asyncio.sleep(RETRY_S)
            hop += 1
            watch.reconnects += 1


async def watch_store(store: JetStreamEventStore, watch: Watch, *, switch_every: int = 5) -> Watch:
    """The same over ``store.follow(session, after=...)``."""
    while True:
        count = 0
        follow = store.follow(watch.session, after=watch.after)
        try:
            async with contextlib.aclosing(follow):
                async for rec in follow:
                    if watch.take(rec.position, rec.kind, rec.turn):
                        return watch
                    count += 1
                    if count >= switch_every:
                        break
        except StoreUnavailable:
            await asyncio.sleep(RETRY_S)
        watch.reconnects += 1
