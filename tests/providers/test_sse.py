"""The server-sent-event decoder the adapters read provider streams with."""

from __future__ import annotations

import pytest

from threadline.services.agent.providers.sse import SseDecoder, SseEvent

STREAM = (
    b": a comment\n"
    b"event: message_start\n"
    b'data: {"a": 1}\n'
    b"\n"
    b"data: line one\n"
    b"data:line two\n"
    b"id: 7\n"
    b"retry: 1000\n"
    b"\n"
    b"\n"  # a blank line with nothing pending dispatches nothing
    b"event: ping\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
    b"data: never terminated"
)
EVENTS: list[SseEvent] = [
    (b"message_start", b'{"a": 1}'),
    (b"", b"line one\nline two"),
    (b"ping", b""),
    (b"", b"[DONE]"),
]


def decode(chunks: list[bytes]) -> list[SseEvent]:
    decoder = SseDecoder()
    return [event for chunk in chunks for event in decoder.feed(chunk)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_events_whatever_the_line_ends_and_however_the_body_is_split(newline: bytes) -> None:
    body = STREAM.replace(b"\n", newline)
    assert decode([body]) == EVENTS
    assert decode([body[i : i + 1] for i in range(len(body))]) == EVENTS  # byte by byte
    for cut in range(len(body)):  # every split into two reads
        assert decode([body[:cut], body[cut:]]) == EVENTS, cut


def test_a_field_without_a_colon_or_unknown_is_ignored() -> None:
    assert decode([b"data\nbogus: x\ndata: y\n\n"]) == [(b"", b"\ny")]
