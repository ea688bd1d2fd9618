"""Threadline service processes (agent, projector, gateway) run as children, and the
readiness helpers the local cluster needs (free ports, nats-server health).

Each runs in its own session and process group, dies with its parent (PDEATHSIG on
Linux), logs stdout and stderr to a file, and is ready once it prints its start-up line.
``kill()`` is ``kill -9`` of the whole group (the service and, e.g., its MCP server), as a
crashed container would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import httpx

from threadline.base.config import StreamSettings
from threadline.base.errors import StoreUnavailable
from threadline.services.runtime.natsserver import _die_with_parent

_POLL_S: Final = 0.1


def stop_event() -> asyncio.Event:
    """An event SIGINT (Ctrl-C) or SIGTERM sets: how a long-running command stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def service_env(
    base: Mapping[str, str], nats_url: str, stream: StreamSettings, data_dir: Path
) -> dict[str, str]:
    """The environment of a child service: ``base``, with the NATS server, the stream and
    the data dir it runs on."""
    return {
        **base,
        "THREADLINE_NATS_URL": nats_url,
        "THREADLINE_STREAM": stream.name,
        "THREADLINE_PREFIX": stream.prefix,
        "THREADLINE_MAX_EVENT_BYTES": str(stream.max_event_bytes),
        "THREADLINE_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
    }


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports nothing listens on right now (held open together)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


async def wait_healthy(monitor_urls: Sequence[str], timeout_s: float = 60.0) -> None:
    """Wait until every nats-server answers ``/healthz`` with 200: JetStream has a meta
    leader and the server's streams are current. The server offers no event for this,
    so this is bounded polling (start-up readiness only)."""
    pending = set(monitor_urls)
    async with httpx.AsyncClient(timeout=2.0) as client:
        try:
            async with asyncio.timeout(timeout_s):
                while pending:
                    for url in sorted(pending):
                        with contextlib.suppress(httpx.HTTPError):
                            if (await client.get(f"{url}/healthz")).status_code == 200:
                                pending.discard(url)
                    if pending:
                        await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise StoreUnavailable(
                f"JetStream cluster not healthy within {timeout_s} s: {sorted(pending)}"
            ) from None


async def stream_last_seq(client: httpx.AsyncClient, monitor_url: str, stream: str) -> int | None:
    """The last sequence of ``stream`` in this nats-server's own copy (``/jsz``), or None
    if the server does not answer or holds no copy."""
    try:
        resp = await client.get(f"{monitor_url}/jsz", params={"accounts": 1, "streams": 1})
        accounts = resp.json().get("account_details") or []
    except (httpx.HTTPError, ValueError):
        return None
    for account in accounts:
        for detail in account.get("stream_detail") or []:
            if detail.get("name") == stream:
                return int(detail["state"]["last_seq"])
    return None


class ServiceProcess:
    """``python -m <module> <args>`` with ``env``; ready when stdout matches ``ready``."""

    def __init__(
        self,
        name: str,
        module: str,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        ready: str,
        *,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.module = module
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.ready = re.compile(ready)
        self.startup_timeout_s = startup_timeout_s
        self.process: asyncio.subprocess.Process | None = None
        self.ready_line = ""
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> str:
        """Start and wait for the ready line; returns it (it may carry the service's URL)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, *self.args,
                env=self.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=log,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                start_new_session=True,
            )  # fmt: skip
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                self.ready_line = await self._wait_ready()
        except (TimeoutError, StoreUnavailable) as exc:
            await self.kill()
            reason = "did not start in time" if isinstance(exc, TimeoutError) else str(exc)
            raise StoreUnavailable(f"{self.name} {reason} (log: {self.log_path})") from None
        self._drain = asyncio.create_task(self._copy_output())
        return self.ready_line

    async def _wait_ready(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        with self.log_path.open("ab") as log:
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise StoreUnavailable("exited during start-up")
                log.write(line)
                text = line.decode(errors="replace")
                if self.ready.search(text):
                    return text.strip()

    async def _copy_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        with self.log_path.open("ab") as log:
            while line := await self.process.stdout.readline():
                log.write(line)
                log.flush()

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the service and everything it started, synchronously (e.g. ``SIGKILL``
        at an exact moment; ``kill`` reaps it afterwards)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    async def kill(self) -> None:
        """``kill -9`` the service and everything it started; wait for it to be gone."""
        if self.process is None:
            return
        self.signal_group(signal.SIGKILL)
        await self._reap()

    async def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (the service stops cleanly), SIGKILL after ``timeout_s``; then make sure
        nothing it started is left."""
        proc = self.process
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await proc.wait()
            except TimeoutError:
                pass
        self.signal_group(signal.SIGKILL)  # leftovers (e.g. an MCP server), or a hung one
        await self._reap()

    async def _reap(self) -> None:
        assert self.process is not None
        await self.process.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):  # the pipe closes once the group is gone
                    await self._drain
            self._drain = None
        self.process = None
