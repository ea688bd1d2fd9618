"""Observability tests: a real agent (dev model, bundled MCP server, nats-server) whose
metrics go to a registry of the test's own and whose spans go to OpenTelemetry's
``InMemorySpanExporter``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from threadline.base.config import Settings
from threadline.base.metrics import Registry
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TERMINAL_KINDS, SessionStarted, UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.services.agent.telemetry import AgentTelemetry
from threadline.services.devmodel import DevModelSettings, serve


class RootsEnded(SpanProcessor):
    """Counts ended root spans (a turn's span ends just after its terminal event)."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Event()

    def on_end(self, span: ReadableSpan) -> None:
        if span.parent is None:
            self.count += 1
            self.changed.set()


@dataclass
class Spans:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    roots: RootsEnded

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    async def ended(self, roots: int, wait_s: float = 10) -> list[ReadableSpan]:
        """The finished spans, once ``roots`` root spans have ended."""
        async with asyncio.timeout(wait_s):
            while self.roots.count < roots:
                self.roots.changed.clear()
                await self.roots.changed.wait()
        return self.finished()


@pytest.fixture
def spans() -> Iterator[Spans]:
    exporter = InMemorySpanExporter()
    roots = RootsEnded()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(roots)
    yield Spans(provider, exporter, roots)
    provider.shutdown()


@pytest.fixture
def telemetry(spans: Spans) -> AgentTelemetry:
    return AgentTelemetry(Registry(), spans.provider.get_tracer("tests"))


@pytest.fixture
async def devmodel_url() -> AsyncIterator[str]:
    async with serve(DevModelSettings.fast()) as url:
        yield url


def with_mcp(data_dir: str) -> Settings:
    """Settings whose ``threadline`` MCP server is the bundled one, with its test tools."""
    server: dict[str, object] = {
        "transport": "stdio",
        "command": [sys.executable, "-m", "threadline.services.mcpserver"],
        "call_timeout_s": 5,
    }
    return Settings(data_dir=data_dir, mcp_servers={"threadline": server})


async def start_session(
    store: JetStreamEventStore, session: str, *, provider: str = "dev", tools: bool = True
) -> None:
    event = SessionStarted(
        owner="alice", provider=provider, tool_servers=("threadline",) if tools else ()
    )
    await store.append(session, NewEvent(event=event), expected_version=0)


async def run_turn(
    store: JetStreamEventStore, session: str, text: str, turn: str, wait_s: float = 30
) -> list[Recorded]:
    """Post ``text`` as ``turn`` and return the turn's events up to its terminal one."""
    await store.append(session, NewEvent(event=UserMessage(text=text), turn=turn))
    out: list[Recorded] = []
    async with asyncio.timeout(wait_s):
        async for rec in store.follow(session):
            if rec.turn == turn and rec.kind != "user_message":
                out.append(rec)
                if rec.kind in TERMINAL_KINDS:
                    return out
    raise AssertionError("unreachable")
