"""OpenTelemetry tracing, off unless asked for.

``THREADLINE_OTEL_EXPORTER`` chooses the exporter: unset (or ``none``) exports nothing
and the services' tracer stays OpenTelemetry's no-op (a span costs a context switch and
no allocation of attributes); ``otlp`` sends spans over OTLP/HTTP to
``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://localhost:4318``; the other standard
``OTEL_EXPORTER_OTLP_*`` variables apply); ``console`` prints them to stdout as JSON.
``OTEL_SERVICE_NAME`` names the service (default ``threadline``).

Spans never carry message text, tool arguments or tool results, only names, ids,
token counts and redacted error messages (docs/observability.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Final

from opentelemetry import trace

from threadline.base.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

EXPORTER_ENV: Final = "THREADLINE_OTEL_EXPORTER"
EXPORTERS: Final = ("otlp", "console")


def exporter_choice(env: Mapping[str, str] | None = None) -> str | None:
    """``"otlp"``, ``"console"`` or None (tracing off), from ``THREADLINE_OTEL_EXPORTER``."""
    value = (os.environ if env is None else env).get(EXPORTER_ENV, "").strip().lower()
    if value in ("", "none", "off", "false", "0"):
        return None
    if value not in EXPORTERS:
        raise ConfigurationError(f"{EXPORTER_ENV} must be otlp, console or none, not {value!r}")
    return value


def make_provider(kind: str, *, service_name: str = "threadline") -> TracerProvider:
    """A tracer provider exporting to ``kind`` in batches (not installed globally)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if kind == "otlp":  # a dependency, imported only when asked for (start-up time)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    elif kind == "console":
        exporter = ConsoleSpanExporter(service_name=service_name)
    else:
        raise ConfigurationError(f"unknown trace exporter {kind!r}")
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@contextlib.contextmanager
def tracing_from_env(
    env: Mapping[str, str] | None = None, *, service_name: str = "threadline"
) -> Iterator[str | None]:
    """Install the exporter ``THREADLINE_OTEL_EXPORTER`` asks for (if any) for the
    process, yield its name (None: off), and flush and shut it down on the way out."""
    kind = exporter_choice(env)
    if kind is None:
        yield None
        return
    provider = make_provider(kind, service_name=service_name)
    trace.set_tracer_provider(provider)
    try:
        yield kind
    finally:
        provider.shutdown()
