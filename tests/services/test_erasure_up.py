"""Erasure on a real ``threadline up`` (issue 14 item 4): an owner's marker text is in
the data dir before ``threadline erase`` (the projections hold the title) and in no byte
of it afterwards, while every read shows ``[erased]`` and the session still verifies;
a rebuild of the views keeps it erased. The admin route erases too, for admins only."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx

from tests.services.test_up import run_cli as threadline
from tests.services.test_up import start_up
from threadline.events.sealing import ERASED

MARKER = "okapi-marmalade-5519"


def files_holding(root: Path, needle: bytes) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:  # gone meanwhile (a temporary file)
                continue
    return found


async def one_turn(client: httpx.AsyncClient, session: str, text: str) -> None:
    """Post a message and read the session's events until its turn has ended."""
    posted = await client.post(f"/v1/sessions/{session}/messages", json={"text": text})
    assert posted.status_code == 202, posted.text
    async with client.stream("GET", f"/v1/sessions/{session}/events") as events:
        async for line in events.aiter_lines():
            if any(kind in line for kind in ("turn_completed", "turn_failed")):
                return


async def test_erase_leaves_no_byte_of_the_owner_in_the_data_dir(tmp_path: Path) -> None:
    proc, _ = await start_up(tmp_path, "--agents", "1")
    try:
        runtime = json.loads((tmp_path / "runtime.json").read_text())
        token = (tmp_path / "dev-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=runtime["gateway_url"], headers=headers, timeout=60
        ) as client:
            created = await client.post("/v1/sessions", json={"title": f"trip {MARKER}"})
            assert created.status_code == 201, created.text
            session = created.json()["id"]
            await one_turn(client, session, f"repeat after me: {MARKER}")
            shown = (await client.get(f"/v1/sessions/{session}")).json()
            assert shown["title"] == f"trip {MARKER}"
            assert shown["messages"][0]["text"] == f"repeat after me: {MARKER}"
            position = shown["version"]
            listed = await client.get(
                "/v1/sessions", params={"wait_for": created.json()["position"]}
            )
            assert listed.json()["sessions"][0]["title"] == f"trip {MARKER}"

            holding = files_holding(tmp_path, MARKER.encode())
            # the log, its snapshots and the directory hold it sealed; the views in clear
            assert holding and all(f.startswith("projections.sqlite3") for f in holding), holding

            code, out = await threadline(tmp_path, "erase", "--owner", "dev")
            assert code == 0, out
            erased_at = int(out.split("at position ")[1].split(";")[0])
            assert "dev" not in out.split("\n", 1)[1].split("erasure record")[0]  # ids only

            listed = await client.get("/v1/sessions", params={"wait_for": erased_at})
            assert listed.status_code == 200, listed.text
            assert listed.json()["sessions"][0]["title"] == ERASED
            shown = (await client.get(f"/v1/sessions/{session}")).json()
            assert shown["title"] == ERASED and shown["version"] == position
            assert {m["text"] for m in shown["messages"] if m["text"]} == {ERASED}
            exported = (await client.get(f"/v1/sessions/{session}/export")).text
            assert MARKER not in exported

            code, out = await threadline(tmp_path, "verify", session)
            assert code == 0, out
            assert files_holding(tmp_path, MARKER.encode()) == []

            code, out = await threadline(tmp_path, "replay", session)
            assert code == 0 and MARKER not in out and ERASED in out, out

            code, out = await threadline(tmp_path, "projections", "rebuild")
            assert code == 0, out
            listed = await client.get("/v1/sessions")
            assert listed.json()["sessions"][0]["title"] == ERASED
            assert files_holding(tmp_path, MARKER.encode()) == []

            # the owner carries on: new content, a new key, readable
            await one_turn(client, session, "and now?")
            shown = (await client.get(f"/v1/sessions/{session}")).json()
            assert "and now?" in [m["text"] for m in shown["messages"]]

            # the admin route: the dev token is no admin's
            refused = await client.post("/v1/admin/erasures", json={"owner": "dev"})
            assert refused.status_code == 403, refused.text
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)
