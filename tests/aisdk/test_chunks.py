"""Events -> UI message stream chunks, with hand-built event sequences.

The last test feeds every sequence, framed as the gateway frames it, through the real
AI SDK (its zod chunk schema and ``readUIMessageStream``).
"""

from __future__ import annotations

import json
from typing import Any

from tests.aisdk import sequences as seq
from tests.aisdk.conftest import run_node
from threadline.services.gateway.aisdk import protocol
from threadline.services.gateway.aisdk.chunks import TurnChunks, replay_start
from threadline.services.gateway.hub import frame_of


def types(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["type"] for c in chunks]


def test_text() -> None:
    chunks = seq.chunks(seq.text())
    assert chunks[0] == {"type": "start", "messageId": seq.TURN}
    assert types(chunks) == [
        "start", "start-step", "text-start", "text-delta", "text-delta", "text-delta",
        "text-end", "finish-step", "finish",
    ]  # fmt: skip
    ids = {c["id"] for c in chunks if c["type"].startswith("text-")}
    assert len(ids) == 1
    assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == "Hello!"
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}


def test_reasoning_then_text_are_two_parts() -> None:
    chunks = seq.chunks(seq.reasoning())
    assert types(chunks) == [
        "start", "start-step", "reasoning-start", "reasoning-delta", "reasoning-delta",
        "reasoning-end", "text-start", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip
    assert chunks[2]["id"] != chunks[6]["id"]


def test_parallel_tools_stay_in_their_step() -> None:
    chunks = seq.chunks(seq.parallel_tools())
    assert types(chunks) == [
        "start", "start-step", "text-start", "text-delta", "text-end",
        "tool-input-start", "tool-input-available", "tool-input-start", "tool-input-available",
        "tool-output-available", "tool-output-available", "finish-step",
        "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip
    calls = [c for c in chunks if c["type"] == "tool-input-available"]
    assert calls[0] == {
        "type": "tool-input-available",
        "toolCallId": "c1",
        "toolName": "threadline__add",
        "input": {"a": 1, "b": 2},
        "dynamic": True,
    }
    outputs = [(c["toolCallId"], c["output"]) for c in chunks if "output" in c]
    assert outputs == [("c2", "x"), ("c1", "3")]


def test_tool_error() -> None:
    chunks = seq.chunks(seq.tool_error())
    error = next(c for c in chunks if c["type"] == "tool-output-error")
    assert error == {
        "type": "tool-output-error",
        "toolCallId": "c1",
        "errorText": "division by zero",
        "dynamic": True,
    }
    assert "tool-output-available" not in types(chunks)


def test_failure_is_an_error_chunk() -> None:
    chunks = seq.chunks(seq.failure())
    assert types(chunks)[-4:] == ["text-end", "finish-step", "error", "finish"]
    assert chunks[-2] == {"type": "error", "errorText": "slow down (rate_limit)"}
    assert chunks[-1] == {"type": "finish", "finishReason": "error"}


def test_cancel_aborts() -> None:
    chunks = seq.chunks(seq.cancel())
    assert types(chunks)[-4:] == ["text-end", "finish-step", "abort", "finish"]
    assert chunks[-2] == {"type": "abort", "reason": "stop requested"}
    assert chunks[-1] == {"type": "finish", "finishReason": "other"}


def test_a_superseded_attempt_is_closed_and_marked() -> None:
    chunks = seq.chunks(seq.superseded())
    assert types(chunks) == [
        "start", "start-step", "text-start", "text-delta", "text-end", "data-fallback",
        "finish-step", "data-restart", "start-step", "text-start", "text-delta", "text-end",
        "finish-step", "finish",
    ]  # fmt: skip
    assert chunks[5]["data"] == {
        "kind": "retry", "reason": "stream dropped", "from": "", "to": "", "attempt": 2,
    }  # fmt: skip
    assert chunks[7] == {
        "type": "data-restart",
        "id": "restart-2",
        "data": {"attempt": 2, "superseded": 1},
    }
    deltas = [c["delta"] for c in chunks if c["type"] == "text-delta"]
    assert deltas == ["Hel", "Hello"]  # the straggler of attempt 1 is dropped
    assert chunks[2]["id"] != chunks[9]["id"]


def test_an_attempt_that_showed_nothing_is_replaced_quietly() -> None:
    chunks = seq.chunks(seq.retried_quietly())
    assert "data-restart" not in types(chunks)
    assert types(chunks)[:3] == ["start", "data-fallback", "start-step"]


def test_text_missing_from_the_deltas_is_sent_from_the_message() -> None:
    chunks = seq.chunks(seq.short_deltas())
    assert [c["delta"] for c in chunks if c["type"] == "text-delta"] == ["Hel", "lo"]
    assert chunks[-1] == {"type": "finish", "finishReason": "length"}


def test_other_turns_and_events_after_the_end_are_ignored() -> None:
    chunks = seq.chunks(seq.other_turns())
    assert [c["delta"] for c in chunks if c["type"] == "text-delta"] == ["mine"]
    assert chunks[-1]["type"] == "finish"


def test_a_waiting_call_pauses_once_every_call_of_the_step_is_accounted() -> None:
    mapper = TurnChunks(seq.TURN)
    log = seq.approval_asked()
    paused = []
    for env in log.envelopes:
        mapper.feed(env)
        paused.append(mapper.paused())
    assert paused == [False] * (len(paused) - 1) + [True]
    asked = seq.chunks(log)[-1]
    assert asked == {"type": "tool-approval-request", "approvalId": "c2", "toolCallId": "c2"}
    assert mapper.pause() == [protocol.FinishStep(), protocol.Finish(finish_reason="tool-calls")]
    granted = seq.approval_granted().envelopes[len(log.envelopes)]
    assert mapper.feed(granted) == [] and not mapper.paused()


def test_a_denied_call_is_output_denied_and_its_result_not_shown() -> None:
    chunks = seq.chunks(seq.approval_denied())
    after = types(chunks)[types(chunks).index("tool-approval-request") :]
    assert after == [
        "tool-approval-request", "tool-output-denied", "finish-step",
        "start-step", "text-start", "text-delta", "text-end", "finish-step", "finish",
    ]  # fmt: skip


def test_every_chunk_is_known_and_positions_stay_out_of_json() -> None:
    allowed = {
        "start": {"type", "messageId"},
        "start-step": {"type"},
        "finish-step": {"type"},
        "text-start": {"type", "id"},
        "text-delta": {"type", "id", "delta"},
        "text-end": {"type", "id"},
        "reasoning-start": {"type", "id"},
        "reasoning-delta": {"type", "id", "delta"},
        "reasoning-end": {"type", "id"},
        "tool-input-start": {"type", "toolCallId", "toolName", "dynamic"},
        "tool-input-available": {"type", "toolCallId", "toolName", "input", "dynamic"},
        "tool-output-available": {"type", "toolCallId", "output", "dynamic"},
        "tool-output-error": {"type", "toolCallId", "errorText", "dynamic"},
        "tool-approval-request": {"type", "approvalId", "toolCallId"},
        "tool-output-denied": {"type", "toolCallId"},
        "data-fallback": {"type", "data"},
        "data-restart": {"type", "id", "data"},
        "data-tool-progress": {"type", "id", "data"},
        "error": {"type", "errorText"},
        "abort": {"type", "reason"},
        "finish": {"type", "finishReason"},
    }
    for make in seq.SEQUENCES.values():
        for chunk in seq.chunks(make()):
            assert set(chunk) <= allowed[chunk["type"]], chunk


def test_framing_puts_the_position_on_the_last_chunk_of_an_event() -> None:
    mapper = TurnChunks(seq.TURN)
    log = seq.Log().started().add(seq.TextDelta(text="Hi"))
    mapper.feed(log.envelopes[0])
    framed = protocol.frame(mapper.feed(log.envelopes[1]), 42).decode()
    blocks = framed.split("\n\n")[:-1]
    assert [b.startswith("id: ") for b in blocks] == [False, False, True]
    assert blocks[-1].splitlines() == [
        "id: 42",
        'data: {"type":"text-delta","id":"text-1-0-1","delta":"Hi"}',
    ]


def test_replay_starts_at_the_latest_attempt() -> None:
    records = seq.records(seq.superseded())
    start = replay_start(records, seq.TURN)
    assert records[start].kind == "turn_started" and records[start].attempt == 2
    assert replay_start(seq.records(seq.Log().add(seq.UserMessage(text="q"))), seq.TURN) == 0


def test_a_hub_frame_carries_its_record_and_envelope() -> None:
    rec = seq.records(seq.text())[3]
    frame = frame_of(rec)
    assert frame.envelope == rec.envelope and frame.data.endswith(b"data: " + rec.raw + b"\n\n")


async def test_the_real_ai_sdk_assembles_every_sequence(node: str) -> None:
    streams = {name: seq.sse(make()) for name, make in seq.SEQUENCES.items()}
    result = await run_node(node, {"mode": "replay"}, stdin=json.dumps(streams))
    for name, outcome in result.items():
        expected_errors = ["Error: slow down (rate_limit)"] if name == "failure" else []
        assert outcome["errors"] == expected_errors, name
        assert outcome["message"]["id"] == seq.TURN
    parts = {name: outcome["message"]["parts"] for name, outcome in result.items()}
    assert [p["type"] for p in parts["parallel_tools"]] == [
        "step-start", "text", "dynamic-tool", "dynamic-tool", "step-start", "text",
    ]  # fmt: skip
    tool = parts["parallel_tools"][2]
    assert (tool["toolName"], tool["state"], tool["input"], tool["output"]) == (
        "threadline__add", "output-available", {"a": 1, "b": 2}, "3",
    )  # fmt: skip
    progress = [p for p in parts["tool_progress"] if p["type"] == "data-tool-progress"]
    assert progress == [
        {
            "type": "data-tool-progress", "id": "progress-c1",
            "data": {"call_id": "c1", "progress": 2.0, "total": 3.0, "message": "two"},
        }
    ]  # fmt: skip
    error = parts["tool_error"][1]
    assert (error["state"], error["errorText"]) == ("output-error", "division by zero")
    assert [p["type"] for p in parts["superseded"]] == [
        "step-start", "text", "data-fallback", "data-restart", "step-start", "text",
    ]  # fmt: skip
    assert parts["superseded"][-1]["text"] == "Hello"
    assert parts["reasoning"][1] == {
        "type": "reasoning", "id": "reasoning-1-0-1", "text": "thinking", "state": "done",
    }  # fmt: skip
    assert parts["short_deltas"][1]["text"] == "Hello"
    denied = [p for p in parts["approval_denied"] if p["type"] == "dynamic-tool"]
    assert [(p["toolCallId"], p["state"]) for p in denied] == [
        ("c1", "output-available"), ("c2", "output-denied"),
    ]  # fmt: skip
    granted = [p for p in parts["approval_granted"] if p["type"] == "dynamic-tool"]
    assert granted[1]["state"] == "output-available" and granted[1]["output"] == "x"
