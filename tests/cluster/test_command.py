"""``threadline cluster`` as a user runs it: starts, prints what runs where, keeps the
token off the terminal, and leaves no process behind after SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (nats-servers, MCP servers...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for leftovers")
async def test_cluster_command_runs_prints_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("THREADLINE_TOKENS", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "cluster",
        "--data-dir", str(tmp_path), "--agents", "1", "--gateways", "1",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not lines or "Press Ctrl-C" not in lines[-1]:
                line = await proc.stdout.readline()
                assert line, "exited early:\n" + "".join(lines)
                lines.append(line.decode())
        out = "".join(lines)
        for name in ("nats-0", "nats-1", "nats-2", "agent-0", "projector", "gateway-0"):
            assert re.search(rf"^  {name} .*pid \d+", out, re.M), name
        assert "THREADLINE R3" in out and "sync_interval always" in out
        token = (tmp_path / "gateway-token").read_text().strip()
        assert token and token not in out
        assert (tmp_path / "gateway-token").stat().st_mode & 0o077 == 0
        gateway = re.search(r"gateway-0\s+(http://\S+)", out)
        assert gateway is not None
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
            assert (await client.get(f"{gateway.group(1)}/v1/sessions")).status_code == 200
        pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
        children = processes_mentioning(str(tmp_path))
        assert len(children) >= 4  # three nats-servers and the agent's MCP server
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await proc.stdout.read()
            code = await proc.wait()
    assert code == 0 and b"stopped." in rest
    assert not [pid for pid in pids if alive(pid)]
    assert not processes_mentioning(str(tmp_path))
