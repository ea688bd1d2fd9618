"""``threadline up`` end to end: starts, prints where things are, keeps data, stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted
from threadline.events.store import NewEvent


async def start_up(data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "up", "--data-dir", str(data_dir),
        "--port", "0", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = []
    async with asyncio.timeout(60):
        while line := (await proc.stdout.readline()).decode():
            banner.append(line)
            if "Press Ctrl-C" in line:
                break
    return proc, "".join(banner)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def test_up_runs_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    proc, banner = await start_up(tmp_path)
    assert "Threadline is running." in banner and "NATS (event log)" in banner
    runtime = json.loads((tmp_path / "runtime.json").read_text())
    assert runtime["nats_url"] in banner
    store = await JetStreamEventStore.connect(runtime["nats_url"])
    await store.append("kept", NewEvent(event=SessionStarted(owner="me")))
    await store.close()

    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert "stopped." in out.decode()
    assert not pid_alive(runtime["nats_pid"])
    assert not (tmp_path / "runtime.json").exists()

    proc, _ = await start_up(tmp_path)  # same data dir: the event is still there
    runtime = json.loads((tmp_path / "runtime.json").read_text())
    store = await JetStreamEventStore.connect(runtime["nats_url"])
    assert [r.event for r in await store.load("kept")] == [SessionStarted(owner="me")]
    await store.close()
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


async def test_killing_up_leaves_no_orphaned_nats_server(tmp_path: Path) -> None:
    proc, _ = await start_up(tmp_path)
    nats_pid = json.loads((tmp_path / "runtime.json").read_text())["nats_pid"]
    pidfd = os.pidfd_open(nats_pid)  # readable once that process has exited
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, exited.set)
    try:
        proc.kill()
        await proc.wait()
        await asyncio.wait_for(exited.wait(), 15)
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    assert not pid_alive(nats_pid)
