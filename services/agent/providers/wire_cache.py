"""A long session's ended turns on the wire, mapped and encoded once per adapter.

A request's ``messages`` start with :attr:`~.parts.ModelRequest.history` messages of
the session's ended turns: the fold's objects, which never change. :class:`WireCache`
(one per adapter and wire format) keeps each conversation it has sent as a chain: its
messages, each wire message encoded (``msgspec.Raw``, copied into the body as is), in
*runs*. A request maps only the turns ended since the one before and its own messages,
and copies the rest, so its cost follows what is new and the bytes sent, not the
session's length; the body is byte for byte the one mapped from scratch.

Why runs: a mapper (``map_messages`` of a wire format) repairs tool calls up to the next
user message and merges adjacent wire messages of the same role (two user turns in a
row...). So the ended messages are mapped from each user message on, alone, and such a
part starts a new run when its first wire message's role differs from the last one
before it: then nothing before it can change its wire messages (nor it theirs). A part
that would merge is mapped again with the run before it, as one run. A request's
history starts at a turn's start; when that is not a run's start, or the messages are
not the chain's, the chain starts there afresh. Chains are found by the identity of a
run's first message, checked against the request's (the chain holds them, so an id
stays theirs) and dropped least recently used first.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from threadline.events.conversation import Message, ToolTurn, UserTurn

#: conversation -> wire messages (each a dict with a ``role``)
Mapper = Callable[[Sequence[Message]], list[Any]]

#: conversations kept at once; beyond this the least recently used is forgotten
MAX_CHAINS: Final = 1_024

_encode = msgspec.json.Encoder().encode


def has_tool_turns(messages: Sequence[Message]) -> bool:
    return any(isinstance(m, ToolTurn) for m in messages)


@dataclass(eq=False)
class _Chain:
    """One conversation's ended messages as sent, in runs: run ``r`` starts at
    ``messages[runs[r]]`` and ``raws[at[r]]``, after ``tools[r]`` tool results."""

    messages: list[Message] = field(default_factory=list)
    raws: list[msgspec.Raw] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    at: list[int] = field(default_factory=list)
    tools: list[int] = field(default_factory=list)
    tool_count: int = 0

    def start(self, run: int) -> tuple[int, int, int]:
        """Where run ``run`` starts (``len(runs)``: the end): message and raw index, and
        the tool results before it."""
        if run < len(self.runs):
            return self.runs[run], self.at[run], self.tools[run]
        return len(self.messages), len(self.raws), self.tool_count


class WireCache:
    """The wire messages of the conversations an adapter sends, kept between requests."""

    def __init__(self, mapper: Mapper) -> None:
        self._map = mapper
        self._chains: OrderedDict[int, _Chain] = OrderedDict()  # id(chain) -> chain, LRU
        #: id(a part's first message) -> its chain and index there
        self._starts: dict[int, tuple[_Chain, int]] = {}

    def wire(self, messages: Sequence[Message], history: int) -> tuple[list[Any], bool]:
        """``messages`` as wire messages (of the first ``history`` ones, most encoded
        already: ``msgspec.Raw``), and whether a tool result is among them."""
        found = self._chain(messages[:history]) if history else None
        if found is None:
            return self._map(messages), has_tool_turns(messages)
        chain, begin = found
        first = bisect.bisect_left(chain.runs, begin)  # the first run sent whole
        head = chain.messages[begin : chain.start(first)[0]]  # the rest of a merged run
        floor, tools = chain.start(first)[1:]
        own = messages[history:]
        run, more, tail = self._merged(chain, floor, len(chain.runs), own)
        mapped = self._map(head) if head else []
        if run == first and mapped and tail and mapped[-1]["role"] == tail[0]["role"]:
            mapped, tail = [], self._map((*head, *more))
        sent = chain.raws[floor : chain.start(run)[1]]
        tools = chain.tool_count > tools or has_tool_turns(head) or has_tool_turns(own)
        return [*mapped, *sent, *tail], tools

    def _merged(
        self, chain: _Chain, floor: int, run: int, more: Sequence[Message]
    ) -> tuple[int, Sequence[Message], list[Any]]:
        """``more`` after the chain's runs before ``run`` (their wire messages from
        ``raws[floor]`` on): the run it starts (``run``, or an earlier one whose wire
        messages it merges with), that run's messages and their wire messages."""
        wire = self._map(more) if more else []
        while (
            wire
            and (raw := chain.start(run)[1]) > floor
            and chain.roles[raw - 1] == wire[0]["role"]
        ):
            run -= 1
            more = (*chain.messages[chain.runs[run] : chain.start(run + 1)[0]], *more)
            wire = self._map(more)
        return run, more, wire

    def _chain(self, history: Sequence[Message]) -> tuple[_Chain, int] | None:
        """The chain holding ``history`` from the start of one of its parts, brought up
        to date, and that start (None: ``history`` does not start with a user message)."""
        if not isinstance(history[0], UserTurn):
            return None
        chain, begin = self._starts.get(id(history[0]), (None, 0))
        if chain is not None:
            cached = len(chain.messages) - begin
            same = cached <= len(history) and chain.messages[begin] is history[0]
            if same and tuple(chain.messages[begin:]) == tuple(history[:cached]):
                self._chains.move_to_end(id(chain))
                self._extend(chain, history[cached:])
                return chain, begin
        chain = _Chain()
        self._chains[id(chain)] = chain
        if len(self._chains) > MAX_CHAINS:
            self._drop(next(iter(self._chains.values())))
        self._extend(chain, history)
        return chain, 0

    def _extend(self, chain: _Chain, new: Sequence[Message]) -> None:
        """Append ``new``, part by part from each user message on: a run of its own, or
        mapped again with the runs it merges with."""
        begins = [i for i, m in enumerate(new) if isinstance(m, UserTurn)]
        if new and (not begins or begins[0]):  # leading messages join the last run
            begins.insert(0, 0)
        ends = [*begins[1:], len(new)] if begins else []
        for begin, end in zip(begins, ends, strict=True):
            part, run = new[begin:end], len(chain.runs)
            if isinstance(part[0], UserTurn):
                self._starts[id(part[0])] = (chain, len(chain.messages))
            else:
                run -= 1
                part = (*chain.messages[chain.runs[run] :], *part)
            run, part, wire = self._merged(chain, 0, run, part)
            at, chain.tool_count = chain.start(run)[1:]
            del chain.messages[chain.start(run)[0] :], chain.raws[at:], chain.roles[at:]
            del chain.runs[run:], chain.at[run:], chain.tools[run:]
            chain.runs.append(len(chain.messages))
            chain.at.append(len(chain.raws))
            chain.tools.append(chain.tool_count)
            chain.messages += part
            chain.raws += [msgspec.Raw(_encode(w)) for w in wire]
            chain.roles += [w["role"] for w in wire]
            chain.tool_count += sum(isinstance(m, ToolTurn) for m in part)

    def _drop(self, chain: _Chain) -> None:
        for message in chain.messages:
            if self._starts.get(id(message), (None, 0))[0] is chain:
                del self._starts[id(message)]
        del self._chains[id(chain)]
