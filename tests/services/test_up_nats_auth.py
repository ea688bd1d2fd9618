"""``threadline up``'s embedded nats-server is not an open door: it admits only the users
whose passwords ``up`` keeps in the data dir (owner-only), its services cannot change,
delete or purge the stream, and a stream changed behind Threadline's back (an admin
setting ``max_msgs=20, discard=old``) fails ``/readyz`` and stops the next start."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from nats.js.api import DiscardPolicy

from tests.services.test_up import start_up
from threadline.services.runtime.natsauth import CREDENTIALS_FILE, service_url

SERVICES = ("agent", "gateway", "projector", "checkpointer")


async def _errors_of(url: str) -> tuple[nats.NATS, list[str]]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False, connect_timeout=5)
    return nc, errors


async def _refused(url: str, user: str = "", password: str = "") -> str:
    """What the server answers a client that connects to ``url`` (as ``user``, else with
    no credentials) and pings: the NATS protocol on a plain socket (nats-py leaves the
    socket of a refused connection open)."""
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert (await reader.readline()).startswith(b"INFO ")
        connect = {"verbose": False, "pedantic": False, "protocol": 1}
        if user:
            connect |= {"user": user, "pass": password}
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        return (await reader.readline()).decode()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_up_admits_its_users_only_and_they_cannot_change_the_stream(
    tmp_path: Path,
) -> None:
    proc, _ = await start_up(tmp_path, "--agents", "1")
    try:
        creds = tmp_path / CREDENTIALS_FILE
        assert creds.stat().st_mode & 0o077 == 0
        passwords = json.loads(creds.read_text())
        assert set(passwords) == {"admin", *SERVICES}
        runtime = json.loads((tmp_path / "runtime.json").read_text())
        url = runtime["nats_url"]
        assert (await _refused(url)).lower() == "-err 'authorization violation'\r\n"
        wrong = await _refused(url, "gateway", "wrong")
        assert wrong.lower() == "-err 'authorization violation'\r\n"
        assert (await _refused(url, "gateway", passwords["gateway"])) == "PONG\r\n"

        for user in SERVICES:
            nc, errors = await _errors_of(service_url(url, tmp_path, user))
            js = nc.jetstream()
            info = await js.stream_info("THREADLINE")  # reading is allowed
            info.config.max_msgs = 20
            for call in (
                js.update_stream(info.config),
                js.purge_stream("THREADLINE"),
                js.delete_stream("THREADLINE"),
            ):
                with pytest.raises(nats.errors.TimeoutError):  # no answer: refused
                    await call
            await nc.close()
            for op in ("UPDATE", "PURGE", "DELETE"):
                wanted = f'permissions violation for publish to "$js.api.stream.{op.lower()}'
                assert any(wanted in e.lower() for e in errors), (user, errors)
        # the checkpointer appends checkpoints and nothing else: no session's event
        nc, errors = await _errors_of(service_url(url, tmp_path, "checkpointer"))
        with pytest.raises(nats.errors.TimeoutError):  # no answer: refused
            await nc.jetstream().publish("tl.s1.user_message", b"{}", timeout=2)
        await nc.close()
        wanted = 'permissions violation for publish to "tl.s1.user_message"'
        assert any(wanted in e.lower() for e in errors), errors
        # the gateway publishes what the command layer writes (a fork copies every kind)
        # but never a checkpoint
        nc, errors = await _errors_of(service_url(url, tmp_path, "gateway"))
        with pytest.raises(nats.errors.TimeoutError):  # no answer: refused
            await nc.jetstream().publish("tl._log.checkpoint", b"{}", timeout=2)
        ack = await nc.jetstream().publish("tl.s1.turn_started", b"{}", timeout=5)
        assert ack.seq > 0
        await nc.close()
        wanted = 'permissions violation for publish to "tl._log.checkpoint"'
        assert any(wanted in e.lower() for e in errors), errors
        admin = await nats.connect(service_url(url, tmp_path, "admin"))
        assert (await admin.jetstream().stream_info("THREADLINE")).config.max_msgs == -1
        await admin.close()
        # a CLI command on the data dir connects with the credentials kept there (the
        # checkpoint command as the checkpointer, which may append the checkpoint)
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "threadline.services.cli", "checkpoint",
            "--data-dir", str(tmp_path), stdout=PIPE, stderr=STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, out.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)


async def test_a_changed_stream_fails_readiness_and_the_next_start(tmp_path: Path) -> None:
    proc, _ = await start_up(tmp_path, "--agents", "1")
    try:
        runtime = json.loads((tmp_path / "runtime.json").read_text())
        async with httpx.AsyncClient(base_url=runtime["gateway_url"]) as client:
            assert (await client.get("/readyz")).status_code == 200
            admin = await nats.connect(service_url(runtime["nats_url"], tmp_path, "admin"))
            js = admin.jetstream()
            config = (await js.stream_info("THREADLINE")).config
            config.max_msgs, config.discard = 20, DiscardPolicy.OLD
            await js.update_stream(config)  # the admin can; the erasing update
            await admin.close()
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        reason = ready.json()["checks"]["stream_config"]
        assert "max_msgs is 20" in reason and "discard" in reason, reason
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 60)

    proc, out = await start_up(tmp_path, "--agents", "1")  # the startup check refuses
    async with asyncio.timeout(60):
        out += (await proc.stdout.read()).decode() if proc.stdout else ""
        await proc.wait()
    assert proc.returncode == 2, out
    assert "Threadline is running." not in out
    assert "max_msgs is 20" in out and "Traceback" not in out, out
