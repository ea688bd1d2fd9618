"""Processes the peers run as: any command as a child in its own process group that dies
with the benchmark, is ready once its output matches a pattern and is stopped with its
whole group; a throwaway ``redis-server``."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from bench.common import progress
from threadline.services.runtime.processes import free_ports

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """``argv`` run in ``cwd`` with ``env``; stdout and stderr go to ``log_path``; ready
    when a line of its output matches ``ready`` (:meth:`start` returns that line)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        ready: str,
        cwd: Path | None = None,
        startup_timeout_s: float = 180.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.ready = re.compile(ready)
        self.cwd = cwd
        self.startup_timeout_s = startup_timeout_s
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    async def start(self) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *self.argv, env=self.env, cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            start_new_session=True,
        )  # fmt: skip
        log = self.log_path.open("ab")
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                line = await self._wait_ready(log)
        except BaseException:
            log.close()
            await self.stop()
            tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
            print("\n".join(f"    {self.name}: {t}" for t in tail), file=sys.stderr)
            raise
        assert self.process.stdout is not None
        self._drain = asyncio.create_task(_copy(self.process.stdout, log))
        return line

    async def _wait_ready(self, log: io.BufferedWriter) -> str:
        assert self.process is not None and self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited during start-up (log: {self.log_path})")
            log.write(line)
            if self.ready.search(text := line.decode(errors="replace")):
                return text.strip()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM to the group, SIGKILL after ``timeout_s``; reaped."""
        proc, self.process = self.process, None
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await proc.wait()
                    break
        if self._drain is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(5):
                    await self._drain
            self._drain = None


async def _copy(output: asyncio.StreamReader, log: io.BufferedWriter) -> None:
    try:
        while line := await output.readline():
            log.write(line)
            log.flush()
    finally:
        log.close()


@contextlib.asynccontextmanager
async def running(child: Child) -> AsyncIterator[str]:
    """The child started (its ready line), stopped on leaving."""
    try:
        yield await child.start()
    finally:
        await child.stop()


# --------------------------------------------------------------------------- Redis


@contextlib.asynccontextmanager
async def redis_server(root: Path) -> AsyncIterator[tuple[str, int | None]]:
    """A throwaway ``redis-server`` (as installed: default settings, its files under
    ``root``) on a free port: (URL, pid). Without the binary, the machine's Redis at
    ``REDIS_URL`` or 127.0.0.1:6379, whose CPU is not measured (pid None)."""
    binary = shutil.which("redis-server")
    if binary is None:
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
        progress(f"no redis-server binary: using {url}, its CPU not measured")
        yield url, None
        return
    (port,) = free_ports(1)
    child = _redis(binary, port, root)
    async with running(child):
        yield f"redis://127.0.0.1:{port}", child.pid


def _redis(binary: str, port: int, root: Path) -> Child:
    root.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    return Child(
        "redis", argv, env=os.environ, log_path=root / "redis.log",
        ready=r"[Rr]eady to accept connections",
    )  # fmt: skip
