"""The context window: the catalogue and its config overrides, the estimate, the cut
(whole turns, newest first, tool calls with their results), its cost, and what the
session model shows of it. Whole turns in memory: the real worker and Turn, a scripted
model (tests/agent/fakes.py)."""

from __future__ import annotations

import asyncio
import dataclasses

import msgspec
import pytest

from tests.agent import longsession
from tests.agent.fakes import (
    PROVIDER,
    Hold,
    LocalTools,
    ScriptedModel,
    Step,
    answer,
    tool_call,
)
from tests.agent.longsession import build_session, question, recorded_turn, turn_id
from threadline.base.errors import ConfigurationError
from threadline.events.conversation import AssistantTurn, Message, ToolTurn, UserTurn
from threadline.events.fold import SessionState, fold
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import ContextTrimmed, GenerationParams, UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.events.workqueue import MemoryWorkQueue
from threadline.projections.timeline import Timeline
from threadline.services.agent.context import (
    DEFAULT_CONTEXT_TOKENS,
    DEV_CONTEXT_TOKENS,
    LOW_WATERMARK_PERCENT,
    Budget,
    ContextWindow,
    SpanSizes,
    context_tokens,
    input_budget,
    session_budget,
)
from threadline.services.agent.providers import load_providers
from threadline.services.agent.turn import AgentDeps, AgentSettings
from threadline.services.agent.worker import AgentWorker
from threadline.services.commands import Fork, SessionCommands
from threadline.services.gateway.history import session_detail

# ------------------------------------------------------------------ the catalogue


@pytest.mark.parametrize(
    ("provider", "model", "tokens"),
    [
        ("openai", "gpt-4o", 128_000),
        ("openai", "gpt-4o-mini", 128_000),
        ("openai", "gpt-4.1-mini", 1_047_576),
        ("openai", "gpt-4", 8_192),
        ("anthropic", "claude-sonnet-4-5", 200_000),
        ("gemini", "gemini-2.5-flash", 1_048_576),
        ("openrouter", "anthropic/claude-sonnet-4.5", 200_000),
        ("openrouter", "some-lab/unheard-of", DEFAULT_CONTEXT_TOKENS),
        ("ollama", "llama3.2", 8_192),
        ("dev", "", DEV_CONTEXT_TOKENS),  # the provider's default model
        ("dev-anthropic", "threadline-dev", DEV_CONTEXT_TOKENS),
    ],
)
def test_the_catalogue_knows_each_providers_models(provider: str, model: str, tokens: int) -> None:
    registry = load_providers({})
    assert context_tokens(registry.settings(provider), model) == tokens


def test_the_config_file_overrides_the_catalogue_per_provider_or_per_model() -> None:
    registry = load_providers(
        {},
        {
            "dev": {"context_tokens": 2_000},
            "openai": {"context_tokens": {"gpt-4o": 100_000}},
        },
    )
    assert context_tokens(registry.settings("dev"), "") == 2_000
    assert context_tokens(registry.settings("dev"), "anything") == 2_000
    assert context_tokens(registry.settings("openai"), "gpt-4o") == 100_000
    assert context_tokens(registry.settings("openai"), "gpt-4.1") == 1_047_576


@pytest.mark.parametrize("value", [0, -5, "big", 1.5, True, {"gpt-4o": 0}, {"": 10}])
def test_a_bad_context_tokens_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="context_tokens"):
        load_providers({}, {"openai": {"context_tokens": value}})


def test_the_input_budget_leaves_room_for_the_reply() -> None:
    dev = load_providers({}, {"dev": {"max_tokens": 500}}).settings("dev")
    assert input_budget(10_000, dev, GenerationParams()) == 9_500
    assert input_budget(10_000, dev, GenerationParams(max_tokens=1_000)) == 9_000
    thinking = GenerationParams(reasoning_budget_tokens=2_000)
    assert input_budget(10_000, dev, thinking) == 7_500
    assert input_budget(1_000, dev, GenerationParams(max_tokens=4_000)) == 500  # half at least


# ------------------------------------------------------------------ the cut


async def folded(turns: int, *, tool_every: int = 0, words: int = 8) -> SessionState:
    store = MemoryEventStore()
    await build_session(store, "s", turns, tool_every=tool_every, words=words)
    await store.append("s", NewEvent(event=UserMessage(text="now then"), turn="now"))
    return fold(await store.load("s"))


