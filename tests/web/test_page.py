"""The chat page in a real browser: headless Chromium (playwright-core from Node) against a
real gateway, agent, MCP server and dev model (tests/web/drive.mjs; docs/web.md).

Signed in by the dev sign-in, then signed out: a rejected token is not kept, an accepted
one is. Two tabs on one session: a tool call sent from the first shows up live in both
(the streamed answer, the call with its arguments, the result), a long answer grows
piece by piece in the second, Stop in the second cancels the first's turn in both, a
retried provider error is told once in words and a failed turn in plain words with
Retry, which asks its question again; the event log lists every event with its position
and time, a step's deltas on one row; a reload rebuilds the same chat. Then markdown
(strong, highlighted code with Copy, a table, hostile HTML removed), a long streamed
answer kept in view and "jump to latest", edit-and-resend making a linked branch, tool
approvals in two tabs (approved in one: both lose the buttons; denied with a reason in
the other: the model is told; a late answer from a tab whose stream is held back: a quiet
note on the 409), and a
phone (no horizontal overflow, the box in view, one scroll area, an unknown chat
disabled). The gateway ends streams every 2.5 s, so resuming with Last-Event-ID is part
of it. Screenshots go to a temp folder (or ``THREADLINE_WEB_SHOTS``). Chromium and
playwright-core are installed on first use (tests/web/browser.py); if that is
impossible the test fails, saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import httpx

from tests.support.stack import running_stack
from tests.web.browser import HERE, ensure_chromium, ensure_node_modules
from threadline.services.runtime.natsserver import EmbeddedNats


async def test_page_headers_and_assets(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    async with (
        running_stack(nats_server.url, tmp_path) as stack,
        httpx.AsyncClient(base_url=stack.url) as client,
    ):
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        for directive in ("default-src 'none'", "script-src 'self'", "connect-src 'self'"):
            assert directive in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        for path, media in (("/web/app.js", "text/javascript"), ("/web/app.css", "text/css")):
            asset = await client.get(path)
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
            again = await client.get(path, headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
        assert (await client.get("/web/other.js")).status_code == 404
        assert (await client.get("/v1/sessions")).status_code == 401  # the API still needs a token
        schema = (await client.get("/schema/openapi.json")).json()
        assert "/" not in schema["paths"]


async def test_two_tabs_follow_one_session_live(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    chromium = await asyncio.to_thread(ensure_chromium)
    await asyncio.to_thread(ensure_node_modules)
    node = shutil.which("node")
    assert node is not None, "node is missing"
    shots = Path(os.environ.get("THREADLINE_WEB_SHOTS") or tmp_path / "shots")
    os.makedirs(shots, exist_ok=True)
    # streams end every 2.5 s: the page must resume with Last-Event-ID, losing nothing
    async with running_stack(
        nats_server.url, tmp_path / "data", max_stream_s=2.5, dev_signin=True
    ) as stack:
        env = {
            **os.environ,
            "GATEWAY_URL": stack.url,
            "TOKEN": stack.token,
            "CHROMIUM": str(chromium),
            "SHOTS": str(shots),
        }
        proc = await asyncio.create_subprocess_exec(
            node, str(HERE / "drive.mjs"), cwd=HERE, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 240)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode == 0, f"the browser script failed:\n{err.decode()}"
        result = json.loads(out.decode().splitlines()[-1])
        assert result["ok"]
        print(f"screenshots: {shots}")
        gaps = result["followGaps"]
        print(f"a 700-word answer streaming: {len(gaps)} samples, px out of view max {max(gaps)}")
        records = await stack.store.load(result["session"])
        forked = [r.kind for r in await stack.store.load(result["fork"])]
        approvals = await stack.store.load(result["approvalSession"])
    # the timeline is the log, position for position, across the reconnections
    assert result["timeline1"] == [r.position for r in records]
    assert result["reconnects"] >= 2
    kinds = [r.kind for r in records]
    assert kinds.count("turn_completed") == 4 and kinds.count("turn_cancelled") == 1
    assert kinds.count("turn_failed") == 2 and "fallback" in kinds
    assert _size(shots / "page.png") > 10_000 and _size(shots / "streaming.png") > 10_000
    assert _size(shots / "phone.png") > 10_000
    # the edit made a branch: the history before the edited message, then the edit
    assert forked.count("user_message") == 2 and forked.count("turn_completed") == 2
    # the page's decisions are the log's: two approvals, one denial with its reason
    decided = [
        (r.kind, getattr(r.event, "reason", None))
        for r in approvals
        if r.kind.startswith("approval_")
    ]
    assert decided == [
        ("approval_requested", None), ("approval_granted", ""),
        ("approval_requested", None), ("approval_denied", "not on prod"),
        ("approval_requested", None), ("approval_granted", ""),
        ("approval_requested", None),
    ]  # fmt: skip
    assert [r.kind for r in approvals].count("turn_completed") == 3
    assert [r.kind for r in approvals][-1] == "turn_cancelled"


def _size(path: Path) -> int:
    return path.stat().st_size
