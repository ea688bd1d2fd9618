"""Shared fixtures: one real nats-server per test session, on a free port, in a temp dir."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.support import figures, secret_scan
from threadline.base.config import StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.memory import MemoryEventStore
from threadline.events.store import EventStore
from threadline.services.runtime.natsserver import EmbeddedNats


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


def fresh_stream(**overrides: object) -> StreamSettings:
    """Settings for a stream no other test uses."""
    tag = uuid.uuid4().hex[:10]
    return StreamSettings(name=f"T{tag}", prefix=f"t{tag}", **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def js_store(nats_url: str) -> AsyncIterator[JetStreamEventStore]:
    store = await JetStreamEventStore.connect(nats_url, fresh_stream(), heartbeat_s=0.5)
    yield store
    await store.close()


@pytest.fixture(params=["memory", "jetstream"])
async def store(request: pytest.FixtureRequest, nats_url: str) -> AsyncIterator[EventStore]:
    """Every contract test runs against both adapters."""
    if request.param == "memory":
        yield MemoryEventStore()
        return
    js = await JetStreamEventStore.connect(nats_url, fresh_stream(), heartbeat_s=0.5)
    yield js
    await js.close()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- secrets
# Every log line of the session is scanned for configured secrets (tests/support/
# secret_scan.py): fake keys in the environment, a scanner on the root logger, and a
# failed run if any key shows up in a log line as the services would write it.


def pytest_configure(config: pytest.Config) -> None:
    secret_scan.install()


def pytest_runtest_setup(item: pytest.Item) -> None:
    secret_scan.reinstall()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if secret_scan.uninstall():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``figure("...")`` records a measured figure of this test (hardening, see
    docs/reliability.md); they are listed at the end of the run."""

    def record(line: str) -> None:
        figures.record(request.node.nodeid, line)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if figures.FIGURES:
        terminalreporter.section("hardening figures")
        for line in figures.lines():
            terminalreporter.write_line(line)
        figures.write_file()
    scan = secret_scan.handler()
    if scan is None:
        return
    terminalreporter.write_line(
        f"secret scan: {scan.lines} log lines, {len(scan.secrets)} secrets watched, "
        f"{len(scan.hits)} found"
    )
    if scan.hits:
        terminalreporter.section("secrets found in log lines", red=True)
        for hit in scan.hits[:50]:
            terminalreporter.write_line(f"{hit.logger}: {hit.key}: {hit.line}")
