"""The agent's Prometheus instruments (docs/observability.md).

Labels are provider and model names, MCP server and tool names as configured, fallback
kinds, outcomes and error kinds: never session ids, owners, text or keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, get_args

from threadline.base.metrics import Registry, default_registry
from threadline.events.schema import FallbackKind, TurnCancelled, TurnCompleted, TurnFailed
from threadline.events.workqueue import WorkQueue

P: Final = "threadline_agent"
OUTCOMES: Final = ("completed", "failed", "cancelled")


class AgentMetrics:
    def __init__(self, registry: Registry | None = None) -> None:
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
        for kind in get_args(FallbackKind):  # series exist from the start: rate() sees the first
            self.fallbacks.inc(0, kind=kind)
        for outcome in OUTCOMES:
            self.turns.inc(0, outcome=outcome)
        self.running.inc(0)
        self.heartbeat_failures.inc(0)

    def ended(
        self, event: TurnCompleted | TurnFailed | TurnCancelled, provider: str, model: str
    ) -> None:
        if isinstance(event, TurnCompleted):
            self.turns.inc(outcome="completed")
            self.turn_duration.observe(event.duration_ms / 1000, provider=provider, model=model)
            if event.ttft_ms is not None:
                self.ttft.observe(event.ttft_ms / 1000, provider=provider, model=model)
        elif isinstance(event, TurnFailed):
            self.turns.inc(outcome="failed")
            self.failures.inc(kind=event.error)
        else:
            self.turns.inc(outcome="cancelled")

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
