"""A session's events as a readable timeline (``threadline replay``), or as JSON lines.

Each line: version, UTC time, the gap since the previous event, who, and what. Gaps
longer than ``gap_s`` get a line of their own. Consecutive text (or reasoning) deltas of
one step are folded into one line; in ``stream`` mode (``--follow``, ``--realtime``)
their text is written as it comes instead. Events of a superseded attempt are marked.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import assert_never

import msgspec

from threadline.base.text import clip
from threadline.events import schema as ev
from threadline.events.fold import fold
from threadline.events.store import Recorded

_DELTAS = (ev.TextDelta, ev.ReasoningDelta)
_INDENT = " " * 7


def iso(at: int) -> str:
    moment = datetime.datetime.fromtimestamp(at / 1e6, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def superseded_positions(records: Iterable[Recorded]) -> frozenset[int]:
    """Positions of events written by an attempt that a later attempt replaced (the
    session model's rule: :meth:`SessionState.superseded`)."""
    records = list(records)
    if not records:
        return frozenset()
    state = fold(records)
    return frozenset(rec.position for rec in records if state.superseded(rec))


def json_line(rec: Recorded, previous_at: int | None, superseded: bool = False) -> str:
    """One event as a JSON object (one line): envelope fields, gap, and the event."""
    return msgspec.json.encode(
        {
            "position": rec.position,
            "version": rec.version,
            "at": rec.envelope.at,
            "time": iso(rec.envelope.at),
            "gap_ms": None if previous_at is None else (rec.envelope.at - previous_at) / 1000,
            "actor": rec.envelope.actor,
            "turn": rec.turn,
            "attempt": rec.attempt,
            "kind": rec.kind,
            "superseded": superseded,
            "event": rec.event,
        }
    ).decode()


class Timeline:
    """Turns records into timeline text, one record at a time (``feed``), then ``close``."""

    def __init__(
        self,
        *,
        stream: bool = False,
        gap_s: float = 2.0,
        full: bool = False,
        superseded: frozenset[int] = frozenset(),
    ) -> None:
        self.stream = stream
        self.gap_s = gap_s
        self.full = full
        self.superseded = superseded
        self._prev_at: int | None = None
        #: a group of consecutive deltas: its records, key, label and text so far
        self._group: list[Recorded] = []
        self._key: tuple[object, ...] = ()
        self._label = self._text = ""

    def quote(self, text: str, limit: int = 160) -> str:
        return json.dumps(text if self.full else clip(text, limit), ensure_ascii=False)

    def feed(self, rec: Recorded) -> str:
        e = rec.event
        if not isinstance(e, _DELTAS):
            return self.close() + self._line(rec, rec.version, self.describe(rec))
        if self._group and self._key == (rec.kind, rec.turn, rec.attempt, e.step):
            self._group.append(rec)
            self._text += e.text
            return e.text if self.stream else ""
        out = self.close()
        self._group, self._text = [rec], e.text
        self._key, self._label = (rec.kind, rec.turn, rec.attempt, e.step), _delta_label(rec, e)
        if self.stream:
            return out + self._line(rec, rec.version, self._label + ":", end=" ") + e.text
        return out

    def close(self) -> str:
        """End a pending group of deltas (its line, or the end of its streamed text)."""
        if not self._group:
            return ""
        group, self._group = self._group, []
        if self.stream:  # its first line is out; the text followed it
            self._prev_at = group[-1].envelope.at
            return "\n"
        span = (group[-1].envelope.at - group[0].envelope.at) / 1e6
        count = f" x{len(group)} over {span:.3f}s" if len(group) > 1 else ""
        label = f"{self._label}{count}: {self.quote(self._text)}"
        versions = f"{group[0].version}-{group[-1].version}" if len(group) > 1 else group[0].version
        return self._line(group[0], versions, label, last_at=group[-1].envelope.at)

    def _line(
        self,
        rec: Recorded,
        version: object,
        what: str,
        *,
        end: str = "\n",
        last_at: int | None = None,
    ) -> str:
        at = rec.envelope.at
        gap = None if self._prev_at is None else (at - self._prev_at) / 1e6
        self._prev_at = last_at if last_at is not None else at
        lead = ""
        if gap is not None and gap >= self.gap_s:
            lead = f"{_INDENT}   ... {gap:.3f}s without events ...\n"
        delta = "" if gap is None else f"+{gap:.3f}s"
        mark = "  [superseded attempt]" if rec.position in self.superseded else ""
        return (  # the time of day: iso(at)[11:23], HH:MM:SS.mmm
            f"{lead}{'v' + str(version):>7}  {iso(at)[11:23]}  {delta:>9}  "
            f"{rec.envelope.actor:<14} {what}{mark}{end}"
        )

    def describe(self, rec: Recorded) -> str:  # noqa: C901 - one case per kind
        e = rec.event
        match e:
            case ev.SessionStarted():
                return self._session_started(e)
            case ev.SessionRenamed():
                return f"session renamed: {self.quote(e.title)}"
            case ev.UserMessage():
                return f"USER ({rec.turn or '-'}): {self.quote(e.text, 400)}"
            case ev.TurnStarted():
                worker = f"  worker={e.worker}" if e.worker else ""
                return (
                    f"turn {e.turn_id} attempt {e.attempt} started  {e.provider}/{e.model}{worker}"
                )
            case ev.TextDelta() | ev.ReasoningDelta():
                return f"{_delta_label(rec, e)}: {self.quote(e.text)}"
            case ev.ToolCall():
                tool = f"{e.server}.{e.tool}" if e.server else e.tool
                args = json.dumps(e.arguments, ensure_ascii=False, sort_keys=True)
                return f"TOOL CALL {e.call_id} {tool} {args if self.full else clip(args, 300)}"
            case ev.ToolResult():
                status = "ERROR" if e.is_error else "ok"
                return (
                    f"TOOL RESULT {e.call_id} {e.tool} {status} {e.duration_ms:.0f}ms: "
                    f"{self.quote(e.summary or e.content, 300)}"
                )
            case ev.ToolProgress():
                of = "" if e.total is None else f"/{e.total:g}"
                return f"TOOL PROGRESS {e.call_id} {e.progress:g}{of}: {self.quote(e.message)}"
            case ev.Fallback():
                route = f"  {e.from_ or '?'} -> {e.to or '?'}" if e.from_ or e.to else ""
                return f"FALLBACK {e.fallback}{route}: {self.quote(e.reason)}"
            case ev.AssistantMessage():
                return self._assistant(rec, e)
            case ev.TurnCompleted():
                ttft = "-" if e.ttft_ms is None else f"{e.ttft_ms:.0f}ms"
                return (
                    f"turn {rec.turn} COMPLETED  steps={e.steps} ttft={ttft} "
                    f"duration={e.duration_ms:.0f}ms in={e.usage.input_tokens} "
                    f"out={e.usage.output_tokens}"
                )
            case ev.TurnFailed():
                retry = " (retryable)" if e.retryable else ""
                return f"turn {rec.turn} FAILED {e.error}: {self.quote(e.message)}{retry}"
            case ev.TurnCancelled():
                partial = f"  partial={self.quote(e.partial_text)}" if e.partial_text else ""
                return f"turn {rec.turn} CANCELLED: {self.quote(e.reason)}{partial}"
            case ev.ContextTrimmed():
                return _context(e)
            case ev.CancelRequested():  # a stop request
                stop = "ROLLBACK" if e.rollback else "CANCEL"
                return f"{stop} REQUESTED ({rec.turn or 'running turn'}): {self.quote(e.reason)}"
            case ev.ApprovalRequested():  # a call waiting for a person
                args = json.dumps(e.arguments, ensure_ascii=False, sort_keys=True)
                return f"APPROVAL REQUESTED {e.call_id} {e.tool} {self.quote(args)}"
            case ev.ApprovalGranted():  # a person's decision (or the deadline's)
                return f"APPROVED {e.call_id}: {self.quote(e.reason)}"
            case ev.ApprovalDenied():
                expired = " (deadline passed)" if e.expired else ""
                return f"DENIED {e.call_id}{expired}: {self.quote(e.reason)}"
            case _:
                assert_never(e)

    def _session_started(self, e: ev.SessionStarted) -> str:
        parts = [f"session started  owner={e.owner}  {e.provider}/{e.model}"]
        if e.title:
            parts.append(f"title={self.quote(e.title)}")
        if e.tool_servers:
            parts.append(f"tools={','.join(e.tool_servers)}")
        if e.forked_from is not None:
            parts.append(f"forked from {e.forked_from.session}@v{e.forked_from.version}")
        return "  ".join(parts)

    def _assistant(self, rec: Recorded, e: ev.AssistantMessage) -> str:
        calls = f"  calls={','.join(c.call_id for c in e.tool_calls)}" if e.tool_calls else ""
        return (
            f"ASSISTANT ({_turn(rec)} step {e.step}, {e.finish_reason}, "
            f"in={e.usage.input_tokens} out={e.usage.output_tokens}){calls}: "
            f"{self.quote(e.text, 400)}"
        )


def _delta_label(rec: Recorded, e: ev.TextDelta | ev.ReasoningDelta) -> str:
    return f"{'text' if isinstance(e, ev.TextDelta) else 'reasoning'} ({_turn(rec)} step {e.step})"


def _turn(rec: Recorded) -> str:
    return f"{rec.turn}#{rec.attempt}" if rec.attempt else str(rec.turn or "-")


def _context(e: ev.ContextTrimmed) -> str:
    """A context cut: what the model is no longer sent, and what it is sent."""
    sent = f"~{e.estimated_tokens} of {e.budget_tokens} tokens (window {e.context_tokens})"
    refused = "  after the provider refused it as too long" if e.refused else ""
    if not e.turns:
        return f"CONTEXT (step {e.step}): whole conversation sent, {sent}{refused}"
    through = f"through {e.through_turn or 'a message'} (v{e.through_version})"
    return (
        f"CONTEXT (step {e.step}): {e.turns} oldest turns ({e.messages} messages) "
        f"left out, {through}; sent {sent}{refused}"
    )
