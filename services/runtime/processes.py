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
import ctypes
import os
import re
import signal
import socket
import sys
from asyncio.subprocess import PIPE
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import httpx

from threadline.base.config import StreamSettings
from threadline.base.errors import StoreUnavailable

_POLL_S: Final = 0.1
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM the child if Threadline dies (no orphaned processes)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


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


class Child:
    """A child process in its own session and process group (a terminal's Ctrl-C reaches
    us, and we stop it in order) that dies with this one (PDEATHSIG on Linux). It is
    ready once :meth:`_ready` accepts a line of its piped output (stdout, else stderr);
    the rest of that output goes to :meth:`_output`."""

    name = "child"
    hint = ""  # said after a start-up failure (e.g. where its log is)
    process: asyncio.subprocess.Process | None = None
    _drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def _launch(self, args: Sequence[str], timeout_s: float, **io: Any) -> str:
        """Start ``args``; return what :meth:`_ready` returned (the child is stopped if it
        does not get there within ``timeout_s``)."""
        self.process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            start_new_session=True, **io,
        )  # fmt: skip
        output = self.process.stdout or self.process.stderr
        assert output is not None
        try:
            async with asyncio.timeout(timeout_s):
                while not (ready := self._ready(await output.readline())):
                    pass
        except BaseException as exc:  # it exited (a busy port...), or took too long
            await self.stop(kill=True)
            if isinstance(exc, TimeoutError):
                raise StoreUnavailable(f"{self.name} did not start in time{self.hint}") from None
            raise
        self._drain = asyncio.create_task(self._copy(output))
        return ready

    def _ready(self, line: bytes) -> str:
        """What the start-up line says ("" while it has not come); raise at the end of
        the output (``b""``)."""
        raise NotImplementedError

    def _output(self, line: bytes) -> None:
        """A line of output after start-up."""

    async def _copy(self, output: asyncio.StreamReader) -> None:
        while line := await output.readline():
            self._output(line)

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the child and everything it started, synchronously (e.g. ``SIGKILL``
        at an exact moment; :meth:`stop` reaps it afterwards)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    async def stop(self, *, kill: bool = False, timeout_s: float = 15.0) -> None:
        """SIGTERM (the child stops cleanly; SIGKILL after ``timeout_s``), or ``kill -9``
        at once with ``kill``; then kill whatever is left of its group (e.g. an MCP
        server) and wait for the child and the end of its output."""
        proc = self.process
        if proc is None:
            return
        if kill:
            self.signal_group(signal.SIGKILL)
        elif proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await proc.wait()
        self.signal_group(signal.SIGKILL)  # leftovers, or a hung child
        await proc.wait()
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):  # the pipe closes once the group is gone
                    await self._drain
            self._drain = None
        self.process = None


class ServiceProcess(Child):
    """``python -m <module> <args>`` with ``env``; ready when stdout matches ``ready``.
    Its stdout and stderr go to ``log_path``."""

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
        self.hint = f" (log: {log_path})"
        self.ready = re.compile(ready)
        self.startup_timeout_s = startup_timeout_s
        self.ready_line = ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> str:
        """Start and wait for the ready line; returns it (it may carry the service's URL)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            args = [sys.executable, "-m", self.module, *self.args]
            self.ready_line = await self._launch(
                args, self.startup_timeout_s, env=self.env, stdout=PIPE, stderr=log
            )
        return self.ready_line

    def _ready(self, line: bytes) -> str:
        if not line:
            raise StoreUnavailable(f"{self.name} exited during start-up{self.hint}")
        self._output(line)
        text = line.decode(errors="replace")
        return text.strip() if self.ready.search(text) else ""

    def _output(self, line: bytes) -> None:
        with self.log_path.open("ab") as log:
            log.write(line)
