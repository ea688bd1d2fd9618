"""One attempt at a turn: TurnStarted, model steps and tool calls, exactly one terminal event.

Failures are typed once and recorded: a provider error becomes retries
(``Fallback(retry)``), a switch to a fallback provider (``Fallback(provider_switched)``),
a retry without tools after Ollama's "does not support tools" (``Fallback(tools_disabled)``),
or ``TurnFailed`` with the error's kind. A stop command cancels the running stream and
tool calls and records ``TurnCancelled`` with the partial text.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from asyncio import Task
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from msgspec import structs

from threadline.base.config import Settings
from threadline.base.errors import ConfigurationError, PayloadTooLarge
from threadline.base.redact import redact
from threadline.base.text import comma_list
from threadline.events import schema as ev
from threadline.events.conversation import Message, ToolSpec
from threadline.events.fold import SessionState, fold, message_of
from threadline.events.store import EventStore, Recorded
from threadline.services.agent.approvals import ApprovalRules
from threadline.services.agent.coalesce import Coalescer
from threadline.services.agent.context import (
    ContextWindow,
    Cut,
    SpanSizes,
    fixed_bytes,
    session_budget,
)
from threadline.services.agent.providers import (
    ModelAdapter,
    ModelRequest,
    ProviderError,
    ProviderRegistry,
)
from threadline.services.agent.step import StepOutcome, run_step
from threadline.services.agent.telemetry import AgentTelemetry, TurnTelemetry
from threadline.services.agent.tools import (
    Progress,
    ToolContext,
    ToolListing,
    ToolOutcome,
    split_prefixed,
)
from threadline.services.agent.writer import TurnWriter

T = TypeVar("T")


class Tools(Protocol):
    async def list_tools(self, servers: Sequence[str]) -> ToolListing: ...

    async def call(
        self,
        prefixed_name: str,
        arguments: dict[str, object],
        *,
        context: ToolContext,
        progress: Progress | None = None,
    ) -> ToolOutcome: ...


async def until(work: Coroutine[Any, Any, T], watch: Coroutine[Any, Any, object]) -> Task[T] | None:
    """Run ``work`` until it ends or ``watch`` does: ``work``'s task, done; or None when
    ``watch`` ended first (``work`` is cancelled, an error of ``watch`` raised).
    Cancelling the caller cancels both."""
    task, watcher = asyncio.create_task(work), asyncio.create_task(watch)
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        task.cancel()  # neither does anything to a task that is done
        await asyncio.gather(task, watcher, return_exceptions=True)
    if task in done:
        return task
    if error := watcher.exception():
        raise error
    return None


def denial(decision: ev.ApprovalDenied) -> str:
    """What the model is told, as the tool's result, of a call that was denied."""
    if decision.expired:
        return "This tool call was not run: nobody approved it before its deadline."
    why = f" Their reason: {decision.reason}" if decision.reason else ""
    return f"This tool call was not run: the user denied it.{why}"


def worker_id(pid: int | None = None) -> str:
    """A worker's name: host and process id (``pid`` defaults to this process)."""
    return f"{os.uname().nodename}-{os.getpid() if pid is None else pid}"


def agent_actor(worker: str) -> str:
    """The ``actor`` of the events a worker writes."""
    return f"agent:{worker}"


_DEFAULTS: Final = Settings()


@dataclass(frozen=True, kw_only=True)
class AgentSettings:
    """How a worker runs turns: the deployment's :class:`Settings` (defaults included)
    as the agent reads them, and the retry policy."""

    worker: str = "agent"
    delta_window_s: float = _DEFAULTS.delta_window_ms / 1000
    max_steps: int = _DEFAULTS.max_steps
    max_retries: int = 3
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    max_attempts: int = 3
    fallback_providers: tuple[str, ...] = ()
    approval_timeout_s: float = _DEFAULTS.approval_timeout_s

    @classmethod
    def of(cls, settings: Settings) -> AgentSettings:
        """This process's worker, as ``settings`` configure it."""
        return cls(
            worker=worker_id(), delta_window_s=settings.delta_window_ms / 1000,
            max_steps=settings.max_steps, approval_timeout_s=settings.approval_timeout_s,
            fallback_providers=comma_list(settings.fallback_providers),
        )  # fmt: skip


@dataclass
class AgentDeps:
    store: EventStore
    providers: ProviderRegistry
    #: the adapter of a provider, by name
    adapter: Callable[[str], ModelAdapter]
    tools: Tools
    settings: AgentSettings = field(default_factory=AgentSettings)
    telemetry: AgentTelemetry = field(default_factory=AgentTelemetry)
    #: the sessions' context sizes, kept between their turns
    span_sizes: SpanSizes = field(default_factory=SpanSizes)
    #: which calls wait for a person (default: none, unless the session says so)
    approvals: ApprovalRules = field(default_factory=ApprovalRules)


