"""Server-Sent Events from an httpx streaming response, as the HTML spec parses them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class SSEMessage:
    """One dispatched event (``data`` set) or a ``retry:`` hint (``data`` None)."""

    id: str | None
    event: str
    data: str | None
    retry_ms: int | None = None


async def sse_messages(response: httpx.Response) -> AsyncIterator[SSEMessage]:
    """Events of ``response``; an event cut off by the end of the stream is dropped."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    async for line in response.aiter_lines():  # splits on \r\n, \r and \n
        if line == "":
            if data:
                yield SSEMessage(last_id, event or "message", "\n".join(data))
            data, event = [], ""
            continue
        if line.startswith(":"):
            continue  # a comment (heartbeat)
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            yield SSEMessage(last_id, "", None, int(value))
