"""MCP servers others wrote, installed on first use into ``tests/mcp/servers`` (gitignored).

* npm: ``@modelcontextprotocol/server-everything`` and ``server-memory``, with ``npm ci``
  from the committed lock file;
* PyPI: the MCP Python SDK 1.x (for ``servers/sdk1_server.py``) and ``mcp-server-time``,
  each in a virtual environment of its own (the suite itself runs the SDK 2.x).

Tests using them are skipped only when the package registry cannot be reached.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

SERVERS = Path(__file__).resolve().parent / "servers"
SDK1_SERVER = SERVERS / "sdk1_server.py"
SDK1_REQUIREMENT = "mcp==1.30.0"
TIME_REQUIREMENT = "mcp-server-time==2026.10.19"
INSTALL_TIMEOUT_S = 600
READY_TIMEOUT_S = 30
_UNREACHABLE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH|Failed to establish a new connection"
    r"|Temporary failure in name resolution|Network is unreachable"
)


async def _run(*command: str | Path, cwd: Path = SERVERS) -> None:
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(INSTALL_TIMEOUT_S):
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        text = out.decode(errors="replace")
        if _UNREACHABLE.search(text):
            pytest.skip(f"the package registry is unreachable: {' '.join(map(str, command))}")
        pytest.fail(f"{' '.join(map(str, command))} failed:\n{text}", pytrace=False)


@pytest_asyncio.fixture(scope="session")
async def npm_bin() -> Path:
    """``node_modules/.bin`` with the npm servers installed."""
    bin_dir = SERVERS / "node_modules" / ".bin"
    if not (bin_dir / "mcp-server-everything").exists():
        await _run("npm", "ci", "--no-audit", "--no-fund")
    return bin_dir


async def _venv(name: str, requirement: str) -> Path:
    """``servers/.venv-<name>/bin`` with ``requirement`` installed."""
    venv = SERVERS / f".venv-{name}"
    marker = venv / "installed.txt"
    if not marker.exists() or marker.read_text() != requirement:
        await _run(sys.executable, "-m", "venv", "--clear", venv)
        pip = (venv / "bin" / "python", "-m", "pip", "install", "-q")
        await _run(*pip, "--disable-pip-version-check", requirement)
        marker.write_text(requirement)
    return venv / "bin"


@pytest_asyncio.fixture(scope="session")
async def sdk1_python() -> str:
    """A Python with the MCP Python SDK 1.x installed."""
    return str(await _venv("sdk1", SDK1_REQUIREMENT) / "python")


@pytest_asyncio.fixture(scope="session")
async def time_server() -> str:
    """The ``mcp-server-time`` command (PyPI)."""
    return str(await _venv("time", TIME_REQUIREMENT) / "mcp-server-time")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class HttpProcess:
    url: str
    process: asyncio.subprocess.Process


@asynccontextmanager
async def run_http(
    command: Sequence[str | Path], port: int, ready: str, *, env: dict[str, str] | None = None
) -> AsyncIterator[HttpProcess]:
    """Run an HTTP MCP server on ``port`` (at ``/mcp``), ready once its stderr shows the
    ``ready`` line; stopped on exit."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while ready not in (line := (await process.stderr.readline()).decode()):
                assert line, "the server exited before it was ready"
        drain = asyncio.create_task(process.stderr.read())
        yield HttpProcess(url=f"http://127.0.0.1:{port}/mcp", process=process)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
        if drain is not None:
            await drain
