"""Server-sent events from raw response bytes, without the SDKs' per-event objects.

:class:`SseDecoder` follows the event-stream format the SDKs' own decoders follow: lines
end in ``\\n``, ``\\r\\n`` or ``\\r`` (also when split across reads); ``data:`` lines are
joined with ``\\n``; ``event:`` names the event; comments (``:``), ``id`` and ``retry``
are ignored; a blank line dispatches the event, and an event left unterminated when the
body ends is dropped. It returns bytes: the adapters decode ``data`` with msgspec
straight into the few fields they read.
"""

from __future__ import annotations

#: (event name, data); the name is ``b""`` when the event had no ``event:`` line
SseEvent = tuple[bytes, bytes]


class SseDecoder:
    """Feed it the body's chunks as they arrive; it returns the events each completes."""

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if self._pending:
            chunk = self._pending + chunk
        held = b""
        if b"\r" in chunk:
            if chunk.endswith(b"\r"):  # maybe the first half of "\r\n": decide next time
                chunk, held = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        self._pending = lines.pop() + held
        out: list[SseEvent] = []
        for line in lines:
            if line:
                self._field(line)
            elif self._data or self._event:
                out.append((self._event, b"\n".join(self._data)))
                self._event, self._data = b"", []
        return out

    def _field(self, line: bytes) -> None:
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value
