"""One model step: stream the provider's parts into events, collect what the step said."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from msgspec import structs

from threadline.events import schema as ev
from threadline.services.agent.coalesce import Coalescer
from threadline.services.agent.providers import ModelAdapter, ModelRequest
from threadline.services.agent.providers.parts import (
    FinishPart,
    ReasoningEnd,
    ToolCallEnd,
    ToolCallStart,
    UsagePart,
)
from threadline.services.agent.providers.parts import ReasoningDelta as ReasoningPart
from threadline.services.agent.providers.parts import TextDelta as TextPart
from threadline.services.agent.tools import split_prefixed
from threadline.services.agent.writer import TurnWriter


@dataclass
class StepOutcome:
    text: str = ""
    reasoning: str = ""
    calls: list[ev.ToolCallRef] = field(default_factory=list)
    usage: ev.Usage = field(default_factory=ev.Usage)
    finish: ev.FinishReason = "stop"
    provider_data: dict[str, Any] = field(default_factory=dict)
    first_output_at: float | None = None  # monotonic time of the first content part
    #: something of this step is already in the log
    produced_output: bool = False


async def run_step(
    adapter: ModelAdapter,
    request: ModelRequest,
    writer: TurnWriter,
    coalescer: Coalescer,
    step: int,
    outcome: StepOutcome,
) -> None:
    """Stream one step. ``outcome`` is filled as parts arrive (its text when the step
    ends, however it ends), so a caller that is interrupted (cancel, provider error)
    still knows what was produced."""
    coalescer.new_step(step)
    stream = adapter.stream(request)
    try:
        async for part in stream:
            if isinstance(part, TextPart):  # nearly every part: first, and checked once
                if outcome.first_output_at is None:
                    outcome.first_output_at = time.monotonic()
                outcome.produced_output = True
                await coalescer.add(ev.TextDelta, part.text)
                continue
            if isinstance(part, ReasoningPart | ToolCallStart):
                outcome.first_output_at = outcome.first_output_at or time.monotonic()
            if isinstance(part, ReasoningPart):
                outcome.produced_output = True
                outcome.reasoning += part.text
                await coalescer.add(ev.ReasoningDelta, part.text)
            elif isinstance(part, ToolCallEnd):
                outcome.produced_output = True
                await coalescer.flush()
                call = ev.ToolCallRef(
                    call_id=part.call_id, tool=part.name, arguments=part.arguments
                )
                server = (split_prefixed(call.tool) or ("", ""))[0]
                await writer.append(ev.ToolCall(**structs.asdict(call), server=server, step=step))
                outcome.calls.append(call)
            elif isinstance(part, ReasoningEnd) and part.provider_data:
                outcome.provider_data = dict(part.provider_data)
            elif isinstance(part, UsagePart):
                outcome.usage = outcome.usage + part.usage
            elif isinstance(part, FinishPart):
                outcome.finish = part.reason
    finally:
        outcome.text = coalescer.text  # however the step ends
        await stream.aclose()  # type: ignore[attr-defined]
    await coalescer.flush()
    if outcome.calls:
        outcome.finish = "tool_calls"
