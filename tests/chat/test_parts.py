"""The chat client's parts: following a session across reconnections,
reading stdin without blocking (pipe, regular file), and the terminal rendering."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import httpx2

from tests.gateway.harness import agent_turn, gateway_options, running_gateway
from threadline.events.schema import Envelope, Event, TextDelta, ToolCall
from threadline.services.chatclient import INTERRUPTED, GatewayClient, LineReader, Renderer
from threadline.services.runtime.natsserver import EmbeddedNats


async def test_follow_resumes_without_gap_or_duplicate(nats_server: EmbeddedNats) -> None:
    options = gateway_options(max_stream_s=0.4, retry_ms=50)
    async with running_gateway(nats_server.url, options) as gw:
        session = await gw.new_session(tool_servers=[])
        client = GatewayClient(gw.url, "alice-token")
        resumed: list[str] = []

        async def on_request(request: httpx2.Request) -> None:
            resumed.append(request.headers["Last-Event-ID"])

        client.http.event_hooks["request"].append(on_request)
        seen: list[int] = []
        caught_up = asyncio.Event()
        last = [0]

        async def follow() -> None:
            async for position, env in client.follow(session, after=0):
                seen.append(position)
                assert env.session == session
                if position == last[0]:
                    caught_up.set()

        task = asyncio.create_task(follow())
        try:
            n = 0
            async with asyncio.timeout(15):
                while n < 3 or len(resumed) < 3:  # over several stream lifetimes
                    records = await agent_turn(gw.store, session, f"t{n}", tool=n == 1)
                    n += 1
                    await asyncio.sleep(0.25)
            last[0] = records[-1].position
            if seen and seen[-1] == last[0]:
                caught_up.set()
            await asyncio.wait_for(caught_up.wait(), 5)
            assert seen == [r.position for r in await gw.store.load(session)]
            assert resumed[0] == "0" and all(int(p) > 0 for p in resumed[1:])  # resumed
        finally:
            task.cancel()
            await client.aclose()


async def test_line_reader_on_a_pipe() -> None:
    read_end, write_end = os.pipe()
    reader = LineReader(read_end)
    reader.start()
    try:
        os.write(write_end, "héllo\nwor".encode())
        assert await reader.readline() == "héllo"
        os.write(write_end, b"ld\r\n" + "é".encode()[:1])
        assert await reader.readline() == "world"
        reader.interrupt()
        assert await reader.readline() is INTERRUPTED
        os.write(write_end, "é".encode()[1:] + b"\nlast")
        assert await reader.readline() == "é"
        os.close(write_end)
        assert await reader.readline() == "last"
        assert await reader.readline() is None
        assert await reader.readline() is None
    finally:
        reader.close()
        os.close(read_end)


async def test_line_reader_on_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    await asyncio.to_thread(path.write_text, "one\ntwo\n")
    fd = os.open(path, os.O_RDONLY)
    reader = LineReader(fd)
    reader.start()  # epoll refuses regular files: read in a thread instead
    try:
        assert [await reader.readline() for _ in range(3)] == ["one", "two", None]
    finally:
        reader.close()
        os.close(fd)


def test_renderer_puts_blocks_on_their_own_lines() -> None:
    out = io.StringIO()
    render = Renderer(out, color=False)

    def env(event: Event) -> Envelope:
        return Envelope(
            schema=1, session="s", version=1, at=0, actor="agent:x", key="k", prev="p",
            event=event, turn="t", attempt=1,
        )  # fmt: skip

    render.prompt()
    render.event(env(TextDelta(text="Hel")))
    render.event(env(TextDelta(text="lo")))
    render.event(env(ToolCall(call_id="c", tool="srv__echo", arguments={"text": "é"})))
    assert out.getvalue() == 'you> \nassistant> Hello\n  ⚙ srv__echo {"text": "é"}\n'
