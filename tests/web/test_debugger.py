"""The replay debugger (``/debug``) in a real browser: headless Chromium (playwright-core)
against a real gateway, agent, MCP server and dev model.

Sessions are made through the API as a user of the chat would make them (a tool call, a
long streamed answer, a provider error a retry got past), and one more whose log was
tampered with: a record published raw with nats-py whose ``prev`` does not chain. The
browser script (debug.mjs) then uses the debugger as a person would: signs in, sees the
chain checked OK, replays the long answer at recorded pace and gets its text exactly,
opens a deep link at the tool call, forks from the end of the first turn, continues the
fork differently and sees the changed words in the side-by-side diff, and sees the
tampered session's chain broken at the forged record's position. Screenshots (light,
dark, phone) go to ``THREADLINE_WEB_SHOTS`` (``make screenshots``: docs/screenshots)
or a temp folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.conftest import fresh_stream
from tests.support.stack import Stack, running_stack
from tests.web.browser import HERE, ensure_chromium, ensure_node_modules
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import (
    SCHEMA_VERSION,
    TERMINAL_KINDS,
    Envelope,
    SessionStarted,
    TextDelta,
)
from threadline.services.gateway import create_app, serve_app
from threadline.services.runtime.natsserver import EmbeddedNats

TOOL = 'say it back [[tool:echo {"text": "hello"}]]'
LONG = "stream please [[pace:ttft=0,tps=60]] [[words:40]]"
HICCUP = "hiccup [[fail:500 times=1]]"


async def post(client: httpx.AsyncClient, session: str, text: str) -> tuple[str, int]:
    """Post a message: its turn and the position of its event."""
    posted = await client.post(f"/v1/sessions/{session}/messages", json={"text": text})
    assert posted.status_code == 202, posted.text
    return posted.json()["turn_id"], posted.json()["position"]


async def ended(stack: Stack, session: str, turn: str, after: int) -> str:
    """Returns once ``turn`` has ended (followed in the log after position ``after``)."""
    events = stack.store.follow(session, after=after)
    async with contextlib.aclosing(events):
        async for rec in events:
            if rec.turn == turn and rec.kind in TERMINAL_KINDS:
                return rec.kind
    raise AssertionError("the log ended")


async def ask(stack: Stack, client: httpx.AsyncClient, session: str, text: str) -> str:
    """Post a message and return its turn once it has ended."""
    turn, position = await post(client, session, text)
    await asyncio.wait_for(ended(stack, session, turn, position), 60)
    return turn


async def prepare(stack: Stack) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=30) as client:
        made = await client.post(
            "/v1/sessions", json={"title": "Debugger", "tool_servers": ["threadline"]}
        )
        session = made.json()["id"]
        for text in (TOOL, LONG, HICCUP):
            await ask(stack, client, session, text)
        records = await stack.store.load(session)
        tool_call = next(r for r in records if r.kind == "tool_call")

        made = await client.post("/v1/sessions", json={"title": "Tampered"})
        tampered = made.json()["id"]
        turn = await ask(stack, client, tampered, "a quiet one")
        # a failed turn, its retry, and a turn stopped at once
        failed = await ask(stack, client, tampered, "bad key [[fail:401]]")
        retry = await client.post(f"/v1/sessions/{tampered}/retry", json={"turn_id": failed})
        assert retry.status_code == 202, retry.text
        await ended(stack, tampered, retry.json()["turn_id"], retry.json()["position"])
        slow, position = await post(
            client, tampered, "a long one [[pace:ttft=0,tps=5]] [[words:200]]"
        )
        stop = await client.post(f"/v1/sessions/{tampered}/cancel", json={"turn_id": slow})
        assert stop.status_code == 202, stop.text
        assert await ended(stack, tampered, slow, position) == "turn_cancelled"
        last = (await stack.store.load(tampered))[-1]
        forged = Envelope(
            schema=SCHEMA_VERSION, session=tampered, version=last.version + 1, at=last.envelope.at,
            actor="agent:x", key="forged", prev="0" * 64, turn=turn, attempt=1,
            event=TextDelta(text="words nobody wrote"),
        )  # fmt: skip
        js = stack.store.nc.jetstream()
        subject = f"{stack.store.prefix}.{tampered}.text_delta"
        ack = await js.publish(subject, msgspec.json.encode(forged))
    return {
        "session": session,
        "toolCall": tool_call.position,
        "started": records[0].position,
        "tampered": tampered,
        "forged": ack.seq,
        "long": LONG,
    }


async def drive(node: str, env: dict[str, str]) -> dict[str, Any]:
    """Runs debug.mjs; what it printed last."""
    proc = await asyncio.create_subprocess_exec(
        node, str(HERE / "debug.mjs"), cwd=HERE, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 150)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"the browser script failed:\n{err.decode()}"
    result: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return result


async def test_the_debugger_replays_forks_diffs_and_checks_the_chain(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    chromium = await asyncio.to_thread(ensure_chromium)
    await asyncio.to_thread(ensure_node_modules)
    node = shutil.which("node")
    assert node is not None, "node is missing"
    shots = Path(os.environ.get("THREADLINE_WEB_SHOTS") or tmp_path / "shots")
    os.makedirs(shots, exist_ok=True)
    async with running_stack(nats_server.url, tmp_path / "data") as stack:
        made = await prepare(stack)
        env = {
            **os.environ,
            "GATEWAY_URL": stack.url,
            "TOKEN": stack.token,
            "CHROMIUM": str(chromium),
            "SHOTS": str(shots),
            "SCENARIO": json.dumps(made),
        }
        result = await drive(node, env)
        assert result["ok"]
        fork = await stack.store.load(result["fork"])
        print(f"screenshots: {shots}")
    # the fork the page made is a fork of the session at the version the page showed
    started = fork[0].event
    assert isinstance(started, SessionStarted) and started.forked_from is not None
    assert started.forked_from.session == made["session"]
    assert started.forked_from.version == result["forkVersion"]
    assert result["replayed"] == result["expected"] and len(result["expected"]) > 100
    assert len(result["growth"]) >= 4  # the text grew piece by piece
    for name in (
        "debugger-light.png",
        "debugger-dark.png",
        "debugger-phone.png",
        "debugger-diff.png",
    ):
        assert (shots / name).stat().st_size > 10_000


async def test_the_debugger_page_and_its_assets_are_served_like_the_chat(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    async with (
        running_stack(nats_server.url, tmp_path) as stack,
        httpx.AsyncClient(base_url=stack.url) as client,
    ):
        page = await client.get("/debug")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        scripts = ("debug.js", "debug-player.js", "debug-diff.js", "debug-live.js", "debug-turn.js")
        for path in [f"/web/{name}" for name in scripts] + ["/web/debug.css"]:
            asset = await client.get(path)
            assert asset.status_code == 200, path
            again = await client.get(path, headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304
        assert "/debug" not in (await client.get("/schema/openapi.json")).json()["paths"]


async def test_under_up_the_debugger_signs_in_by_itself(nats_server: EmbeddedNats) -> None:
    """A gateway handing out its dev token (``threadline up``'s): nothing to paste."""
    chromium = await asyncio.to_thread(ensure_chromium)
    await asyncio.to_thread(ensure_node_modules)
    node = shutil.which("node")
    assert node is not None, "node is missing"
    token = "dev-token-debugger"
    store = await JetStreamEventStore.connect(nats_server.url, fresh_stream(), heartbeat_s=0.5)
    app = create_app(Settings(tokens=f"{token}:dev"), store, dev_signin=token)
    try:
        async with serve_app(app) as url:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                session = (await client.post("/v1/sessions", json={"title": "mine"})).json()["id"]
            env = {
                **os.environ,
                "GATEWAY_URL": url,
                "TOKEN": token,
                "CHROMIUM": str(chromium),
                "MODE": "devsignin",
                "SCENARIO": json.dumps({"session": session}),
            }
            assert (await drive(node, env))["ok"]
    finally:
        await store.close()
