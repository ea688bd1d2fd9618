"""Hand-built event sequences of one turn, and their UI message streams."""

from __future__ import annotations

from typing import Any

import msgspec

from threadline.events import codec
from threadline.events.schema import (
    ApprovalDenied,
    ApprovalGranted,
    ApprovalRequested,
    AssistantMessage,
    Envelope,
    Event,
    Fallback,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallRef,
    ToolProgress,
    ToolResult,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from threadline.events.store import Recorded
from threadline.services.gateway.aisdk import protocol
from threadline.services.gateway.aisdk.chunks import TurnChunks

TURN = "T1"


class Log:
    """Envelopes of a session, numbered as the store would."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    def add(self, event: Event, *, attempt: int | None = 1, turn: str = TURN) -> Log:
        version = len(self.envelopes) + 1
        self.envelopes.append(
            Envelope(
                schema=1, session="s", version=version, at=0, actor="agent:test",
                key=str(version), prev="", event=event, turn=turn, attempt=attempt,
            )
        )  # fmt: skip
        return self

    def started(self, attempt: int = 1) -> Log:
        return self.add(
            TurnStarted(turn_id=TURN, attempt=attempt, provider="dev", model="m"), attempt=attempt
        )


def records(log: Log) -> list[Recorded]:
    """The envelopes as stored records (position = version)."""
    out = []
    for env in log.envelopes:
        raw = codec.encode(env)
        out.append(Recorded(env.version, env, codec.record_hash(raw), raw))
    return out


def chunks(log: Log) -> list[dict[str, Any]]:
    """The chunks of turn T1 as JSON objects (``start`` first)."""
    mapper = TurnChunks(TURN)
    out = mapper.start()
    for env in log.envelopes:
        out += mapper.feed(env)
    return [msgspec.json.decode(msgspec.json.encode(c)) for c in out]


def sse(log: Log) -> str:
    """The stream as the gateway frames it (positions = versions), ``[DONE]`` included."""
    mapper = TurnChunks(TURN)
    out = protocol.frame(mapper.start())
    for env in log.envelopes:
        out += protocol.frame(mapper.feed(env), env.version)
    return (out + protocol.DONE).decode()


def text() -> Log:
    log = Log().add(UserMessage(text="hi"), attempt=None).started()
    for piece in ("Hel", "lo", "!"):
        log.add(TextDelta(text=piece))
    return log.add(AssistantMessage(text="Hello!")).add(TurnCompleted())


def reasoning() -> Log:
    log = Log().started()
    log.add(ReasoningDelta(text="think")).add(ReasoningDelta(text="ing"))
    log.add(TextDelta(text="Answer"))
    return log.add(AssistantMessage(text="Answer", reasoning="thinking")).add(TurnCompleted())


def parallel_tools() -> Log:
    log = Log().started()
    calls = (
        ToolCallRef(call_id="c1", tool="threadline__add", arguments={"a": 1, "b": 2}),
        ToolCallRef(call_id="c2", tool="threadline__echo", arguments={"text": "x"}),
    )
    log.add(TextDelta(text="Let me see."))
    for call in calls:
        log.add(ToolCall(call_id=call.call_id, tool=call.tool, arguments=call.arguments))
    log.add(AssistantMessage(text="Let me see.", finish_reason="tool_calls", tool_calls=calls))
    log.add(ToolResult(call_id="c2", tool="threadline__echo", content="x"))
    log.add(ToolResult(call_id="c1", tool="threadline__add", content="3"))
    log.add(TextDelta(text="3 and x", step=1))
    return log.add(AssistantMessage(text="3 and x", step=1)).add(TurnCompleted(steps=2))


def tool_error() -> Log:
    log = Log().started()
    log.add(ToolCall(call_id="c1", tool="threadline__calculate", arguments={"expr": "1/0"}))
    call = ToolCallRef(call_id="c1", tool="threadline__calculate", arguments={"expr": "1/0"})
    log.add(AssistantMessage(text="", finish_reason="tool_calls", tool_calls=(call,)))
    log.add(ToolResult(call_id="c1", content="division by zero", is_error=True))
    log.add(TextDelta(text="It failed.", step=1))
    return log.add(AssistantMessage(text="It failed.", step=1)).add(TurnCompleted(steps=2))


def tool_progress() -> Log:
    log = Log().started()
    call = ToolCallRef(call_id="c1", tool="slow__run", arguments={})
    log.add(ToolCall(call_id="c1", tool="slow__run"))
    log.add(AssistantMessage(text="", finish_reason="tool_calls", tool_calls=(call,)))
    log.add(ToolProgress(call_id="c1", progress=1, total=3, message="one"))
    log.add(ToolProgress(call_id="c1", progress=2, total=3, message="two"))
    log.add(ToolResult(call_id="c1", tool="slow__run", content="done"))
    return log.add(AssistantMessage(text="", step=1)).add(TurnCompleted(steps=2))


def failure() -> Log:
    log = Log().started().add(TextDelta(text="Part"))
    return log.add(TurnFailed(error="rate_limit", message="slow down", retryable=True))


def cancel() -> Log:
    log = Log().started().add(TextDelta(text="Some"))
    return log.add(TurnCancelled(partial_text="Some", reason="stop requested"))


def superseded() -> Log:
    """Attempt 1 streams text, its stream breaks, attempt 2 answers."""
    log = Log().started().add(TextDelta(text="Hel"))
    log.add(Fallback(fallback="retry", reason="stream dropped", attempt=2))
    log.started(2).add(TextDelta(text="Hello"))
    log.add(TextDelta(text="late", step=0), attempt=1)  # a straggler of attempt 1
    return log.add(AssistantMessage(text="Hello"), attempt=2).add(TurnCompleted(), attempt=2)


def retried_quietly() -> Log:
    """Attempt 1 shows nothing before attempt 2 takes over: no restart marker."""
    log = Log().started().add(Fallback(fallback="retry", reason="429", attempt=1))
    log.started(2).add(TextDelta(text="Fine"), attempt=2)
    return log.add(AssistantMessage(text="Fine"), attempt=2).add(TurnCompleted(), attempt=2)


def short_deltas() -> Log:
    """The step's message has more text than its deltas: the rest is sent."""
    log = Log().started().add(TextDelta(text="Hel"))
    return log.add(AssistantMessage(text="Hello", finish_reason="length")).add(TurnCompleted())


def other_turns() -> Log:
    log = Log().started().add(TextDelta(text="mine"))
    log.add(TextDelta(text="theirs"), turn="T2")
    log.add(AssistantMessage(text="mine")).add(TurnCompleted())
    return log.add(TextDelta(text="after the end"))


def approval_asked() -> Log:
    """Two calls: c1 needs no approval and runs, c2 waits for a person."""
    log = Log().started()
    calls = (
        ToolCallRef(call_id="c1", tool="threadline__add", arguments={"a": 1, "b": 2}),
        ToolCallRef(call_id="c2", tool="threadline__echo", arguments={"text": "x"}),
    )
    for call in calls:
        log.add(ToolCall(call_id=call.call_id, tool=call.tool, arguments=call.arguments))
    log.add(AssistantMessage(text="", finish_reason="tool_calls", tool_calls=calls))
    log.add(ToolResult(call_id="c1", tool="threadline__add", content="3"))
    return log.add(
        ApprovalRequested(call_id="c2", tool="threadline__echo", arguments={"text": "x"})
    )


def approval_denied() -> Log:
    """c2 denied (a second decision is ignored); the model gets the denial as its result."""
    log = approval_asked().add(ApprovalDenied(call_id="c2", reason="no"), attempt=None)
    log.add(ApprovalGranted(call_id="c2"), attempt=None)
    log.add(ToolResult(call_id="c2", tool="threadline__echo", content="not run", is_error=True))
    log.add(TextDelta(text="Denied.", step=1))
    return log.add(AssistantMessage(text="Denied.", step=1)).add(TurnCompleted(steps=2))


def approval_granted() -> Log:
    log = approval_asked().add(ApprovalGranted(call_id="c2"), attempt=None)
    log.add(ToolResult(call_id="c2", tool="threadline__echo", content="x"))
    return log.add(AssistantMessage(text="", step=1)).add(TurnCompleted(steps=2))


SEQUENCES = {
    "approval_denied": approval_denied,
    "approval_granted": approval_granted,
    "text": text,
    "reasoning": reasoning,
    "parallel_tools": parallel_tools,
    "tool_error": tool_error,
    "tool_progress": tool_progress,
    "failure": failure,
    "cancel": cancel,
    "superseded": superseded,
    "retried_quietly": retried_quietly,
    "short_deltas": short_deltas,
    "other_turns": other_turns,
}
