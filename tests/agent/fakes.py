"""Doubles for running the agent in memory: a scripted model, tools in process, a queue
that records how deliveries were settled.

:class:`ScriptedModel` implements the provider adapter interface
(``providers.parts.ModelAdapter``): each request is answered by the next scripted
:class:`Step`, its parts built by the same :class:`PartsAssembler` the real adapters use.
A request with no step left, or a step left unused, fails the test (:meth:`verify`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from threadline.events.conversation import ToolSpec
from threadline.events.schema import Usage
from threadline.events.workqueue import Backlog, Delivery, Room, WorkQueue
from threadline.services.agent.providers import (
    ModelRequest,
    ProviderError,
    ProviderRegistry,
    ProviderSettings,
)
from threadline.services.agent.providers.parts import Part, PartsAssembler
from threadline.services.agent.tools import (
    Progress,
    ToolContext,
    ToolListing,
    ToolOutcome,
    prefixed,
    split_prefixed,
)

PROVIDER = "fake"


@dataclass(eq=False)
class Hold:
    """A point in a scripted stream where it waits until the test releases it."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class Break:
    """A point where a scripted stream breaks as a dropped connection does (retryable)."""


@dataclass(eq=False)
class Step:
    """One model response: parts (and holds, a break) in order."""

    parts: tuple[Part | Hold | Break, ...]
    started: bool = False
    finished: bool = False  # streamed to the end
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # ended, either way


def answer(*chunks: str | Hold | Break) -> Step:
    """A text answer streamed in ``chunks``, with holds and breaks where given."""
    asm = PartsAssembler()
    parts: list[Part | Hold | Break] = []
    for chunk in chunks:
        parts.extend(asm.text("text", chunk) if isinstance(chunk, str) else [chunk])
    asm.usage(Usage(input_tokens=7, output_tokens=len(chunks)))
    return Step((*parts, *asm.complete()))


def tool_call(name: str, arguments: str, call_id: str = "call_1") -> Step:
    """A response asking for one tool call (``arguments`` as the model streams them)."""
    asm = PartsAssembler()
    parts = asm.tool_call(0, call_id=call_id, name=name, arguments=arguments)
    asm.usage(Usage(input_tokens=5, output_tokens=3))
    return Step((*parts, *asm.complete()))


class ScriptedModel:
    """A ``ModelAdapter`` answering from a script."""

    def __init__(self, *steps: Step) -> None:
        self.settings = ProviderSettings(
            name=PROVIDER, api="openai", base_url=None, default_model="fake-1"
        )
        self._steps: deque[Step] = deque(steps)
        self.requests: list[ModelRequest] = []
        self.unscripted: list[ModelRequest] = []

    def script(self, *steps: Step) -> None:
        self._steps.extend(steps)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Part]:
        self.requests.append(request)
        if not self._steps:
            self.unscripted.append(request)
            raise ProviderError("no scripted step left", kind="bad_request", provider=PROVIDER)
        step = self._steps.popleft()
        step.started = True
        try:
            for part in step.parts:
                if isinstance(part, Hold):
                    part.reached.set()
                    await part.released.wait()
                elif isinstance(part, Break):
                    raise ProviderError(
                        "stream broke", kind="network", provider=PROVIDER, retryable=True
                    )
                else:
                    yield part
            step.finished = True
        finally:
            step.closed.set()

    async def aclose(self) -> None:
        return None

    def verify(self) -> None:
        """Fail unless every scripted step was asked for and nothing else was."""
        assert not self.unscripted, f"requests beyond the script: {self.unscripted}"
        assert not self._steps, f"{len(self._steps)} scripted step(s) never requested"

    def registry(self) -> ProviderRegistry:
        return ProviderRegistry({PROVIDER: self.settings}, default=PROVIDER)


Tool = Callable[..., Awaitable[str]]


class LocalTools:
    """The agent's ``Tools`` in process: async functions offered as ``<server>__<name>``,
    refused outside the session's allowed servers (as the registry does)."""

    def __init__(self, server: str = "local", **tools: Tool) -> None:
        self.server = server
        self._tools = tools
        self.calls: list[tuple[str, dict[str, object], ToolContext]] = []

    async def list_tools(self, servers: Sequence[str]) -> ToolListing:
        if self.server not in servers:
            return ToolListing()
        return ToolListing(
            tools=tuple(ToolSpec(name=prefixed(self.server, n)) for n in self._tools)
        )

    async def call(
        self,
        prefixed_name: str,
        arguments: dict[str, object],
        *,
        context: ToolContext,
        progress: Progress | None = None,
    ) -> ToolOutcome:
        self.calls.append((prefixed_name, arguments, context))
        server, name = split_prefixed(prefixed_name) or ("", prefixed_name)
        tool = self._tools.get(name)
        if server != self.server or server not in context.allowed_servers or tool is None:
            return ToolOutcome(
                content=f"no tool {prefixed_name}", is_error=True, duration_ms=0.0,
                summary="no such tool", server=server, tool=name,
            )  # fmt: skip
        content = await tool(**arguments)
        return ToolOutcome(
            content=content, is_error=False, duration_ms=0.1, summary=content[:80],
            server=server, tool=name,
        )  # fmt: skip


@dataclass(frozen=True)
class Settled:
    how: str  # ack, nak, term
    position: int
    attempts: int


class WatchedQueue(WorkQueue):
    """A queue that records how each delivery was settled, for tests to wait on."""

    def __init__(self, inner: WorkQueue) -> None:
        super().__init__(name=inner.name, ack_wait_s=inner.ack_wait_s)
        self.inner = inner
        self.settled: list[Settled] = []
        self._changed = asyncio.Event()

    async def deliveries(self, room: Room) -> AsyncGenerator[Delivery, None]:
        async with contextlib.aclosing(self.inner.deliveries(room)) as deliveries:
            async for delivery in deliveries:
                yield _Watched(delivery, self)

    async def backlog(self) -> Backlog:
        return await self.inner.backlog()

    def note(self, how: str, delivery: Delivery) -> None:
        self.settled.append(Settled(how, delivery.record.position, delivery.attempts))
        self._changed.set()

    async def until(self, done: Callable[[list[Settled]], bool]) -> None:
        while not done(self.settled):
            self._changed.clear()
            await self._changed.wait()


class _Watched(Delivery):
    def __init__(self, inner: Delivery, queue: WatchedQueue) -> None:
        super().__init__(inner.record, inner.attempts)
        self._inner = inner
        self._queue = queue

    async def ack(self) -> None:
        await self._inner.ack()
        self._queue.note("ack", self)

    async def nak(self, delay_s: float = 0.0) -> None:
        await self._inner.nak(delay_s)
        self._queue.note("nak", self)

    async def term(self) -> None:
        await self._inner.term()
        self._queue.note("term", self)

    async def in_progress(self) -> None:
        await self._inner.in_progress()
