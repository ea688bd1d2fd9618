"""Logging: plain or JSON lines, secrets redacted, session and turn ids attached.

Services set the ids for the work at hand with :func:`log_context` (context variables
follow asyncio tasks), and every line logged inside carries them::

    with log_context(session="s1", turn="t1"):
        log.info("turn started")   # {"msg": "turn started", "session": "s1", "turn": "t1", ...}
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Final

from opentelemetry import trace

from threadline.base.redact import default_redactor

_CONTEXT: Final[contextvars.ContextVar[tuple[tuple[str, str], ...]]] = contextvars.ContextVar(
    "threadline_log_context", default=()
)


@contextlib.contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Attach ids (session, turn, attempt, ...) to every log line inside the block."""
    merged = {**dict(_CONTEXT.get()), **{k: str(v) for k, v in ids.items() if v is not None}}
    token = _CONTEXT.set(tuple(merged.items()))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current log context onto each record (``record.context``), with the
    current span's ``trace_id`` and ``span_id`` when tracing is on."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = dict(_CONTEXT.get())
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            context["trace_id"] = format(span.trace_id, "032x")
            context["span_id"] = format(span.span_id, "016x")
        record.context = context
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            entry["error"] = default_redactor().redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = getattr(record, "context", {})
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return default_redactor().redact(line) if record.exc_info else line


def configure_logging(level: str, fmt: str = "plain") -> None:
    """Log to stderr; every line redacted and carrying the current session/turn ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(default_redactor().log_filter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
