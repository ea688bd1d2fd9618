from __future__ import annotations

import itertools
from typing import Any

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from threadline.events.schema import Usage
from threadline.services.agent.providers.parts import (
    FinishPart,
    Part,
    PartsAssembler,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallEnd,
    ToolCallStart,
    UsagePart,
    parse_arguments,
)


def ids() -> PartsAssembler:
    counter = itertools.count()
    return PartsAssembler(new_call_id=lambda: f"gen_{next(counter)}")


def test_text_block_and_finish() -> None:
    asm = ids()
    parts = asm.text("t", "") + asm.text("t", "Hel") + asm.text("t", "lo")
    asm.usage(Usage(input_tokens=3, output_tokens=2))
    asm.finish_reason = "stop"
    parts += asm.complete()
    assert parts == [
        TextDelta("Hel"),
        TextDelta("lo"),
        UsagePart(Usage(input_tokens=3, output_tokens=2)),
        FinishPart("stop"),
    ]


def test_reasoning_then_text_closes_reasoning_first() -> None:
    asm = ids()
    parts = asm.reasoning("r", "think") + asm.text("t", "answer") + asm.complete()
    assert parts == [
        ReasoningDelta("think"),
        ReasoningEnd(),
        TextDelta("answer"),
        FinishPart("stop"),
    ]


def test_signature_lands_in_reasoning_end() -> None:
    asm = ids()
    parts = asm.reasoning(0, "hmm") + asm.reasoning_data(0, {"signature": "sig=="}) + asm.end(0)
    assert parts[-1] == ReasoningEnd({"signature": "sig=="})


def test_reasoning_data_alone_opens_a_block() -> None:
    asm = ids()
    parts = asm.reasoning_data(3, {"redacted_data": "xyz"}) + asm.end(3)
    assert parts == [ReasoningEnd({"redacted_data": "xyz"})]


def test_parallel_tool_calls_with_interleaved_fragments() -> None:
    asm = ids()
    parts: list[Part] = []
    parts += asm.text("t", "Let me check.")
    parts += asm.tool_call(("tool", 0), call_id="call_a", name="weather", arguments="")
    parts += asm.tool_call(("tool", 1), call_id="call_b", name="time", arguments='{"tz"')
    parts += asm.tool_call(("tool", 0), arguments='{"city": ')
    parts += asm.tool_call(("tool", 1), arguments=': "UTC"}')
    parts += asm.tool_call(("tool", 0), arguments='"Oslo"}')
    asm.finish_reason = "tool_calls"
    parts += asm.complete()
    assert parts == [
        TextDelta("Let me check."),
        ToolCallStart(0, "call_a", "weather"),
        ToolCallStart(1, "call_b", "time"),
        ToolCallEnd("call_a", "weather", {"city": "Oslo"}, '{"city": "Oslo"}'),
        ToolCallEnd("call_b", "time", {"tz": "UTC"}, '{"tz": "UTC"}'),
        FinishPart("tool_calls"),
    ]


def test_tool_start_waits_for_the_name_and_ids_are_generated() -> None:
    asm = ids()
    assert asm.tool_call(7, arguments='{"a"') == []
    parts = asm.tool_call(7, name="f", arguments=": 1}")
    assert parts == [ToolCallStart(0, "gen_0", "f")]
    assert asm.end(7) == [ToolCallEnd("gen_0", "f", {"a": 1}, '{"a": 1}')]


def test_invalid_arguments_never_raise() -> None:
    asm = ids()
    asm.tool_call(0, call_id="c1", name="f", arguments='{"a": ')
    asm.tool_call(1, call_id="c2", name="g", arguments="[1, 2]")
    asm.tool_call(2, call_id="c3", arguments='{"x": 1}')
    ends = [p for p in asm.complete() if isinstance(p, ToolCallEnd)]
    assert [(e.call_id, e.arguments, e.raw_arguments) for e in ends] == [
        ("c1", {}, '{"a": '),
        ("c2", {}, "[1, 2]"),
        ("c3", {"x": 1}, '{"x": 1}'),
    ]
    assert "not valid JSON" in ends[0].parse_error
    assert "JSON object" in ends[1].parse_error
    assert "without a name" in ends[2].parse_error


def test_stop_with_tool_calls_becomes_tool_calls() -> None:
    asm = ids()
    asm.tool_call(0, call_id="c", name="f")
    asm.finish_reason = "stop"
    parts = asm.complete()
    assert parts[-2] == ToolCallEnd("c", "f", {}, "")
    assert parts[-1] == FinishPart("tool_calls")


def test_parse_arguments() -> None:
    assert parse_arguments("") == ({}, "")
    assert parse_arguments("  ") == ({}, "")
    assert parse_arguments('{"a": [1]}') == ({"a": [1]}, "")
    assert parse_arguments("nope")[1]


def test_parts_round_trip_as_a_tagged_union() -> None:
    parts: list[Part] = [
        TextDelta("t"),
        ReasoningEnd({"signature": "s"}),
        ToolCallEnd("c", "f", {"a": 1}, '{"a":1}', ""),
        UsagePart(Usage(input_tokens=1)),
        FinishPart("length"),
    ]
    data = msgspec.json.encode(parts)
    assert b'"part":"text_delta"' in data
    assert msgspec.json.decode(data, type=list[Part]) == parts


@st.composite
def _interleavings(draw: st.DrawFn) -> tuple[list[str], list[tuple[int, str]]]:
    count = draw(st.integers(min_value=1, max_value=4))
    payloads = [
        msgspec.json.encode(draw(st.dictionaries(st.text(max_size=5), st.integers()))).decode()
        for _ in range(count)
    ]
    fragments: list[list[tuple[int, str]]] = []
    for i, payload in enumerate(payloads):
        cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=4)))
        bounds = [0, *cuts, len(payload)]
        fragments.append([(i, payload[a:b]) for a, b in itertools.pairwise(bounds)])
    merged: list[tuple[int, str]] = []
    while any(fragments):
        pick = draw(st.sampled_from([i for i, f in enumerate(fragments) if f]))
        merged.append(fragments[pick].pop(0))
    return payloads, merged


@given(_interleavings())
def test_any_interleaving_reassembles_every_call(case: tuple[list[str], list[Any]]) -> None:
    payloads, fragments = case
    asm = ids()
    parts: list[Part] = []
    for i in range(len(payloads)):
        parts += asm.tool_call(i, call_id=f"c{i}", name=f"t{i}")
    for i, fragment in fragments:
        parts += asm.tool_call(i, arguments=fragment)
    parts += asm.complete()
    for i, payload in enumerate(payloads):
        mine = [p for p in parts if getattr(p, "call_id", None) == f"c{i}"]
        assert isinstance(mine[0], ToolCallStart)
        assert isinstance(mine[-1], ToolCallEnd)
        assert [type(p) for p in mine] == [ToolCallStart, ToolCallEnd]
        assert payload == mine[-1].raw_arguments
        assert mine[-1].arguments == msgspec.json.decode(payload)
    assert parts[-1] == FinishPart("tool_calls")


def test_a_new_reasoning_block_or_a_tool_call_ends_the_open_reasoning() -> None:
    asm = ids()
    parts = asm.reasoning(0, "a") + asm.reasoning_data(0, {"signature": "s0"})
    parts += asm.reasoning(1, "b") + asm.tool_call(2, call_id="c", name="f") + asm.end(1)
    assert parts == [
        ReasoningDelta("a"),
        ReasoningEnd({"signature": "s0"}),
        ReasoningDelta("b"),
        ReasoningEnd(),
        ToolCallStart(0, "c", "f"),
    ]