def window(state: SessionState, tokens: int) -> ContextWindow:
    return ContextWindow(state.committed, state.spans, Budget(10 * tokens, tokens))


def size(messages: list[Message]) -> int:
    return sum(len(msgspec.json.encode(m)) for m in messages)


async def test_a_new_cut_sends_the_newest_whole_turns_within_the_low_watermark() -> None:
    state = await folded(50)
    own = list(state.turn_messages("now"))
    win = window(state, 600)
    cut = win.fit(0, own)
    sent = state.committed[cut.start :]
    assert 0 < cut.spans < 50
    assert cut.start == 2 * cut.spans  # a user message and an answer per turn
    assert sent[0] == UserTurn(text=question(cut.spans))  # starts at a turn
    low = 600 * LOW_WATERMARK_PERCENT // 100
    assert cut.estimated == -(-size([*sent, *own]) // 4) <= low
    older = state.committed[cut.start - 2 : cut.start]
    assert -(-size([*older, *sent, *own]) // 4) > low  # the next older turn does not fit
    event = win.record(cut, step=0)
    assert (event.turns, event.messages) == (cut.spans, cut.start)
    assert (event.through_turn, event.through_version) == (
        turn_id(cut.spans - 1),
        state.turns[turn_id(cut.spans - 1)].ended,
    )


async def test_a_tool_call_is_never_sent_without_its_result() -> None:
    state = await folded(60, tool_every=2)
    own = list(state.turn_messages("now"))
    cuts = set()
    for tokens in range(50, 3_000, 37):
        cut = window(state, tokens).fit(0, own)
        cuts.add(cut.spans)
        sent = [*state.committed[cut.start :], *own]
        assert isinstance(sent[0], UserTurn)
        called = [c.call_id for m in sent if isinstance(m, AssistantTurn) for c in m.tool_calls]
        answered = [m.call_id for m in sent if isinstance(m, ToolTurn)]
        assert called == answered
        for m in sent:  # a result only after its call
            if isinstance(m, ToolTurn):
                assert m.call_id in called[: answered.index(m.call_id) + 1]
    assert len(cuts) > 20  # the budgets cut at many places, also next to tool turns


def newest_fitting(state: SessionState, own: list[Message], tokens: int) -> int:
    """How many of the newest messages (whole turns of two) fit ``tokens`` with ``own``."""
    used, kept, history = size(own), 0, state.committed
    while (
        kept < len(history) and used + size(history[-kept - 2 : len(history) - kept]) <= 4 * tokens
    ):
        used += size(history[-kept - 2 : len(history) - kept])
        kept += 2
    return kept


@pytest.mark.parametrize("tokens", [300, 3_000])
async def test_the_estimates_cost_does_not_grow_with_the_history(tokens: int) -> None:
    """Messages encoded for a step: what is sent and one turn more, at 120 turns as
    at 1,200 (turns of the same sizes); a later step encodes only its new messages."""
    counts = []
    for turns in (120, 1_200):
        state = await folded(turns)
        own = list(state.turn_messages("now"))
        win = window(state, tokens)
        cut = win.fit(0, own)
        # the walk goes on past the new cut (a quarter of the budget) to the full budget
        fits = newest_fitting(state, own, tokens)
        assert len(state.committed) - cut.start < fits
        assert win.estimated_messages == len(own) + fits + 2
        counts.append(win.estimated_messages)
        own.append(AssistantTurn(text="a step"))
        win.fit(0, own)
        assert win.estimated_messages == counts[-1] + 1
    assert counts[0] == counts[1]


async def test_a_sessions_later_turns_estimate_only_their_new_parts() -> None:
    """The sizes of a session's parts are kept between its turns (``SpanSizes``): the
    next turn's window encodes the turn ended since and its own messages, whatever the
    length of what it sends."""
    store, sizes = MemoryEventStore(), SpanSizes()
    await build_session(store, "s", 300)
    counts = []
    for index in range(300, 305):
        state = fold(await store.load("s"))
        win = ContextWindow(state.committed, state.spans, Budget(30_000, 3_000), sizes.of("s"))
        win.fit(0, [UserTurn(text="now then")])
        counts.append(win.estimated_messages)
        await store.append("s", recorded_turn(index))
    assert counts[0] > 100 and counts[1:] == [3, 3, 3, 3]  # own, and the new turn's two


async def test_a_refusal_halves_the_budget_below_what_was_refused() -> None:
    state = await folded(40)
    own = list(state.turn_messages("now"))
    win = window(state, 800)
    refused = win.fit(0, own)
    assert win.tighten(refused)
    tighter = win.fit(0, own)
    assert win.budget == Budget(8_000, refused.estimated // 2, refused=True)
    assert tighter.spans > refused.spans and tighter.estimated <= refused.estimated // 2
    everything_cut = window(state, 1).fit(0, own)
    assert everything_cut.start == len(state.committed)
    assert not window(state, 1).tighten(everything_cut)  # nothing more to leave out


def test_a_refusal_keeps_the_tighter_budget_for_the_session_on_that_window() -> None:
    dev = load_providers({}, {"dev": {"context_tokens": 4_000, "max_tokens": 100}}).settings("dev")
    params = GenerationParams()
    assert session_budget(dev, "", params, None) == Budget(4_000, 3_900)
    tightened = ContextTrimmed(turns=3, messages=6, budget_tokens=1_000, context_tokens=4_000)
    assert session_budget(dev, "", params, tightened) == Budget(4_000, 3_900)  # not refused
    refused = msgspec.structs.replace(tightened, refused=True)
    assert session_budget(dev, "", params, refused) == Budget(4_000, 1_000, refused=True)
    other_window = msgspec.structs.replace(refused, context_tokens=8_000)
    assert session_budget(dev, "", params, other_window) == Budget(4_000, 3_900)


# ------------------------------------------------------------------ whole turns in memory


def scripted(tokens: int, *steps: Step) -> ScriptedModel:
    model = ScriptedModel(*steps)
    model.settings = dataclasses.replace(
        model.settings, context_tokens={"*": tokens}, max_tokens=100
    )
    return model


async def big(n: int) -> str:
    return "z" * n


def worker(store: MemoryEventStore, model: ScriptedModel) -> AgentWorker:
    deps = AgentDeps(
        store=store, providers=model.registry(), adapter=lambda _: model,
        tools=LocalTools(big=big), settings=AgentSettings(worker="ctx", delta_window_s=0.0),
    )  # fmt: skip
    return AgentWorker(store, MemoryWorkQueue(store), deps)


async def run(
    store: MemoryEventStore, model: ScriptedModel, turn: str, text: str
) -> list[Recorded]:
    before = await store.last_position()
    await store.append("s", NewEvent(event=UserMessage(text=text), turn=turn))
    assert await worker(store, model).process("s", turn) == "done"
    model.verify()
    return [r for r in await store.load("s") if r.position > before and r.kind != "user_message"]


def trims(records: list[Recorded]) -> list[ContextTrimmed]:
    return [r.event for r in records if isinstance(r.event, ContextTrimmed)]


async def long_store(turns: int, *, tools: bool = False) -> MemoryEventStore:
    store = MemoryEventStore()
    servers = ("local",) if tools else ()
    await build_session(store, "s", turns, provider=PROVIDER, tool_servers=servers)
    return store


async def test_a_turn_records_the_cut_and_moves_it_when_its_own_steps_grow() -> None:
    store, model = await long_store(200, tools=True), scripted(1_500)
    model.script(tool_call("local__big", '{"n": 6000}'), answer("done"))
    events = await run(store, model, "now", "use the tool")
    first, moved = trims(events)
    assert [r.kind for r in events][:2] == ["turn_started", "context_trimmed"]
    assert first.step == 0 and 0 < first.turns < 200
    assert moved.step == 1 and moved.turns == 200  # a 6,000-byte result leaves no room
    second = model.requests[1].messages
    assert isinstance(second[0], UserTurn) and second[0].text == "use the tool"
    assert isinstance(second[-1], ToolTurn) and len(second) == 3
    assert events[-1].kind == "turn_completed"
    assert fold(await store.load("s")).turns["now"].context == moved


async def test_an_unchanged_cut_is_not_recorded_again_and_a_new_attempt_inherits_it() -> None:
    store, model, hold = await long_store(200), scripted(1_500), Hold()
    model.script(answer("partial", hold, " never sent"), answer("whole"))
    await store.append("s", NewEvent(event=UserMessage(text="hello"), turn="now"))
    interrupted = asyncio.create_task(worker(store, model).process("s", "now"))
    await hold.reached.wait()
    interrupted.cancel()  # a worker stopped mid-turn: the next one starts attempt 2
    await asyncio.gather(interrupted, return_exceptions=True)
    assert await worker(store, model).process("s", "now") == "done"
    model.verify()
    events = [r for r in await store.load("s") if r.turn == "now"]
    assert [r.attempt for r in events if r.kind == "turn_started"] == [1, 2]
    [trim] = [r for r in events if isinstance(r.event, ContextTrimmed)]
    assert trim.attempt == 1  # attempt 2 sent the same cut: nothing recorded
    assert model.requests[0].messages == model.requests[1].messages
    state = fold(await store.load("s"))
    assert state.turns["now"].context == trim.event == state.context
    assert state.turns["now"].status == "completed" and state.turns["now"].attempt == 2


async def test_a_wider_window_records_that_nothing_is_left_out_any_more() -> None:
    store = await long_store(100)
    events = await run(store, scripted(1_500, answer("one")), "t1", "first")
    [cut] = trims(events)
    assert cut.turns > 0
    events = await run(store, wide := scripted(100_000, answer("two")), "t2", "second")
    [whole] = trims(events)
    assert whole.turns == 0 and whole.messages == 0
    assert len(wide.requests[0].messages) == 2 * 101 + 1
    state = fold(await store.load("s"))
    detail = msgspec.json.decode(msgspec.json.encode(session_detail(state)))
    views = {t["turn_id"]: t for t in detail["turns"]}
    assert views["t1"]["context"]["turns"] == cut.turns
    assert views["t1"]["context"]["through_turn"] == cut.through_turn
    assert views["t2"]["context"] is None and views["h0000"]["context"] is None


async def test_the_timeline_shows_the_cut() -> None:
    store = await long_store(100)
    events = await run(store, scripted(1_500, answer("one")), "t1", "first")
    line = Timeline().feed(next(r for r in events if r.kind == "context_trimmed"))
    [cut] = trims(events)
    assert f"{cut.turns} oldest turns ({cut.messages} messages) left out" in line
    assert f"through {cut.through_turn} (v{cut.through_version})" in line


async def test_a_fork_shows_the_same_cut() -> None:
    store = await long_store(100)
    events = await run(store, scripted(1_500, answer("one")), "t1", "first")
    [cut] = trims(events)
    commands = SessionCommands(store)
    head = (await store.head("s")).version
    made = await commands.fork(Fork(source="s", version=head, actor="user:alice", key="f"))
    fork = await commands.state(made.session)
    source = fold(await store.load("s"))
    assert fork.spans == source.spans and fork.committed == source.committed
    assert fork.turns["t1"].context == cut == fork.context  # the source's numbers


async def test_over_a_long_session_the_cut_moves_in_steps_and_holds_between_them() -> None:
    """150 turns after the first cut: a new cut leaves a quarter of the budget for the
    turns that follow, so a cut is recorded every few turns (not every turn), and every
    request between two cuts starts with the same message (a provider's prompt cache
    keeps its prefix)."""
    store, model, first, turns = await long_store(200), scripted(1_500), 200, 150
    cuts: dict[int, ContextTrimmed] = {}
    for index in range(first, first + turns):
        model.script(answer(longsession.answer(index)))
        events = await run(store, model, turn_id(index), question(index))
        assert events[-1].kind == "turn_completed"
        for trim in trims(events):  # one at most: a turn of one step
            assert index not in cuts
            cuts[index] = trim
    assert len(model.requests) == turns and first in cuts  # the first turn cuts
    in_force = cuts[first]
    for index, request in enumerate(model.requests, start=first):
        in_force = cuts.get(index, in_force)
        assert request.messages[0] == UserTurn(text=question(in_force.turns))
        assert in_force.estimated_tokens <= in_force.budget_tokens
    budget = in_force.budget_tokens
    largest = max(map(turn_tokens, range(first, first + turns)))
    lasts = (budget // 4) // largest - 1  # turns a cut holds at least
    assert lasts >= 3 and 2 <= len(cuts) <= turns // lasts + 1
    state = fold(await store.load("s"))
    assert state.context == cuts[max(cuts)]


def turn_tokens(index: int) -> int:
    """Estimated tokens of turn ``index``'s question and answer."""
    said = [UserTurn(text=question(index)), AssistantTurn(text=longsession.answer(index))]
    return -(-size(said) // 4)
