"""What the wire encoders hand to the server: streamed frames and whole replies."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

Headers = list[tuple[bytes, bytes]]

JSON_HEADERS: Headers = [(b"content-type", b"application/json")]
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Frame(NamedTuple):
    """One piece of a streamed body. ``token`` frames are paced, counted and droppable."""

    data: bytes
    token: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete (non-streamed) HTTP response."""

    status: int
    body: bytes
    headers: Headers = field(default_factory=list)

    @classmethod
    def json(
        cls,
        status: int,
        body: bytes,
        headers: Headers | None = None,
        retry_after: float | None = None,
    ) -> Reply:
        all_headers = [*JSON_HEADERS, *(headers or [])]
        if retry_after is not None:
            # ``retry-after`` is whole seconds (HTTP); ``retry-after-ms`` keeps the exact
            # value and is what the OpenAI and Anthropic SDKs read first.
            all_headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
            all_headers.append((b"retry-after-ms", str(round(retry_after * 1000)).encode()))
        return cls(status, body, all_headers)
