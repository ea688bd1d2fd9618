"""Structured logs: JSON lines carry session and turn ids; secrets never appear."""

from __future__ import annotations

import io
import json
import logging

import pytest

from threadline.base.logs import ContextFilter, JsonFormatter, PlainFormatter, log_context
from threadline.base.redact import default_redactor, register_secret


@pytest.fixture
def captured() -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(default_redactor().log_filter())
    logger = logging.getLogger("threadline.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, stream, handler


def test_json_lines_carry_the_context_and_no_secret(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(JsonFormatter())
    register_secret("sk-live-LOGSECRET-99")
    with log_context(session="s1", turn="t1"):
        logger.info("calling provider with key %s", "sk-live-LOGSECRET-99")
        with log_context(attempt="2"):
            logger.warning("retrying")
    logger.info("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["session"] == "s1" and lines[0]["turn"] == "t1"
    assert lines[1]["attempt"] == "2" and lines[1]["level"] == "warning"
    assert "session" not in lines[2]
    assert "LOGSECRET" not in stream.getvalue()
    logger.removeHandler(handler)


def test_plain_lines_name_the_context(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(PlainFormatter())
    with log_context(session="s9"):
        logger.info("hello")
    assert stream.getvalue().rstrip().endswith("[session=s9]")
    logger.removeHandler(handler)
