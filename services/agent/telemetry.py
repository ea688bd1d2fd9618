"""The agent's metrics and traces (docs/observability.md).

:class:`AgentTelemetry` holds one process's instruments and tracer; each attempt at a
turn gets a :class:`TurnTelemetry` that the turn calls at its edges: the attempt as a
whole (span ``invoke_agent threadline``), each model request (span ``chat {model}``),
each tool call (span ``execute_tool {tool}``), and every event the attempt appends
(fallbacks and the terminal event). Spans follow the OpenTelemetry GenAI semantic
conventions and carry names, ids, token counts and redacted errors, never message
text, tool arguments or results. Metric labels are provider, model, MCP server and
tool names (tools only as offered to the model; anything else is ``unknown``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Final, Protocol, get_args
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from threadline.base.errors import ThreadlineError
from threadline.base.metrics import Registry, default_registry
from threadline.base.redact import redact
from threadline.events import schema as ev
from threadline.events.fold import SessionState
from threadline.events.turns import TERMINAL, ended_status
from threadline.events.workqueue import WorkQueue
from threadline.services.agent.providers import ModelRequest, ProviderError, ProviderRegistry
from threadline.services.agent.step import StepOutcome
from threadline.services.agent.tools import ToolOutcome, split_prefixed

__all__ = ["AgentTelemetry", "ObservedTurn", "TurnTelemetry"]

AGENT_NAME: Final = "threadline"
P: Final = "threadline_agent"
#: our provider names -> the GenAI conventions' well-known ``gen_ai.provider.name`` values
_GENAI_PROVIDER: Final = {"gemini": "gcp.gemini"}


def _error(span: Span, kind: str, message: str) -> None:
    """Mark ``span`` failed with a typed kind and a redacted message (never a traceback).
    (A span that is not recording ignores attributes: setting them needs no check.)"""
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, redact(message)[:500]))


def _kind(exc: BaseException) -> str:
    return "cancelled" if isinstance(exc, asyncio.CancelledError) else type(exc).__name__


class ObservedTurn(Protocol):
    """What telemetry reads of an attempt (``turn.Turn``; provider and model change on
    a fallback), so that this module does not import the turn."""

    state: SessionState
    turn_id: str
    attempt: int
    provider: str
    model: str


class AgentTelemetry:
    """The instruments (in ``registry``, default the process's) and the tracer (default
    the process's, a no-op unless tracing is configured) of one agent process. Metric
    labels are names, fallback kinds, outcomes and error kinds: never session ids,
    owners, text or keys."""

    def __init__(self, registry: Registry | None = None, tracer: trace.Tracer | None = None):
        self.tracer = tracer or trace.get_tracer("threadline.agent")
        reg = self.registry = registry or default_registry()
        model = ("provider", "model")
        self.turn_duration = reg.histogram(
            f"{P}_turn_duration_seconds",
            "Duration of completed turns (turn_started to turn_completed), by final provider.",
            model,
        )
        self.ttft = reg.histogram(
            f"{P}_time_to_first_token_seconds",
            "Time from turn_started to the first output of completed turns.",
            model,
        )
        self.tokens = reg.counter(
            f"{P}_tokens_total", "Tokens reported by providers, by type (input, output).",
            (*model, "type"),
        )  # fmt: skip
        self.requests = reg.counter(
            f"{P}_provider_requests_total",
            "Model requests by outcome: ok, or the typed error kind (rate_limit, auth, ...).",
            (*model, "outcome"),
        )
        self.tool_duration = reg.histogram(
            f"{P}_tool_call_duration_seconds", "Duration of MCP tool calls.", ("server", "tool")
        )
        self.tool_calls = reg.counter(
            f"{P}_tool_calls_total", "MCP tool calls by outcome (ok, error).",
            ("server", "tool", "outcome"),
        )  # fmt: skip
        self.fallbacks = reg.counter(f"{P}_fallbacks_total", "Fallback events by kind.", ("kind",))
        self.turns = reg.counter(
            f"{P}_turns_total",
            "Turns ended, by outcome (completed, failed, cancelled).",
            ("outcome",),
        )
        self.failures = reg.counter(
            f"{P}_turn_failures_total", "Failed turns by error kind.", ("kind",)
        )
        self.running = reg.gauge(f"{P}_running_turns", "Turn attempts running in this process.")
        self.heartbeat_failures = reg.counter(
            f"{P}_heartbeat_failures_total",
            "In-progress acks that failed (connection lost, consumer deleted, delivery no "
            "longer ours); each stopped a running attempt.",
        )
        self.pending = reg.gauge(
            f"{P}_consumer_pending_messages",
            "User messages not yet delivered to any worker (the durable consumer's backlog; "
            "sampled when scraped).",
            ("consumer",),
        )
        self.ack_pending = reg.gauge(
            f"{P}_consumer_ack_pending_messages",
            "User messages delivered to workers and not acked yet (sampled when scraped).",
            ("consumer",),
        )
        for kind in get_args(ev.FallbackKind):  # series exist from the start: rate() sees the first
            self.fallbacks.inc(0, kind=kind)
        for outcome in TERMINAL:
            self.turns.inc(0, outcome=outcome)

    def ended(
        self, event: ev.TurnCompleted | ev.TurnFailed | ev.TurnCancelled, provider: str, model: str
    ) -> None:
        self.turns.inc(outcome=ended_status(event))
        if isinstance(event, ev.TurnCompleted):
            self.turn_duration.observe(event.duration_ms / 1000, provider=provider, model=model)
            if event.ttft_ms is not None:
                self.ttft.observe(event.ttft_ms / 1000, provider=provider, model=model)
        elif isinstance(event, ev.TurnFailed):
            self.failures.inc(kind=event.error)

    def tool_call(self, server: str, tool: str, seconds: float, is_error: bool) -> None:
        self.tool_duration.observe(seconds, server=server, tool=tool)
        self.tool_calls.inc(server=server, tool=tool, outcome="error" if is_error else "ok")

    def watch_consumer(self, queue: WorkQueue) -> Callable[[], None]:
        """Sample the work queue's backlog when scraped (no polling); returns a function
        that stops it and drops its series."""

        async def sample() -> None:
            backlog = await queue.backlog()
            self.pending.set(backlog.pending, consumer=queue.name)
            self.ack_pending.set(backlog.ack_pending, consumer=queue.name)

        remove = self.registry.on_scrape(sample)

        def stop() -> None:
            remove()
            self.pending.remove(consumer=queue.name)
            self.ack_pending.remove(consumer=queue.name)

        return stop


class TurnTelemetry:
    """What one attempt at a turn reports."""

    def __init__(
        self, telemetry: AgentTelemetry, turn: ObservedTurn, providers: ProviderRegistry,
        worker: str,
    ) -> None:  # fmt: skip
        self._tel = telemetry
        # weakly: the attempt holds its telemetry, and a cycle would keep every ended
        # attempt (and the session state it folded) alive until a collection of the
        # older generations, a pause every turn in flight then waits out
        self._turn: ObservedTurn = weakref.proxy(turn)
        self._providers = providers
        self._worker = worker
        self._span: Span = trace.INVALID_SPAN
        self._offered: set[str] = set()

    def _start(self, name: str, kind: SpanKind) -> contextlib.AbstractContextManager[Span]:
        # exceptions are recorded by hand: typed and redacted, never a raw message or traceback
        return self._tel.tracer.start_as_current_span(
            name, kind=kind, record_exception=False, set_status_on_exception=False
        )

    def model(self) -> str:
        """The model the turn's provider is asked for (its default when none is named)."""
        with contextlib.suppress(ThreadlineError):  # an unknown provider: none
            return self._providers.settings(self._turn.provider).model_for(self._turn.model)
        return self._turn.model

    def _provider_attrs(self) -> dict[str, str | int]:
        provider = self._turn.provider
        name = _GENAI_PROVIDER.get(provider, provider)
        attrs: dict[str, str | int] = {
            "gen_ai.provider.name": name, "gen_ai.system": name, "threadline.provider": provider,
        }  # fmt: skip
        with contextlib.suppress(ThreadlineError, ValueError):
            url = urlsplit(self._providers.settings(provider).base_url or "")
            if url.hostname:
                attrs["server.address"] = url.hostname
                if url.port:
                    attrs["server.port"] = url.port
        return attrs

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """The whole attempt: span ``invoke_agent threadline`` and the running gauge."""
        turn = self._turn
        self._tel.running.inc()
        with self._start(f"invoke_agent {AGENT_NAME}", SpanKind.INTERNAL) as span:
            self._span = span
            span.set_attributes({
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": AGENT_NAME,
                "gen_ai.conversation.id": turn.state.session,
                "gen_ai.request.model": self.model(),
                "threadline.session.id": turn.state.session, "threadline.turn.id": turn.turn_id,
                "threadline.turn.attempt": turn.attempt, "threadline.worker": self._worker,
                **self._provider_attrs(),
            })  # fmt: skip
            try:
                yield
            except BaseException as exc:
                name = type(exc).__name__
                outcome = {"RestartAttempt": "restarted", "Fenced": "fenced"}.get(name)
                if isinstance(exc, asyncio.CancelledError):
                    outcome = "interrupted"
                span.set_attribute("threadline.turn.outcome", outcome or "error")
                _error(span, outcome or name, str(exc) or name)
                raise
            finally:
                self._tel.running.dec()

    def appended(self, event: ev.Event) -> None:
        """Called with every event the attempt appended (after it is in the log)."""
        if isinstance(event, ev.Fallback):
            self._tel.fallbacks.inc(kind=event.fallback)
            attrs = {"kind": event.fallback, "from": event.from_, "to": event.to}
            named: dict[str, str | int] = {f"threadline.fallback.{k}": v for k, v in attrs.items()}
            named["threadline.fallback.attempt"] = event.attempt
            self._span.add_event("threadline.fallback", named)
        elif isinstance(event, ev.TurnCompleted | ev.TurnFailed | ev.TurnCancelled):
            self._tel.ended(event, self._turn.provider, self.model())
            self._span.set_attribute("threadline.turn.outcome", ended_status(event))
            if isinstance(event, ev.TurnCompleted):
                self._span.set_attributes({
                    "gen_ai.usage.input_tokens": event.usage.input_tokens,
                    "gen_ai.usage.output_tokens": event.usage.output_tokens,
                    "threadline.turn.steps": event.steps,
                })  # fmt: skip
            elif isinstance(event, ev.TurnFailed):
                _error(self._span, event.error, event.message)

    @contextlib.contextmanager
    def chat(self, request: ModelRequest, outcome: StepOutcome, step: int) -> Iterator[None]:
        """One model request (span ``chat {model}``); ``outcome`` is read at the end."""
        provider, model = self._turn.provider, request.model or self.model()
        self._offered.update(tool.name for tool in request.tools)
        optional = {"max_tokens": request.max_tokens, "temperature": request.temperature}
        with self._start(f"chat {model}", SpanKind.CLIENT) as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                "threadline.step": step, "threadline.tools.offered": len(request.tools),
                **{f"gen_ai.request.{k}": v for k, v in optional.items() if v is not None},
                **self._provider_attrs(),
            })  # fmt: skip
            try:
                yield
            except ProviderError as err:
                self._tel.requests.inc(provider=provider, model=model, outcome=err.kind)
                if err.status is not None:
                    span.set_attribute("http.response.status_code", err.status)
                _error(span, err.kind, err.message)
                raise
            except BaseException as exc:
                _error(span, _kind(exc), str(exc) or type(exc).__name__)
                raise
            self._tel.requests.inc(provider=provider, model=model, outcome="ok")
            tokens = {"input": outcome.usage.input_tokens, "output": outcome.usage.output_tokens}
            for kind, count in tokens.items():
                self._tel.tokens.inc(count, provider=provider, model=model, type=kind)
                span.set_attribute(f"gen_ai.usage.{kind}_tokens", count)
            span.set_attribute("gen_ai.response.finish_reasons", (outcome.finish,))

    @contextlib.contextmanager
    def tool(self, call: ev.ToolCallRef) -> Iterator[Callable[[ToolOutcome], None]]:
        """One tool call (span ``execute_tool {tool}``); call the yielded function with
        the outcome."""
        offered = call.tool in self._offered
        name = call.tool if offered else "unknown"
        server, tool = (split_prefixed(name) or ("", name)) if offered else ("", "unknown")
        with self._start(f"execute_tool {name}", SpanKind.INTERNAL) as span:
            span.set_attributes({
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name,
                "gen_ai.tool.call.id": call.call_id, "gen_ai.tool.type": "extension",
                "threadline.tool.server": server,
            })  # fmt: skip

            def record(outcome: ToolOutcome) -> None:
                self._tel.tool_call(server, tool, outcome.duration_ms / 1000, outcome.is_error)
                if outcome.is_error:
                    _error(span, "tool_error", "the tool call failed")

            started = time.monotonic()
            try:
                yield record
            except BaseException as exc:
                self._tel.tool_call(server, tool, time.monotonic() - started, True)
                _error(span, _kind(exc), "the tool call did not finish")
                raise
