"""Tool approvals through the AI SDK's own protocol: the real ``ai`` package (Node,
``addToolApprovalResponse`` with ``sendAutomaticallyWhen:
lastAssistantMessageIsCompleteWithApprovalResponses``) -> gateway -> agent -> dev model
-> the bundled MCP server. See docs/human-in-the-loop.md and
services/gateway/aisdk/approvals.py.
"""

from __future__ import annotations

from typing import Any

from tests.aisdk.conftest import Stack
from tests.aisdk.test_usechat import body, chat_id, read_stream, user

ECHO = '[[tool:echo {"text": "hi"}]] echo it'
#: a new chat whose tool calls all wait for a person (the transport's ``body`` option)
ALWAYS = {"tool_servers": ["threadline"], "approval": "always"}


def tool_part(message: dict[str, Any]) -> dict[str, Any]:
    (part,) = [p for p in message["parts"] if p["type"] == "dynamic-tool"]
    return part


async def converse(stack: Stack, **args: Any) -> tuple[str, list[Any], Any]:
    chat = chat_id()
    out = await stack.chat(mode="approve", chatId=chat, text=ECHO, body=ALWAYS, **args)
    session = stack.session(chat)
    records = [rec async for rec in stack.store.read(session)]
    return session, records, out


def paused(out: Any) -> dict[str, Any]:
    """The client's message when the first response ended: the call waits for approval."""
    first = out["paused"]
    assert first["status"] == "ready" and first["finish"]["finishReason"] == "tool-calls"
    part = tool_part(first["message"])
    assert part["state"] == "approval-requested"
    assert part["toolName"] == "threadline__echo" and part["input"] == {"text": "hi"}
    assert part["approval"] == {"id": part["toolCallId"]}  # approvalId: our call id
    return part


async def test_approved_runs_the_tool_and_the_answer_completes(stack: Stack) -> None:
    session, records, out = await converse(stack, approved=True, reason="looks safe")
    asked = paused(out)
    assert out["status"] == "ready" and out["errors"] == [] and out["error"] is None
    posts = [r for r in out["responses"] if r["method"] == "POST"]
    assert [r["status"] for r in posts] == [200, 200]  # the automatic second request
    (message,) = [m for m in out["messages"] if m["role"] == "assistant"]  # one message
    part = tool_part(message)
    assert part["state"] == "output-available" and part["output"] == "hi"
    assert part["toolCallId"] == asked["toolCallId"]
    assert message["parts"][-1]["type"] == "text" and message["parts"][-1]["text"]
    assert out["finish"]["finishReason"] == "stop"
    kinds = [r.kind for r in records]
    granted = next(r for r in records if r.kind == "approval_granted")
    assert granted.envelope.actor == "user:alice" and granted.event.reason == "looks safe"
    assert kinds.count("turn_started") == 1 and kinds[-1] == "turn_completed"
    assert kinds.count("user_message") == 1  # the answer asked no new turn


async def test_denied_is_the_models_tool_result(stack: Stack) -> None:
    session, records, out = await converse(stack, approved=False, reason="not today")
    paused(out)
    assert out["status"] == "ready" and out["errors"] == []
    (message,) = [m for m in out["messages"] if m["role"] == "assistant"]
    part = tool_part(message)
    assert part["state"] == "output-denied"
    assert part["approval"]["approved"] is False and part["approval"]["reason"] == "not today"
    denied = next(r for r in records if r.kind == "approval_denied")
    assert denied.event.reason == "not today" and denied.envelope.actor == "user:alice"
    result = next(r for r in records if r.kind == "tool_result")
    assert result.event.is_error
    assert result.event.content == (
        "This tool call was not run: the user denied it. Their reason: not today"
    )
    assert [r.kind for r in records][-1] == "turn_completed"
    assert message["parts"][-1]["type"] == "text" and message["parts"][-1]["text"]


async def test_an_answer_after_a_decision_is_refused_in_the_stream(stack: Stack) -> None:
    """Another client approved over REST first: this chat's denial gets the 409's
    reason as a ``data-approval-refused`` part, and the turn streams on as approved."""
    elsewhere = {"approved": True, "reason": "from the other tab"}
    session, records, out = await converse(
        stack, approved=False, reason="too late", elsewhere=elsewhere
    )
    asked = paused(out)
    assert out["elsewhere"]["status"] == 200
    assert out["status"] == "ready" and out["errors"] == [] and out["error"] is None
    (refused,) = [d for d in out["data"] if d["type"] == "data-approval-refused"]
    assert refused["data"]["call_id"] == asked["toolCallId"]
    assert refused["data"]["error"] == "approval_decided"
    assert "approved already (user:alice)" in refused["data"]["message"]
    (message,) = [m for m in out["messages"] if m["role"] == "assistant"]
    assert tool_part(message)["state"] == "output-available"
    assert out["finish"]["finishReason"] == "stop"
    kinds = [r.kind for r in records]
    assert kinds.count("approval_granted") == 1 and "approval_denied" not in kinds
    assert kinds[-1] == "turn_completed"


async def test_a_waiting_turn_ends_its_response_and_resume_replays_to_the_same_point(
    stack: Stack,
) -> None:
    """The response of a waiting turn ends after the approval request (it used to stay
    open until the turn ended); ``GET /api/chat/{id}/stream`` replays it to there."""
    chat = chat_id()
    async with stack.client("alice-token") as alice:
        request = body(chat, user(ECHO), **ALWAYS)
        async with alice.stream("POST", "/api/chat", json=request) as response:
            first, _, done = await read_stream(response)
        assert done and first[-2:] == [
            {"type": "finish-step"},
            {"type": "finish", "finishReason": "tool-calls"},
        ]
        (asked,) = [c for c in first if c["type"] == "tool-approval-request"]
        async with alice.stream("GET", f"/api/chat/{chat}/stream") as response:
            replayed, _, done = await read_stream(response)
        assert done and replayed == first
        call = asked["toolCallId"]
        session = stack.session(chat)
        decided = await alice.post(
            f"/v1/sessions/{session}/approvals/{call}", json={"approved": True}
        )
        assert decided.status_code == 200
        ended = await stack.ended(session, decided.json()["turn_id"])
        assert ended.kind == "turn_completed"
