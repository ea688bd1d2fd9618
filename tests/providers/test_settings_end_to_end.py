"""Every setting a session accepts is honoured or refused, through the whole system: the
real gateway (REST), the agent and the dev model on both wire formats. What reached the
provider is what the dev model recorded (``GET /debug/requests``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.hardening.stack import Stack, running_stack
from threadline.events.schema import Fallback, ToolCall
from threadline.services.devmodel import DevModelSettings
from threadline.services.runtime.natsserver import EmbeddedNats

TWO_TOOL_STEPS = '[[tool:echo {"text": "a"}]] [[tool:echo step=1 {"text": "b"}]]'
THINKING = {"reasoning_budget_tokens": 1024, "max_tokens": 2048, "top_p": 0.95}


@pytest_asyncio.fixture(scope="module")
async def stack(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    async with running_stack(
        nats_server.url,
        Path(tmp_path_factory.mktemp("settings")),
        providers={"dev-anthropic": {"models": ["threadline-dev"]}},
        devmodel=DevModelSettings.fast(),
    ) as stack:
        yield stack


async def sent_for(stack: Stack, marker: str) -> list[dict[str, Any]]:
    """The request bodies of the conversation whose user text holds ``marker``."""
    listing = await stack.model_requests()
    return [r["body"] for r in listing["requests"] if marker in str(r["body"]["messages"])]


async def answer(stack: Stack, params: dict[str, Any], provider: str, text: str) -> list[Any]:
    session = await stack.new_session(provider=provider, tool_servers=["threadline"], params=params)
    events = await stack.until_terminal(session, await stack.say(session, text))
    assert events[-1].kind == "turn_completed", events[-1]
    return [e.event for e in events]


@pytest.mark.parametrize("provider", ["dev", "dev-anthropic"])
async def test_sampling_and_step_limit_are_honoured(stack: Stack, provider: str) -> None:
    marker = uuid.uuid4().hex
    params = {"temperature": 0.4, "top_p": 0.9, "max_tokens": 500, "max_steps": 1}
    events = await answer(stack, params, provider, f"{marker} {TWO_TOOL_STEPS}")
    # max_steps 1 (the deployment allows 8): one tool step, then an answer without tools
    assert sum(isinstance(e, ToolCall) for e in events) == 1
    assert [e.fallback for e in events if isinstance(e, Fallback)] == ["step_limit"]
    bodies = await sent_for(stack, marker)
    assert [bool(b.get("tools")) for b in bodies] == [True, False]
    for body in bodies:
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.4, 0.9, 500)


async def test_thinking_budget_reaches_anthropic(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    await answer(stack, THINKING, "dev-anthropic", marker)
    (body,) = await sent_for(stack, marker)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert (body["max_tokens"], body["top_p"]) == (2048, 0.95) and "temperature" not in body


async def test_the_session_shows_its_settings(stack: Stack) -> None:
    session = await stack.new_session(provider="dev-anthropic", params=THINKING)
    shown = (await stack.client("alice").get(f"/v1/sessions/{session}")).json()["params"]
    assert {k: shown[k] for k in THINKING} == THINKING


@pytest.mark.parametrize(
    ("provider", "params", "field"),
    [
        ("dev", {"reasoning_budget_tokens": 2048}, "reasoning_budget_tokens"),
        ("dev-anthropic", {"temperature": 1.5}, "temperature"),
        ("dev-anthropic", {"reasoning_budget_tokens": 1000}, "reasoning_budget_tokens"),
        (
            "dev-anthropic",
            {"reasoning_budget_tokens": 2048, "max_tokens": 2048},
            "reasoning_budget_tokens",
        ),
        ("dev-anthropic", {"reasoning_budget_tokens": 2048, "temperature": 0.5}, "temperature"),
        ("dev-anthropic", {"reasoning_budget_tokens": 2048, "top_p": 0.5}, "top_p"),
        ("dev-anthropic", {"max_steps": 9}, "max_steps"),
    ],
)
async def test_what_the_provider_cannot_honour_is_refused(
    stack: Stack, provider: str, params: dict[str, Any], field: str
) -> None:
    before = (await stack.model_requests())["total"]
    response = await stack.client("alice").post(
        "/v1/sessions", json={"provider": provider, "params": params}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == f"params.{field}"
    assert (await stack.model_requests())["total"] == before


async def test_a_fork_to_a_provider_that_cannot_think_is_refused(stack: Stack) -> None:
    source = await stack.new_session(provider="dev-anthropic", params=THINKING)
    response = await stack.client("alice").post(
        f"/v1/sessions/{source}/fork", json={"version": 1, "provider": "dev"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "params.reasoning_budget_tokens"
