"""``threadline up`` end to end: starts, prints where things are, keeps data, stops cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS, SessionStarted, TurnStarted
from threadline.events.store import NewEvent, Recorded
from threadline.services.cli.stack import PROVIDER_KEY_VARS
from threadline.services.runtime.natsauth import service_url


async def start_up(
    data_dir: Path, *args: str, cwd: Path | None = None
) -> tuple[asyncio.subprocess.Process, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    env = {k: v for k, v in env.items() if k not in PROVIDER_KEY_VARS}  # the dev model
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "up", "--data-dir", str(data_dir),
        "--port", "0", *args,
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = []
    async with asyncio.timeout(60):
        while line := (await proc.stdout.readline()).decode():
            banner.append(line)
            if "Press Ctrl-C" in line:
                break
    return proc, "".join(banner)


async def run_cli(data_dir: Path, *args: str) -> tuple[int, str]:
    """A ``threadline`` command on ``up``'s data dir: its exit code and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", *args, "--data-dir", str(data_dir),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def as_gateway(data_dir: Path) -> str:
    """``up``'s NATS URL with its gateway user's credentials (kept in the data dir)."""
    runtime = json.loads((data_dir / "runtime.json").read_text())
    return service_url(runtime["nats_url"], data_dir, "gateway")


def agent_pids(data_dir: Path) -> list[int]:
    runtime = json.loads((data_dir / "runtime.json").read_text())
    return [int(pid) for pid in runtime["agent_pids"].split(",")]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


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
    token = (tmp_path / "dev-token").read_text().strip()  # made on first start, owner only
    assert len(token) >= 32 and (tmp_path / "dev-token").stat().st_mode & 0o077 == 0
    assert f"dev token          {token}  (owner 'dev', kept in {tmp_path / 'dev-token'}" in banner
    cli = Path(sys.executable).parent / "threadline"  # named so that it runs from here
    on_path = shutil.which("threadline") == str(cli)
    shown = "threadline" if on_path else cli.relative_to(Path.cwd())
    assert f"{shown} chat --data-dir {tmp_path}\n" in banner
    agents = agent_pids(tmp_path)
    assert len(agents) == len(os.sched_getaffinity(0))  # one agent process per core
    store = await JetStreamEventStore.connect(as_gateway(tmp_path))
    await store.append("kept", NewEvent(event=SessionStarted(owner="me")))
    await store.close()

    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode()
    assert "stopped." in out.decode()
    assert not pid_alive(runtime["nats_pid"])
    assert not any(pid_alive(pid) for pid in agents)
    assert not (tmp_path / "runtime.json").exists()

    proc, banner = await start_up(tmp_path)  # same data dir: the event is still there
    runtime = json.loads((tmp_path / "runtime.json").read_text())
    store = await JetStreamEventStore.connect(as_gateway(tmp_path))
    assert [r.event for r in await store.load("kept")] == [SessionStarted(owner="me")]
    await store.close()
    assert f"dev token          {token}  " in banner  # the same token: pasted ones still work
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=runtime["gateway_url"], headers=headers) as client:
        assert (await client.get("/v1/sessions")).status_code == 200
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.wait(), 30)
    assert proc.returncode == 0


async def test_killing_up_leaves_no_orphaned_nats_server_or_agents(tmp_path: Path) -> None:
    proc, _ = await start_up(tmp_path)
    nats_pid = json.loads((tmp_path / "runtime.json").read_text())["nats_pid"]
    children = [nats_pid, *agent_pids(tmp_path)]
    pidfds = [os.pidfd_open(pid) for pid in children]  # readable once that process exited
    loop = asyncio.get_running_loop()
    exits = [asyncio.Event() for _ in pidfds]
    for pidfd, exited in zip(pidfds, exits, strict=True):
        loop.add_reader(pidfd, exited.set)
    try:
        proc.kill()
        await proc.wait()
        async with asyncio.timeout(15):
            for exited in exits:
                await exited.wait()
    finally:
        for pidfd in pidfds:
            loop.remove_reader(pidfd)
            os.close(pidfd)
    assert not any(pid_alive(pid) for pid in children)


async def test_up_runs_the_agent_processes_asked_for_and_they_answer(tmp_path: Path) -> None:
    proc, banner = await start_up(tmp_path, "--agents", "3")
    runtime = json.loads((tmp_path / "runtime.json").read_text())
    agents = agent_pids(tmp_path)
    assert len(set(agents)) == 3
    assert all(pid_alive(pid) and parent_of(pid) == proc.pid for pid in agents)
    assert "3 worker processes" in banner and all(f"pid {pid}" in banner for pid in agents)
    headers = {"Authorization": f"Bearer {(tmp_path / 'dev-token').read_text().strip()}"}
    store = await JetStreamEventStore.connect(as_gateway(tmp_path))
    async with httpx.AsyncClient(base_url=runtime["gateway_url"], headers=headers) as client:
        session = (await client.post("/v1/sessions", json={})).json()["id"]
        posted = await client.post(f"/v1/sessions/{session}/messages", json={"text": "hi"})
        assert posted.status_code == 202, posted.text
        async with asyncio.timeout(60):
            events = [rec async for rec in _until_terminal(store, session)]
    await store.close()
    assert events[-1].kind == "turn_completed"
    [started] = [r.event for r in events if isinstance(r.event, TurnStarted)]
    assert int(started.worker.rsplit("-", 1)[1]) in agents  # answered by one of them

    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    assert not any(pid_alive(pid) for pid in agents)


async def _until_terminal(store: JetStreamEventStore, session: str) -> AsyncIterator[Recorded]:
    async for rec in store.follow(session):
        yield rec
        if rec.kind in TERMINAL_KINDS:
            return


@pytest.mark.parametrize("option", ["--port", "--nats-port"])
async def test_up_on_a_busy_port_names_the_port_and_the_option(tmp_path: Path, option: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, out = await start_up(tmp_path, "--agents", "1", option, str(port))
        async with asyncio.timeout(60):
            out += (await proc.stdout.read()).decode() if proc.stdout else ""
            await proc.wait()
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    message = f"port {port} on 127.0.0.1 is already in use"
    assert (
        f"threadline: {message} (is Threadline already running?); choose another with {option}\n"
        in out
    )
