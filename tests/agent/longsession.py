"""Long sessions built quickly: recorded turns appended straight to a store (no model,
no agent), so a test can run one real turn on top of hundreds."""

from __future__ import annotations

from threadline.events.schema import (
    AssistantMessage,
    Event,
    SessionStarted,
    ToolCallRef,
    ToolResult,
    TurnCompleted,
    TurnStarted,
    UserMessage,
)
from threadline.events.store import EventStore, NewEvent

LOREM = (
    *("lorem", "ipsum", "dolor", "sit", "amet", "consectetur"),
    *("adipiscing", "elit", "sed", "do", "eiusmod", "tempor"),
)


def turn_id(index: int) -> str:
    return f"h{index:04d}"


def question(index: int, words: int = 8, word: str = "") -> str:
    filler = " ".join(word or LOREM[(index + i) % len(LOREM)] for i in range(words))
    return f"question {index:04d}: {filler}"


def answer(index: int, words: int = 8, word: str = "") -> str:
    filler = " ".join(word or LOREM[(index * 3 + i) % len(LOREM)] for i in range(words))
    return f"answer {index:04d}: {filler}"


def recorded_turn(
    index: int, *, words: int = 8, word: str = "", tool: bool = False
) -> list[NewEvent]:
    """The events of one completed turn (with a tool call and its result if ``tool``)."""
    turn = turn_id(index)

    def of(event: Event) -> NewEvent:
        return NewEvent(event=event, turn=turn, attempt=1)

    out = [
        NewEvent(event=UserMessage(text=question(index, words, word)), turn=turn),
        of(TurnStarted(turn_id=turn, attempt=1, provider="dev", model="threadline-dev")),
    ]
    step = 0
    if tool:
        call = ToolCallRef(call_id=f"{turn}-call", tool="local__echo", arguments={"n": index})
        out += [
            of(AssistantMessage(text="", finish_reason="tool_calls", tool_calls=(call,))),
            of(ToolResult(call_id=call.call_id, tool=call.tool, content=f"echo {index}")),
        ]
        step = 1
    out += [
        of(AssistantMessage(text=answer(index, words, word), step=step)),
        of(TurnCompleted(steps=step + 1)),
    ]
    return out


async def build_session(
    store: EventStore,
    session: str,
    turns: int,
    *,
    provider: str = "dev",
    words: int = 8,
    word: str = "",
    tool_every: int = 0,
    tool_servers: tuple[str, ...] = (),
) -> None:
    """``session`` with ``turns`` completed turns ``h0000``...; every ``tool_every``-th
    one calls a tool."""
    started = SessionStarted(owner="alice", provider=provider, tool_servers=tool_servers)
    await store.append(session, NewEvent(event=started), expected_version=0)
    batch: list[NewEvent] = []
    for index in range(turns):
        tool = bool(tool_every) and index % tool_every == 0
        batch += recorded_turn(index, words=words, word=word, tool=tool)
    await store.append(session, batch)
