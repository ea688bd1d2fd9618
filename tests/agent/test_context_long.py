"""Long sessions against the real dev model over HTTP, on both stores: hundreds of
recorded turns, then real turns through the agent with a small context window. The dev
model enforces its window for real (prompt words plus ``max_tokens``), so a request
that does not fit is refused as a provider would refuse it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from tests.agent.fakes import LocalTools
from tests.agent.longsession import answer, build_session, question, turn_id
from threadline.events.conversation import AssistantTurn, UserTurn
from threadline.events.fold import fold
from threadline.events.schema import ContextTrimmed, TurnFailed, UserMessage
from threadline.events.store import EventStore, NewEvent, Recorded
from threadline.events.workqueue import MemoryWorkQueue
from threadline.services.agent.context import LOW_WATERMARK_PERCENT, estimate_tokens
from threadline.services.agent.providers import load_providers
from threadline.services.agent.service import Adapters
from threadline.services.agent.turn import AgentDeps, AgentSettings
from threadline.services.agent.worker import AgentWorker
from threadline.services.devmodel import DevModelSettings, serve
from threadline.services.gateway.history import session_detail

WINDOW = 3_000  # the dev model's window (in its tokens, words) and the agent's
MAX_TOKENS = 100


@pytest.fixture
async def devmodel() -> AsyncIterator[str]:
    settings = DevModelSettings(ttft_ms=0, tokens_per_second=0, context_tokens=WINDOW)
    async with serve(settings) as url:
        yield url


@contextlib.asynccontextmanager
async def agent(store: EventStore, url: str) -> AsyncIterator[AgentWorker]:
    """The real agent (worker, turn, OpenAI adapter) with the dev provider's window."""
    config = {"dev": {"context_tokens": WINDOW, "max_tokens": MAX_TOKENS}}
    providers = load_providers({"THREADLINE_DEVMODEL_URL": url}, config)
    adapters = Adapters(providers)
    deps = AgentDeps(
        store=store, providers=providers, adapter=adapters, tools=LocalTools(),
        settings=AgentSettings(worker="ctx", retry_base_s=0.01, delta_window_s=0.0),
    )  # fmt: skip
    try:
        yield AgentWorker(store, MemoryWorkQueue(store), deps)
    finally:
        await adapters.aclose()


async def turn(store: EventStore, url: str, session: str, turn: str, text: str) -> list[Recorded]:
    """Ask ``text`` as ``turn`` and run it to its end; the turn's events."""
    await store.append(session, NewEvent(event=UserMessage(text=text), turn=turn))
    async with agent(store, url) as worker:
        assert await worker.process(session, turn) == "done"
    return [r for r in await store.load(session) if r.turn == turn and r.kind != "user_message"]


async def sent(url: str) -> list[list[tuple[str, str]]]:
    """The messages (role, content) of each request the dev model received."""
    async with httpx.AsyncClient() as client:
        listing: dict[str, Any] = (await client.get(url + "/debug/requests")).json()
    return [[(m["role"], m["content"]) for m in r["body"]["messages"]] for r in listing["requests"]]


def trims(records: list[Recorded]) -> list[ContextTrimmed]:
    return [r.event for r in records if isinstance(r.event, ContextTrimmed)]


def turn_size(index: int, **kwargs: Any) -> int:
    """Estimated tokens of a recorded turn's two messages."""
    messages = (
        UserTurn(text=question(index, **kwargs)),
        AssistantTurn(text=answer(index, **kwargs)),
    )
    return estimate_tokens(sum(len(msgspec.json.encode(m)) for m in messages))


async def test_a_long_session_sends_the_newest_turns_that_fit(
    store: EventStore, devmodel: str
) -> None:
    await build_session(store, "long", 300)
    words = sum(len(question(i).split()) + len(answer(i).split()) for i in range(300))
    assert words + MAX_TOKENS > WINDOW  # the whole history would be refused

    events = await turn(store, devmodel, "long", "now", "and now?")

    assert events[-1].kind == "turn_completed"
    [trim] = trims(events)
    left = trim.turns
    assert 0 < left < 300 and trim.messages == 2 * left
    assert (trim.through_turn, trim.context_tokens) == (turn_id(left - 1), WINDOW)
    assert trim.budget_tokens == WINDOW - MAX_TOKENS
    low = trim.budget_tokens * LOW_WATERMARK_PERCENT // 100  # a new cut leaves room to grow
    assert trim.estimated_tokens <= low < trim.estimated_tokens + turn_size(left - 1)
    [request] = await sent(devmodel)
    newest = [
        pair for i in range(left, 300) for pair in (("user", question(i)), ("assistant", answer(i)))
    ]
    assert request == [*newest, ("user", "and now?")]

    state = fold(await store.load("long"))
    assert state.turns["now"].context == trim
    detail = msgspec.json.decode(msgspec.json.encode(session_detail(state)))
    assert detail["turns"][-1]["context"]["turns"] == left
    assert detail["turns"][-1]["context"]["through_turn"] == turn_id(left - 1)


async def test_a_refused_request_is_sent_again_cut_to_half_and_stays_cut(
    store: EventStore, devmodel: str
) -> None:
    """One-letter words: the estimate counts about half a token a word, the dev model
    one, so the first request is refused although it was estimated to fit."""
    await build_session(store, "dense", 100, words=200, word="x")

    events = await turn(store, devmodel, "dense", "now", "short")

    assert events[-1].kind == "turn_completed"
    first, retried = trims(events)
    assert (first.refused, retried.refused) == (False, True)
    assert retried.turns > first.turns
    assert retried.budget_tokens == first.estimated_tokens // 2
    assert retried.estimated_tokens <= retried.budget_tokens
    assert len(await sent(devmodel)) == 2

    events = await turn(store, devmodel, "dense", "next", "again")  # the tighter cut holds

    assert events[-1].kind == "turn_completed"
    assert trims(events) == []
    assert fold(await store.load("dense")).context == retried
    requests = await sent(devmodel)
    assert len(requests) == 3 and requests[2][0] == requests[1][0]


async def test_a_provider_that_keeps_refusing_fails_the_turn_after_one_retry(
    store: EventStore, devmodel: str
) -> None:
    await build_session(store, "stubborn", 50)

    events = await turn(store, devmodel, "stubborn", "now", "[[fail:context]] hi")

    failed = events[-1].event
    assert isinstance(failed, TurnFailed) and failed.error == "context_too_long"
    assert trims(events)[-1].refused
    assert len(await sent(devmodel)) == 2
