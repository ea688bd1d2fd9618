"""Wait for a log line instead of polling: a handler that sets an event per phrase."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator


class Logged(logging.Handler):
    """Sets the event of each phrase once a line containing it is logged."""

    def __init__(self, *phrases: str) -> None:
        super().__init__(logging.DEBUG)
        self.seen = {phrase: asyncio.Event() for phrase in phrases}

    def emit(self, record: logging.LogRecord) -> None:
        for phrase, event in self.seen.items():
            if phrase in record.getMessage():
                event.set()

    async def wait(self, phrase: str, timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s):
            await self.seen[phrase].wait()


@contextlib.contextmanager
def watching(logger: str, *phrases: str) -> Iterator[Logged]:
    """A :class:`Logged` on ``logger`` while the block runs."""
    logged = Logged(*phrases)
    log = logging.getLogger(logger)
    log.addHandler(logged)
    try:
        yield logged
    finally:
        log.removeHandler(logged)
