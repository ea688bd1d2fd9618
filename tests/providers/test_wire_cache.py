"""The ended turns' wire messages kept between requests (providers/wire_cache.py): a
request's body is byte for byte the one mapped from scratch, over a session folded from
real events (tool calls, retries, cancels with and without output, failures, loose
messages, replayed thinking) with its context cut at every place; and a request maps
only what is new."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Final

from threadline.events.conversation import AssistantTurn, Message, ToolSpec, ToolTurn, UserTurn
from threadline.events.fold import SessionState, fold
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import (
    AssistantMessage,
    Event,
    SessionStarted,
    ToolCallRef,
    ToolResult,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from threadline.events.sessions import SessionCache
from threadline.events.store import NewEvent
from threadline.services.agent.providers import (
    ModelRequest,
    ProviderSettings,
    anthropic_map,
    openai_map,
)
from threadline.services.agent.providers.wire_cache import WireCache

OPENAI: Final = ProviderSettings(
    name="openai", api="openai", base_url="http://x/v1", default_model="m"
)
ANTHROPIC: Final = ProviderSettings(
    name="anthropic", api="anthropic", base_url="http://x", default_model="m"
)
SPEC: Final = ToolSpec(name="srv__echo", description="echo")
#: the kinds of turn, in an order that puts each next to the others
PATTERN: Final = (0, 1, 2, 2, 0, 3, 6, 6, 1, 4, 7, 0, 8, 5, 2, 7, 7, 3, 0)


def turn_events(index: int) -> list[NewEvent]:
    """The events of turn ``index``, of kind ``PATTERN[index % len(PATTERN)]``."""
    turn = f"t{index}"

    def of(event: Event, attempt: int = 1) -> NewEvent:
        return NewEvent(event=event, turn=turn, attempt=attempt)

    def call(n: int) -> ToolCallRef:
        return ToolCallRef(call_id=f"{turn}-c{n}", tool=SPEC.name, arguments={"n": n})

    def start(attempt: int = 1) -> NewEvent:
        return of(TurnStarted(turn_id=turn, attempt=attempt, provider="dev", model="m"), attempt)

    asked = NewEvent(event=UserMessage(text=f"question {index}"), turn=turn)
    answer = of(AssistantMessage(text=f"answer {index}"))
    done = of(TurnCompleted(steps=1))
    match PATTERN[index % len(PATTERN)]:
        case 0:  # a plain answer
            return [asked, start(), answer, done]
        case 1:  # two tool calls, one failing, then the answer
            calls = (call(1), call(2))
            return [
                asked, start(), of(AssistantMessage(text="", tool_calls=calls)),
                of(ToolResult(call_id=calls[0].call_id, tool=SPEC.name, content="</tool_output>")),
                of(ToolResult(call_id=calls[1].call_id, tool=SPEC.name, is_error=True)),
                of(AssistantMessage(text=f"answer {index}", step=1)), of(TurnCompleted(steps=2)),
            ]  # fmt: skip
        case 2:  # stopped before any output: only the question stays
            return [asked, start(), of(TurnCancelled(reason="stop"))]
        case 3:  # stopped after an answered tool step, during an unanswered one
            first, second = call(1), call(2)
            return [
                asked, start(), of(AssistantMessage(text="", tool_calls=(first,))),
                of(ToolResult(call_id=first.call_id, tool=SPEC.name, content="r")),
                of(AssistantMessage(text="", tool_calls=(second,), step=1)),
                of(TurnCancelled(partial_text="half an")),
            ]  # fmt: skip
        case 4:
            return [asked, start(), of(TurnFailed(error="network", message="x"))]
        case 5:  # retried: the first attempt's step is dropped
            lost = of(AssistantMessage(text="lost"))
            return [asked, start(), lost, start(2), of(answer.event, 2), of(done.event, 2)]
        case 6:
            return [NewEvent(event=UserMessage(text=f"loose {index}"))]
        case 7:  # an empty answer (no Anthropic block at all)
            return [asked, start(), of(AssistantMessage(text="")), done]
        case _:  # thinking replayed to Anthropic
            data = {"anthropic": {"signature": "S", "redacted_data": "R"}}
            said = AssistantMessage(text=f"answer {index}", reasoning="hm", provider_data=data)
            return [asked, start(), of(said), done]


def request(state: SessionState, start: int, own: Sequence[Message], tools: bool) -> ModelRequest:
    return ModelRequest(
        system="S",
        messages=(*state.committed[start:], *own),
        tools=(SPEC,) if tools else (),
        provider_data_key="anthropic",
        history=len(state.committed) - start,
    )


def owns(index: int) -> list[tuple[Message, ...]]:
    """A turn's own messages before its first step and after a tool step."""
    asked = UserTurn(text=f"now {index}")
    call = ToolCallRef(call_id=f"own{index}", tool=SPEC.name, arguments={})
    step = AssistantTurn(text="", tool_calls=(call,))
    return [(asked,), (asked, step, ToolTurn(call_id=call.call_id, tool=SPEC.name, content="o"))]