class RestartAttempt(Exception):
    """The attempt must start over (a stream broke after it had produced output)."""


class Waiting(Exception):
    """The attempt stops, without a terminal event, until its calls are decided."""


class Turn:
    """One attempt; :meth:`run` always ends in a terminal event unless fenced off."""

    def __init__(
        self,
        deps: AgentDeps,
        state: SessionState,
        turn_id: str,
        cancel: asyncio.Event,
        *,
        resume: bool = False,
        recorded: Callable[[Recorded], None] | None = None,
    ) -> None:
        """``resume``: carry on the attempt that counts, which stopped to wait for
        approvals decided since (:attr:`TurnState.resumable`), instead of a new one;
        ``recorded``: told of every record the attempt appends."""
        self.deps = deps
        self.cfg = deps.settings
        self.state = state
        self.turn_id = turn_id
        self.cancel = cancel
        self.resume = resume
        self.attempt = state.turns[turn_id].attempt + (0 if resume else 1)
        self.provider = state.provider or deps.providers.default_name()
        self.model = state.model
        self.obs = TurnTelemetry(deps.telemetry, self, deps.providers, self.cfg.worker)
        self.writer = TurnWriter(
            deps.store, state.session, turn_id, self.attempt, state.version,
            actor=agent_actor(self.cfg.worker), cancelled=cancel, on_append=self.obs.appended,
            on_record=recorded,
        )  # fmt: skip
        self.coalescer = Coalescer(
            self.writer.append, self.cfg.delta_window_s, max_chars=self.writer.text_chars
        )
        self.usage = ev.Usage()
        self.started = time.monotonic()
        self.first_output: float | None = None
        self.steps = 0
        #: the context cut in force (the session's, then the ones this attempt records)
        self.cut_in_force = state.context
        self._window: ContextWindow | None = None
        self._refitted_step = -1

    async def run(self) -> None:
        """Run the attempt. Raises ``Fenced`` (someone else owns the turn),
        ``RestartAttempt`` and store errors; records everything else."""
        with self.obs.attempt():
            try:
                await self._run()
            except asyncio.CancelledError:  # stopped from outside: nothing more may land
                self.coalescer.discard()
                raise

    async def _run(self) -> None:
        if not self.resume:
            started = await self.writer.append(
                ev.TurnStarted(
                    turn_id=self.turn_id, attempt=self.attempt, provider=self.provider,
                    model=self.obs.model(), worker=self.cfg.worker,
                )
            )  # fmt: skip
            await self._fold_through(started)
        if self.cancel.is_set() or self.state.turns[self.turn_id].cancel_requested:
            await self.writer.append(ev.TurnCancelled(reason="stopped before it started"))
            return
        work = await until(self._steps(), self.cancel.wait())
        if work is None:  # stop requested
            self.coalescer.discard()
            partial = self.coalescer.text if self._fitting(self.coalescer.text) else ""
            await self.writer.append(
                ev.TurnCancelled(partial_text=partial, reason="stop requested")
            )
            return
        try:
            work.result()
        except Waiting:  # a person decides; the decision brings the turn back
            return
        except ProviderError as err:
            await self._fail(err.kind, str(err), retryable=err.retryable)
        except ConfigurationError as err:
            await self._fail("configuration", redact(str(err)))
        except PayloadTooLarge as err:  # an event no split made fit (a tool result...)
            await self._fail("internal", f"the turn produced an event too large to record: {err}")

    async def _fold_through(self, started: Recorded) -> None:
        """Advance the state through this attempt's ``turn_started``: the fold then drops
        the work of the attempt it supersedes (its steps, tool results, approvals), which
        this attempt must neither send to the model nor take as decided, and notes what
        others appended before it (a stop request). The state was read before the
        attempt started; the log is the one account of which attempt counts."""
        state = self.state
        if started.version == state.version + 1:  # nothing in between: no read
            state.apply(started)
            return
        reading = self.deps.store.entries(
            state.session, from_version=state.version + 1, to_version=started.version,
            after=state.position,
        )  # fmt: skip
        async with contextlib.aclosing(reading) as records:
            fold([rec async for rec in records], state)

    def _fitting(self, *texts: str) -> bool:
        """Whether ``texts`` fit one event; text that does not stays in its deltas only
        (the fold reads a step's text from them when its event carries none)."""
        return sum(map(len, texts)) <= self.writer.text_chars

    async def _fail(self, kind: ev.ErrorKind, message: str, *, retryable: bool = False) -> None:
        await self.coalescer.flush()
        await self.writer.append(
            ev.TurnFailed(error=kind, message=redact(message), retryable=retryable)
        )

    async def _steps(self) -> None:
        tools = await self._list_tools()
        # the turn's own messages; the ended turns before it are sent as the window allows
        messages: list[Message] = list(self.state.turn_messages(self.turn_id))
        # tool steps per turn: the session's ``max_steps``, within the deployment's
        limit = min(self.state.params.max_steps or self.cfg.max_steps, self.cfg.max_steps)
        first = 0
        if self.resume:  # the step that waited: its calls decided now, then the next step
            waited, calls = self.state.turns[self.turn_id].unanswered
            steps = self.state.turns[self.turn_id].steps  # those finished before it waited
            self.usage = sum(
                (e.event.usage for e in steps if isinstance(e.event, ev.AssistantMessage)),
                ev.Usage(),
            )
            messages += await self._call_tools(waited, list(calls))
            first = self.steps = waited + 1
        for step in range(first, limit + 1):
            if step == limit and tools:
                await self._fallback(
                    "step_limit", f"{limit} tool steps used; answering without tools"
                )
                tools = ()
            outcome = await self._model_step(step, messages, tools)
            self.steps = step + 1
            messages.append(await self._close_step(step, outcome))
            if not outcome.calls:
                break
            messages += await self._call_tools(step, outcome.calls)
        await self.writer.append(
            ev.TurnCompleted(
                usage=self.usage,
                ttft_ms=(self.first_output - self.started) * 1000 if self.first_output else None,
                duration_ms=(time.monotonic() - self.started) * 1000,
                steps=self.steps,
            )
        )

    async def _list_tools(self) -> tuple[ToolSpec, ...]:
        servers = self.state.tool_servers
        if not servers:
            return ()
        listing = await self.deps.tools.list_tools(servers)
        for down in listing.unavailable:
            await self._fallback("mcp_unavailable", down.reason, from_=down.server)
        return listing.tools

    async def _close_step(self, step: int, outcome: StepOutcome) -> Message:
        self.usage = self.usage + outcome.usage
        provider_data = {self.provider: outcome.provider_data} if outcome.provider_data else {}
        said = ev.AssistantMessage(
            text=outcome.text, finish_reason=outcome.finish, usage=outcome.usage,
            reasoning=outcome.reasoning, tool_calls=tuple(outcome.calls), step=step,
            provider_data=provider_data,
        )  # fmt: skip
        fits = self._fitting(outcome.text, outcome.reasoning)
        await self.writer.append(said if fits else structs.replace(said, text="", reasoning=""))
        return message_of(said)

    async def _model_step(
        self, step: int, messages: list[Message], tools: tuple[ToolSpec, ...]
    ) -> StepOutcome:
        retries = 0
        chain = [p for p in self.cfg.fallback_providers if p != self.provider]
        while True:
            outcome = StepOutcome()
            request, cut = await self._request(step, messages, tools)
            try:
                with self.obs.chat(request, outcome, step):
                    await run_step(
                        self.deps.adapter(self.provider), request, self.writer, self.coalescer,
                        step, outcome,
                    )  # fmt: skip
            except ProviderError as err:
                if self._refit(err, outcome, cut, step):
                    continue
                if err.tools_unsupported and tools:
                    await self._fallback("tools_disabled", str(err), from_="tools", to="no tools")
                    tools = ()
                    continue
                if outcome.produced_output:
                    if err.retryable and self.attempt < self.cfg.max_attempts:
                        await self._fallback("retry", str(err), attempt=self.attempt + 1)
                        raise RestartAttempt(str(err)) from None
                    raise  # its partial output is in the log: no silent retry in place
                if err.retryable and retries < self.cfg.max_retries:
                    retries += 1
                    await self._fallback("retry", str(err), attempt=retries)
                    await asyncio.sleep(self._backoff(retries, err.retry_after_s))
                    continue
                if chain:  # (a step with output in the log never switches: raised above)
                    nxt = chain.pop(0)
                    await self._fallback("provider_switched", str(err), from_=self.provider, to=nxt)
                    self.provider, self.model, retries = nxt, "", 0
                    self._window = None  # another model, another window
                    continue
                raise
            self.first_output = self.first_output or outcome.first_output_at
            return outcome

    @property
    def window(self) -> ContextWindow:
        """The context window of the provider and model in use (made on first use: an
        unknown provider is a configuration error of the turn)."""
        if self._window is None:
            settings = self.deps.adapter(self.provider).settings
            budget = session_budget(settings, self.model, self.state.params, self.state.context)
            sizes = self.deps.span_sizes.of(self.state.session)
            self._window = ContextWindow(self.state.committed, self.state.spans, budget, sizes)
        return self._window

    async def _request(
        self, step: int, own: list[Message], tools: tuple[ToolSpec, ...]
    ) -> tuple[ModelRequest, Cut]:
        """The step's request: the turn's own messages after as much of the history as
        the window allows; a cut that differs from the one in force is recorded."""
        window, system = self.window, self.state.system_prompt
        cut = window.fit(fixed_bytes(system, tools), own, self.cut_in_force)
        if window.moved(cut, self.cut_in_force):
            self.cut_in_force = window.record(cut, step)
            await self.coalescer.flush()
            await self.writer.append(self.cut_in_force)
        params = self.state.params
        return ModelRequest(
            model=self.model,
            system=system,
            messages=(*window.history[cut.start :], *own),
            tools=tools,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            reasoning_budget_tokens=params.reasoning_budget_tokens,
            provider_data_key=self.provider,
            history=len(window.history) - cut.start,
        ), cut

    def _refit(self, err: ProviderError, outcome: StepOutcome, cut: Cut, step: int) -> bool:
        """The safety net: the provider refused the request as too long although it was
        estimated to fit; once per step, send it again cut to half that estimate."""
        if err.kind != "context_too_long" or outcome.produced_output or step == self._refitted_step:
            return False
        self._refitted_step = step
        return self.window.tighten(cut)

    def _backoff(self, retries: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(float(retry_after), 0.0), self.cfg.retry_max_s)
        return float(min(self.cfg.retry_base_s * 2 ** (retries - 1), self.cfg.retry_max_s))

    async def _fallback(
        self, kind: ev.FallbackKind, reason: str, *, from_: str = "", to: str = "", attempt: int = 0
    ) -> None:
        await self.coalescer.flush()
        event = ev.Fallback(
            fallback=kind, reason=redact(reason), from_=from_, to=to, attempt=attempt
        )
        await self.writer.append(event)

    async def _call_tools(self, step: int, calls: list[ev.ToolCallRef]) -> list[Message]:
        """Run the step's calls, a denied one answered with the denial; then ask for
        approval of each that needs it (``approval_requested``, last: a decision cannot
        come while this attempt still works) and raise :class:`Waiting` if any waits."""
        approvals = self.state.turns[self.turn_id].approvals
        ask = [
            c
            for c in calls
            if c.call_id not in approvals and self.deps.approvals.needs(self.state, c)
        ]
        held = {c.call_id for c in ask} | {c for c, a in approvals.items() if a.decision is None}
        results = await asyncio.gather(
            *(self._call_tool(step, c) for c in calls if c.call_id not in held)
        )
        for call in ask:
            timeout = self.cfg.approval_timeout_s
            server, _ = split_prefixed(call.tool) or ("", "")
            await self.writer.append(
                ev.ApprovalRequested(
                    call_id=call.call_id, tool=call.tool, server=server,
                    arguments=call.arguments, step=step,
                    deadline=int((time.time() + timeout) * 1e6) if timeout > 0 else 0,
                )
            )  # fmt: skip
        if any(c.call_id in held for c in calls):
            raise Waiting()
        return list(results)

    async def _call_tool(self, step: int, call: ev.ToolCallRef) -> Message:
        approval = self.state.turns[self.turn_id].approvals.get(call.call_id)
        if approval is not None and isinstance(approval.decision, ev.ApprovalDenied):
            result = ev.ToolResult(
                call_id=call.call_id, tool=call.tool, content=denial(approval.decision),
                is_error=True, summary="denied", step=step,
            )  # fmt: skip
        else:
            context = ToolContext(
                session_id=self.state.session, owner=self.state.owner, turn_id=self.turn_id,
                allowed_servers=self.state.tool_servers,
            )  # fmt: skip

            async def progress(done: float, total: float | None, message: str) -> None:
                await self.writer.append(
                    ev.ToolProgress(
                        call_id=call.call_id, progress=done, total=total, message=message,
                        step=step,
                    )
                )  # fmt: skip

            with self.obs.tool(call) as record:
                outcome = await self.deps.tools.call(
                    call.tool, call.arguments, context=context, progress=progress
                )
                record(outcome)
            result = ev.ToolResult(
                call_id=call.call_id, tool=call.tool, content=outcome.content,
                is_error=outcome.is_error, duration_ms=outcome.duration_ms,
                summary=outcome.summary, step=step,
            )  # fmt: skip
        await self.writer.append(result)
        return message_of(result)
