"""``threadline chat`` on a pseudo-terminal against a real gateway, agent and dev model.

Type a message and see the answer stream in with its tool call and result; start a long
answer and press Ctrl-C: the turn is cancelled (``turn_cancelled`` in the log) and the
client is back at its prompt; a fallback and a failed turn show; Ctrl-D quits. A new
client resumes the session and shows its history; Ctrl-C at its prompt quits.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from tests.chat.pty_process import PtyProcess
from tests.support.stack import Stack, running_stack
from threadline.events.schema import TurnCancelled
from threadline.services.runtime.natsserver import EmbeddedNats

PROMPT = r"you> "


@asynccontextmanager
async def chat_client(stack: Stack, cwd: Path, *args: str) -> AsyncIterator[PtyProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env |= {"THREADLINE_URL": stack.url, "THREADLINE_TOKEN": stack.token, "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "threadline.services.cli", "chat", *args]
    client = await PtyProcess.spawn(argv, env=env, cwd=str(cwd))
    try:
        yield client
    finally:
        await client.close()
        assert stack.token not in client.output  # never shown


async def test_chat_streams_stops_a_turn_and_resumes(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    # streams end every 2 s: the client must resume with Last-Event-ID, losing nothing
    async with running_stack(nats_server.url, tmp_path, max_stream_s=2.0) as stack:
        async with chat_client(stack, tmp_path, "--title", "pty chat") as chat:
            session = (await chat.expect(r'session ([0-9a-f]+) "pty chat"'))[1]
            await chat.expect(r"tools: threadline")
            await chat.expect(PROMPT)

            chat.send('hello [[tool:echo {"text": "hello"}]]\n')
            await chat.expect(r'⚙ threadline__echo \{"text": "hello"\}')
            await chat.expect(r"→ threadline__echo: hello")
            await chat.expect(r"assistant> Tool threadline__echo returned: hello")
            await chat.expect(PROMPT)

            # a long answer, streamed at 10 words per second; Ctrl-C stops it
            chat.send("[[pace:ttft=0,tps=10]] [[words:100]]\n")
            await chat.expect(r"assistant> lorem")
            first = chat.chunks[-1][0]
            await chat.expect(r"sit amet")
            assert chat.chunks[-1][0] - first > 0.15  # it came in pieces, over time
            chat.send("\x03")  # Ctrl-C: the terminal sends SIGINT
            await chat.expect(r"stopping the answer")
            await chat.expect(r"■ turn cancelled")
            await chat.expect(PROMPT)
            assert chat.proc.returncode is None

            records = await stack.store.load(session)
            cancelled = [r.event for r in records if isinstance(r.event, TurnCancelled)]
            assert len(cancelled) == 1 and 0 < len(cancelled[0].partial_text.split()) < 100
            assert [r.kind for r in records].count("cancel_requested") == 1

            chat.send("still here\n")
            await chat.expect(r"assistant> Echo: still here")
            await chat.expect(PROMPT)
            # a provider error a retry gets past (a fallback), then one that fails the turn
            chat.send("hiccup [[fail:500 times=1]]\n")
            await chat.expect(r"! fallback retry: .*HTTP 500")
            await chat.expect(r"assistant> Echo: hiccup")
            await chat.expect(PROMPT)
            chat.send("[[fail:401]]\n")
            await chat.expect(r"✗ turn failed \(auth\)")
            await chat.expect(PROMPT)
            chat.send("\x04")  # Ctrl-D
            assert await chat.wait() == 0

        async with chat_client(stack, tmp_path, session) as again:
            await again.expect(rf'session {session} "pty chat"')
            await again.expect(r"you> hello \[\[tool:echo")
            await again.expect(r'⚙ threadline__echo \{"text": "hello"\}')
            await again.expect(r"→ threadline__echo: hello")
            await again.expect(r"assistant> Tool threadline__echo returned: hello")
            await again.expect(r"assistant> lorem ipsum")
            await again.expect(r"■ turn cancelled")
            await again.expect(r"assistant> Echo: still here")
            await again.expect(r"assistant> Echo: hiccup")
            await again.expect(r"✗ turn failed: .*key was rejected")
            await again.expect(PROMPT)
            again.send("\x03")  # Ctrl-C at the prompt quits
            assert await again.wait() == 0


async def test_chat_retries_a_failed_turn(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """``/retry`` asks the failed question again; the next message is not poisoned by it."""
    async with (
        running_stack(nats_server.url, tmp_path) as stack,
        chat_client(stack, tmp_path, "--title", "retry") as chat,
    ):
        await chat.expect(PROMPT)
        chat.send("[[fail:500 times=4]] once more\n")  # the attempt's 4 requests fail
        await chat.expect(r"✗ turn failed \(")
        await chat.expect(PROMPT)
        chat.send("/retry\n")
        await chat.expect(r"↻ asking the last question again")
        await chat.expect(r"assistant> Echo: once more")
        await chat.expect(PROMPT)
        chat.send("and then\n")
        await chat.expect(r"assistant> Echo: and then")
        await chat.expect(PROMPT)
        chat.send("\x04")
        assert await chat.wait() == 0
