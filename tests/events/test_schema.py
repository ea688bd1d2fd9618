"""Stored fixtures of every kind still decode, and encode back to the same bytes."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from threadline.base.errors import CorruptEvent
from threadline.events import codec
from threadline.events.schema import KINDS, SCHEMA_VERSION, TextDelta, kind_of

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_lines(schema: int) -> list[bytes]:
    return (FIXTURES / f"schema-{schema}.jsonl").read_bytes().splitlines()


@pytest.mark.parametrize("schema", range(1, SCHEMA_VERSION + 1))
def test_every_kind_has_a_fixture_that_decodes(schema: int) -> None:
    decoded = [codec.decode(line) for line in fixture_lines(schema)]
    assert {kind_of(e.event) for e in decoded} == set(KINDS)


def test_current_fixtures_encode_to_the_same_bytes() -> None:
    """A renamed field, a changed type or a changed tag shows up here first."""
    for line in fixture_lines(SCHEMA_VERSION):
        assert codec.encode(codec.decode(line)) == line


def test_the_writers_encoding_is_the_envelopes() -> None:
    """What the store writes (the envelope's fields around the event encoded once) is
    byte for byte the envelope's own encoding, for every kind and every optional field."""
    for line in fixture_lines(SCHEMA_VERSION):
        envelope = codec.decode(line)
        fields = {f: getattr(envelope, f) for f in envelope.__struct_fields__ if f != "event"}
        assert codec.encode_sealed(fields, codec.encode(envelope.event)) == line


def test_fixture_chain_is_intact() -> None:
    prev = codec.genesis_hash("fixture")
    for line in fixture_lines(SCHEMA_VERSION):
        assert codec.decode(line).prev == prev
        prev = codec.record_hash(line)


def test_tags_are_explicit_and_unique() -> None:
    assert len(set(KINDS)) == len(KINDS)
    assert all(kind == kind.lower() and " " not in kind for kind in KINDS)


def test_unknown_kind_is_a_typed_error_with_its_position() -> None:
    line = fixture_lines(SCHEMA_VERSION)[3].replace(b'"reasoning_delta"', b'"telepathy"')
    with pytest.raises(CorruptEvent) as info:
        codec.decode(line, position=42)
    assert info.value.position == 42 and "telepathy" in info.value.reason


def test_newer_schema_is_refused_not_misread() -> None:
    line = fixture_lines(SCHEMA_VERSION)[4].replace(b'"schema":1', b'"schema":99')
    with pytest.raises(CorruptEvent, match="schema 99"):
        codec.decode(line)


def test_upcasters_lift_older_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the current catalogue is schema 2, where text deltas renamed ``t`` to ``text``."""
    old = b'{"schema":1,"session":"s","version":1,"at":1,"actor":"a","key":"k","prev":"p",'
    old += b'"event":{"kind":"text_delta","t":"hello"}}'

    def lift(raw: dict[str, object]) -> dict[str, object]:
        event = raw["event"]
        assert isinstance(event, dict)
        if event["kind"] == "text_delta":
            event["text"] = event.pop("t")
        return raw

    monkeypatch.setattr(codec, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(codec.UPCASTERS, 1, lift)
    envelope = codec.decode(old)
    assert envelope.event == TextDelta(text="hello") and envelope.schema == 2


def test_events_are_frozen() -> None:
    delta = TextDelta(text="x")
    with pytest.raises(AttributeError):
        delta.text = "y"  # type: ignore[misc]
    assert msgspec.json.encode(delta) == b'{"kind":"text_delta","text":"x"}'
