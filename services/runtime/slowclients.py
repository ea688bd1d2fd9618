"""Reclaim connections from clients that send too slowly or stop reading.

uvicorn (0.54, both its ``httptools`` and ``h11`` protocols) bounds neither: its only
timer is the keep-alive timeout, armed after a response and cancelled by *any* byte
received. So a client that opens a connection and sends its request head a byte at a
time (slowloris), or trickles a body, holds the connection and its buffers forever; and
a client that stops reading leaves a streaming response blocked in ``send`` (and its
SSE slot taken) for as long as its socket stays open.

:func:`guarded_protocol` returns uvicorn's HTTP protocol class with two timers added:

* **read**: a request's head and body must arrive within ``read_timeout_s`` of its
  first byte (or of the connection opening), extended by one second per
  ``read_min_rate`` bytes received, so a large body at a fair pace is never cut. When
  it expires the connection is closed: with ``408 Request Timeout`` if no request had
  reached the application yet, otherwise aborted (the application sees a disconnect).
* **send**: when the socket stops accepting output (asyncio pauses writing once the
  transport's buffer is over its high-water mark) and has not resumed within
  ``send_timeout_s``, the connection is aborted; the blocked ``send`` returns and the
  response's clean-up (hub subscription, per-owner stream slot) runs.

Pass it as ``uvicorn.Config(http=...)`` (``serve_asgi(..., limits=...)`` does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

Reason = Literal["read_timeout", "send_timeout"]
_REQUEST_TIMEOUT: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\nrequest not received\r\n\r\n"
)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long a connection may take to send a request, or refuse to take a response."""

    read_timeout_s: float = 10.0
    #: bytes per second that extend the read deadline by a second (0: no extension)
    read_min_rate: int = 8192
    send_timeout_s: float = 30.0
    #: called once per connection reclaimed, with why
    on_reclaim: Callable[[Reason], None] | None = None


class _Guarded(asyncio.Protocol):
    """Mixin, before a uvicorn HTTP protocol in the bases (whose ``cycle``, ``transport``
    and ``loop`` it reads): the two timers of a connection, run off the protocol's
    connection, data and flow-control callbacks."""

    limits: ConnectionLimits = ConnectionLimits()
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _deadline: float | None = None
    _read_timer: asyncio.TimerHandle | None = None
    _send_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ reading

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_reading()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            self._stop_reading()  # the request's head and body are in (the app has them)
            return
        if self._deadline is None:
            self._start_reading()
        if self._deadline is not None and self.limits.read_min_rate > 0:
            self._deadline += len(data) / self.limits.read_min_rate

    def on_response_complete(self) -> None:
        """A response is complete: idle time until the next request is keep-alive's."""
        super().on_response_complete()  # type: ignore[misc]  # the uvicorn protocol has it
        self._stop_reading()

    def _start_reading(self) -> None:
        self._deadline = self.loop.time() + self.limits.read_timeout_s
        self._arm_read(self.limits.read_timeout_s)

    def _arm_read(self, delay: float) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
        self._read_timer = self.loop.call_later(delay, self._read_expired)

    def _stop_reading(self) -> None:
        self._deadline = None
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_expired(self) -> None:
        self._read_timer = None
        if self._deadline is None:
            return
        remaining = self._deadline - self.loop.time()
        if remaining > 0:  # data came in meanwhile and earned more time
            self._arm_read(remaining)
            return
        self._deadline = None
        transport, cycle = self.transport, self.cycle
        if transport.is_closing():
            return
        if cycle is None:  # the first request's head is incomplete: say why
            transport.write(_REQUEST_TIMEOUT)
        waiting = cycle is not None and not cycle.response_complete  # the app, for the body
        if waiting or transport.get_write_buffer_size():
            transport.abort()  # the application sees a disconnect
        else:
            transport.close()
        self._reclaimed("read_timeout")

    # ------------------------------------------------------------ sending

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout_s, self._send_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stop_sending()

    def _stop_sending(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_expired(self) -> None:
        self._send_timer = None
        if not self.transport.is_closing() or self.transport.get_write_buffer_size():
            self.transport.abort()
            self._reclaimed("send_timeout")

    # ------------------------------------------------------------ common

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_reading()
        self._stop_sending()
        super().connection_lost(exc)

    def _reclaimed(self, reason: Reason) -> None:
        log.debug("connection closed: %s", reason.replace("_", " "))
        if self.limits.on_reclaim is not None:
            self.limits.on_reclaim(reason)


def guarded_protocol(
    limits: ConnectionLimits, impl: Literal["auto", "h11", "httptools"] = "auto"
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (``auto``: httptools when installed, as uvicorn picks) with
    ``limits`` enforced, for ``uvicorn.Config(http=...)``."""
    base: type[asyncio.Protocol] = H11Protocol
    if impl != "h11":
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

            base = HttpToolsProtocol
        except ImportError:  # httptools is optional
            if impl == "httptools":
                raise RuntimeError("httptools is not installed") from None
    return type(f"Guarded{base.__name__}", (_Guarded, base), {"limits": limits})
