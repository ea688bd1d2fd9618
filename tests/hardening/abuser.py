"""One owner abusing the gateway, from its own process (so the abuse does not share the
measuring test's event loop): ``python -m tests.hardening.abuser URL TOKEN SESSION``.

It runs these in rounds until its stdin closes, then prints one JSON object of counts
(``{"messages": {"202": n, "429": m}, ...}``) on stdout:

* ``messages``: a burst of 1,000 ``POST /v1/sessions/SESSION/messages``, 50 at a time;
* ``streams``: 1,000 concurrent ``GET /v1/sessions/SESSION/events`` (those let in are
  held until the round ends, the others refused);
* ``slowloris``: 200 connections sending a request head one byte every 0.2 s;
* ``oversized``: 20 commands with a 2 MiB body.

After its first round has started it prints ``abusing`` on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter, defaultdict
from urllib.parse import urlsplit

import httpx

STATS: defaultdict[str, Counter[str]] = defaultdict(Counter)


async def messages(
    client: httpx.AsyncClient, session: str, n: int = 1000, at_once: int = 50
) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(i: int) -> None:
        async with gate:
            try:
                answer = await client.post(
                    f"/v1/sessions/{session}/messages", json={"text": f"spam {i}"}
                )
                STATS["messages"][str(answer.status_code)] += 1
            except httpx.HTTPError as exc:
                STATS["messages"][type(exc).__name__] += 1

    await asyncio.gather(*(one(i) for i in range(n)))


async def streams(host: str, port: int, token: str, session: str, n: int = 1000) -> None:
    head = (
        f"GET /v1/sessions/{session}/events HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    held: list[asyncio.StreamWriter] = []

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head)
            status = (await reader.readline()).split(b" ")[1].decode()
        except (OSError, IndexError) as exc:
            STATS["streams"][type(exc).__name__] += 1
            return
        STATS["streams"][status] += 1
        if status == "200":
            held.append(writer)
        else:
            writer.close()

    await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(1.0)  # hold the admitted streams a moment (abuse, not sync)
    for writer in held:
        writer.close()


async def slowloris(host: str, port: int, token: str, n: int = 200) -> None:
    head = (
        f"GET /v1/sessions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "X-Padding: " + "a" * 200 + "\r\n\r\n"
    ).encode()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)  # the attack's pace
                if reader.at_eof():
                    break
            STATS["slowloris"]["completed the head"] += 1
        except OSError:
            STATS["slowloris"]["closed by the server"] += 1

    await asyncio.gather(*(one() for _ in range(n)))


async def oversized(host: str, port: int, token: str, session: str, n: int = 20) -> None:
    body = b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    head = (
        f"POST /v1/sessions/{session}/messages HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head + body)
            with contextlib.suppress(OSError):
                await writer.drain()
            status = (await reader.readline()).split(b" ")[1].decode()
            STATS["oversized"][status] += 1
            writer.close()
        except (OSError, IndexError) as exc:
            STATS["oversized"][type(exc).__name__] += 1

    await asyncio.gather(*(one() for _ in range(n)))


async def main(url: str, token: str, session: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def until_stdin_closes() -> None:
        await reader.read()
        stop.set()

    watcher = asyncio.create_task(until_stdin_closes())
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:
        first = True
        while not stop.is_set():
            round_ = asyncio.gather(
                messages(c, session),
                streams(host, port, token, session),
                slowloris(host, port, token),
                oversized(host, port, token, session),
            )
            if first:
                print("abusing", flush=True)
                first = False
            await round_
            STATS["rounds"]["done"] += 1
    watcher.cancel()
    print(json.dumps(STATS), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
