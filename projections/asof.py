"""As-of: a session's state at a version, by the pure fold over its first events."""

from __future__ import annotations

import json
from typing import Any

from threadline.base.text import clip
from threadline.events.conversation import AssistantTurn, UserTurn
from threadline.events.fold import SessionState, fold
from threadline.events.store import EventStore, records_at


async def session_at(store: EventStore, session: str, version: int) -> SessionState:
    """The session as it was right after event ``version`` (``fold`` of its events 1..V)."""
    return fold(await records_at(store, session, version))


def render_state(state: SessionState) -> list[str]:
    """The as-of state as text: settings, the conversation a model would see, turns."""
    lines = [
        f"session {state.session} at version {state.version} (position {state.position})",
        f"  owner {state.owner or '?'}  {state.provider}/{state.model}  title {state.title!r}",
        f"conversation ({len(state.committed)} messages):",
    ]
    for message in state.committed:
        if isinstance(message, UserTurn):
            lines.append(f"  user: {_short(message.text)}")
        elif isinstance(message, AssistantTurn):
            calls = ", ".join(
                f"{c.call_id} {c.tool}({_args(c.arguments)})" for c in message.tool_calls
            )
            lines.append(
                f"  assistant: {_short(message.text)}" + (f"  calls: {calls}" if calls else "")
            )
        else:
            flag = " ERROR" if message.is_error else ""
            lines.append(
                f"  tool {message.call_id} {message.tool}{flag}: {_short(message.content)}"
            )
    lines.append(f"turns ({len(state.turns)}):")
    for turn_id, turn in state.turns.items():
        extra = f"  partial {_short(turn.partial_text)}" if turn.partial_text else ""
        error = f"  error {_short(turn.error)}" if turn.error else ""
        lines.append(f"  {turn_id}  {turn.status}  attempt {turn.attempt}{error}{extra}")
    if state.in_flight:
        lines.append(f"in flight: {state.in_flight}")
    for anomaly in state.anomalies:
        lines.append(f"anomaly: {anomaly}")
    return lines


def _short(text: str, limit: int = 200) -> str:
    return json.dumps(clip(text, limit), ensure_ascii=False)


def _args(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False, sort_keys=True)
