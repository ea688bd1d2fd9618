"""``threadline chat --approve-tools`` on a pseudo-terminal against a real gateway, agent,
bundled MCP server and dev model: a tool call waits, the chat asks at its prompt; ``y``
runs it, ``n`` and a reason denies it and the model is told so."""

from __future__ import annotations

from pathlib import Path

from tests.chat.test_chat import PROMPT, chat_client
from tests.support.stack import running_stack
from threadline.services.runtime.natsserver import EmbeddedNats


async def test_chat_asks_before_a_tool_call_runs(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    async with (
        running_stack(nats_server.url, tmp_path) as stack,
        chat_client(stack, tmp_path, "--title", "careful", "--approve-tools") as chat,
    ):
        session = (await chat.expect(r'session ([0-9a-f]+) "careful"'))[1]
        await chat.expect(PROMPT)
        chat.send('[[tool:echo {"text": "hello"}]]\n')
        await chat.expect(r"⏸ threadline__echo waits for approval")
        await chat.expect(r'\? run threadline__echo \{"text": "hello"\}\? \[y/N')
        chat.send("y\n")
        await chat.expect(r"approved by user:")
        await chat.expect(r"→ threadline__echo: hello")
        await chat.expect(r"assistant> Tool threadline__echo returned: hello")
        await chat.expect(PROMPT)

        chat.send('[[tool:echo {"text": "again"}]]\n')
        await chat.expect(r'\? run threadline__echo \{"text": "again"\}\?')
        chat.send("n not now\n")
        await chat.expect(r"denied by user:\S+: not now")
        await chat.expect(r"assistant> Tool threadline__echo returned: This tool call was not run")
        await chat.expect(PROMPT)
        chat.send("\x04")
        assert await chat.wait() == 0
        kinds = [r.kind for r in await stack.store.load(session)]
        assert kinds.count("approval_granted") == kinds.count("approval_denied") == 1