class Caches:
    """One cache per wire format, as the adapters keep them; each body checked against
    the one mapped from scratch."""

    def __init__(self) -> None:
        self.openai = WireCache(openai_map.map_messages)
        self.anthropic = WireCache(
            functools.partial(anthropic_map.map_messages, provider_data_key="anthropic")
        )

    def check(self, req: ModelRequest) -> None:
        cached = openai_map.to_openai(req, OPENAI, self.openai).body()
        assert cached == openai_map.to_openai(req, OPENAI).body()
        cached = anthropic_map.to_anthropic(req, ANTHROPIC, self.anthropic).body()
        assert cached == anthropic_map.to_anthropic(req, ANTHROPIC).body()


async def session(turns: int) -> tuple[MemoryEventStore, list[int]]:
    """A session of ``turns`` turns; the version after each."""
    store, versions = MemoryEventStore(), []
    started = NewEvent(event=SessionStarted(owner="alice", provider="dev"))
    await store.append("s", started, expected_version=0)
    for index in range(turns):
        versions.append((await store.append("s", turn_events(index)))[-1].version)
    return store, versions


async def test_a_cached_body_is_the_body_mapped_from_scratch() -> None:
    store, versions = await session(3 * len(PATTERN))
    records, sessions, caches = await store.load("s"), SessionCache(store), Caches()
    for index, version in enumerate(versions):
        # the agent's view turn after turn: states sharing the ended turns' messages
        state = fold(records[:version]) if index % 7 == 6 else await sessions.get("s")
        starts = [span.start for span in state.spans]
        # the cut moving forward as a window of the last six parts, and back to all
        for start in (starts[-6:][0], starts[-1], starts[0], len(state.committed)):
            for own in owns(index):
                caches.check(request(state, start, own, tools=index % 2 == 0))
    state = await sessions.get("s")
    for start in [span.start for span in state.spans]:  # every cut of the whole session
        caches.check(request(state, start, owns(0)[1], tools=False))


class Counting:
    """A mapper that counts the messages it maps."""

    def __init__(self) -> None:
        self.mapped = 0

    def __call__(self, messages: Sequence[Message]) -> list[Any]:
        self.mapped += len(messages)
        return openai_map.map_messages(messages)


async def test_a_request_maps_only_what_is_new() -> None:
    store, _ = await session(3 * len(PATTERN))
    sessions, mapper = SessionCache(store), Counting()
    cache, per_request = WireCache(mapper), []
    for index in range(3 * len(PATTERN), 8 * len(PATTERN)):
        state = await sessions.get("s")
        start = state.spans[-min(40, len(state.spans))].start  # a window of 40 parts
        req = request(state, start, owns(index)[1], tools=False)
        before = mapper.mapped
        cached = openai_map.to_openai(req, OPENAI, cache).body()
        per_request.append(mapper.mapped - before)
        assert cached == openai_map.to_openai(req, OPENAI).body()
        await store.append("s", turn_events(index))
    # the turn ended since (and a part it merges with) and the turn's own messages
    assert per_request[0] > 40 and max(per_request[1:]) <= 3 * 7, per_request
