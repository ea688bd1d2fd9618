"""The history: every user and assistant message in order, and per turn its tool calls,
fallbacks, failure or cancellation, and which attempt counted.

Token deltas are not stored: ``assistant_message`` carries each step's full text.
Rows written by an attempt that a later attempt replaced stay, marked ``superseded``.
"""

from __future__ import annotations

import msgspec

from threadline.events.schema import (
    AssistantMessage,
    CancelRequested,
    Fallback,
    ToolCall,
    ToolResult,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from threadline.projections.sql import Db, Table
from threadline.projections.views.base import OPEN_SQL, Rec, View, attempt_of, clip, turn_of

SUMMARY_CHARS = 500

MESSAGES = Table(
    "messages",
    (
        ("session", "text"),
        ("version", "int"),
        ("position", "int"),
        ("turn", "text"),
        ("attempt", "int"),
        ("step", "int"),
        ("role", "text"),
        ("text", "text"),
        ("reasoning", "text"),
        ("finish_reason", "text"),
        ("input_tokens", "int"),
        ("output_tokens", "int"),
        ("at", "int"),
        ("superseded", "int"),
    ),
    key=("session", "version"),
)

TURNS = Table(
    "turns",
    (
        ("session", "text"),
        ("turn", "text"),
        ("ordinal", "int"),
        ("attempt", "int"),
        ("status", "text"),
        ("provider", "text"),
        ("model", "text"),
        ("started_at", "int"),
        ("ended_at", "int"),
        ("steps", "int"),
        ("ttft_ms", "real?"),
        ("duration_ms", "real"),
        ("error", "text"),
        ("error_message", "text"),
        ("retryable", "int"),
        ("cancel_requested", "int"),
        ("cancel_request_reason", "text"),
        ("cancel_reason", "text"),
        ("partial_text", "text"),
    ),
    key=("session", "turn"),
)

TOOL_CALLS = Table(
    "tool_calls",
    (
        ("session", "text"),
        ("version", "int"),
        ("turn", "text"),
        ("attempt", "int"),
        ("step", "int"),
        ("call_id", "text"),
        ("tool", "text"),
        ("server", "text"),
        ("arguments", "text"),
        ("summary", "text"),
        ("is_error", "int"),
        ("duration_ms", "real"),
        ("result_version", "int"),
        ("at", "int"),
        ("result_at", "int"),
        ("superseded", "int"),
    ),
    key=("session", "version"),
)

FALLBACKS = Table(
    "fallbacks",
    (
        ("session", "text"),
        ("version", "int"),
        ("turn", "text"),
        ("attempt", "int"),
        ("kind", "text"),
        ("reason", "text"),
        ("from_", "text"),
        ("to_", "text"),
        ("at", "int"),
        ("superseded", "int"),
    ),
    key=("session", "version"),
)

#: 1 when a later attempt of the event's turn has already started.
_SUPERSEDED = "(SELECT COUNT(*) FROM {p}turns WHERE session = ? AND turn = ? AND attempt > ?)"
_encode_sorted = msgspec.json.Encoder(order="sorted")


def superseded(session: str, turn: str, attempt: int) -> tuple[str, tuple[object, ...]]:
    """SQL for the ``superseded`` flag of a new row (events without an attempt never are)."""
    return (_SUPERSEDED, (session, turn, attempt)) if attempt else ("0", ())


def json_text(value: object) -> str:
    """Deterministic JSON (sorted keys), so rebuilds give identical rows."""
    return _encode_sorted.encode(value).decode()


class HistoryView(View):
    name = "history"
    tables = (MESSAGES, TURNS, TOOL_CALLS, FALLBACKS)

    def apply(self, db: Db, rec: Rec) -> None:
        event = rec.env.event
        if isinstance(event, UserMessage):
            self._user(db, rec, event)
        elif isinstance(event, TurnStarted):
            self._started(db, rec, event)
        elif isinstance(event, AssistantMessage):
            self._message(db, rec, "assistant", event.text, event.reasoning, event)
        elif isinstance(event, ToolCall):
            self._tool_call(db, rec, event)
        elif isinstance(event, ToolResult):
            self._tool_result(db, rec, event)
        elif isinstance(event, Fallback):
            self._fallback(db, rec, event)
        elif isinstance(event, TurnCompleted):
            self._ended(
                db, rec, "completed", steps=event.steps, ttft_ms=event.ttft_ms,
                duration_ms=event.duration_ms,
            )  # fmt: skip
        elif isinstance(event, TurnFailed):
            self._ended(
                db, rec, "failed", error=event.error, error_message=event.message,
                retryable=int(event.retryable),
            )  # fmt: skip
        elif isinstance(event, TurnCancelled):
            if (
                self._ended(
                    db,
                    rec,
                    "cancelled",
                    cancel_reason=event.reason,
                    partial_text=event.partial_text,
                )
                and event.partial_text
            ):
                self._message(db, rec, "assistant", event.partial_text, "", None)
        elif isinstance(event, CancelRequested):
            self._cancel_requested(db, rec, event)

    def _user(self, db: Db, rec: Rec, event: UserMessage) -> None:
        self._message(db, rec, "user", event.text, "", None)
        if rec.env.turn:
            db.run(
                "INSERT INTO {p}turns (session, turn, ordinal, status) VALUES (?, ?, ?, 'pending') "
                "ON CONFLICT (session, turn) DO NOTHING",
                rec.env.session,
                rec.env.turn,
                rec.env.version,
            )

    def _started(self, db: Db, rec: Rec, event: TurnStarted) -> None:
        env = rec.env
        turn = env.turn or event.turn_id
        run = db.count if event.attempt > 1 else db.run  # the count matters for retries only
        accepted = run(
            "INSERT INTO {p}turns AS cur (session, turn, ordinal, attempt, status, provider, "
            "model, started_at) VALUES (?, ?, ?, ?, 'running', ?, ?, ?) "
            "ON CONFLICT (session, turn) DO UPDATE SET attempt = excluded.attempt, "
            "status = 'running', provider = excluded.provider, model = excluded.model, "
            f"started_at = excluded.started_at WHERE cur.status IN {OPEN_SQL} "
            "AND cur.attempt <= excluded.attempt",
            env.session, turn, env.version, event.attempt, event.provider, event.model, env.at,
        )  # fmt: skip
        if accepted and event.attempt > 1:
            for table in ("messages", "tool_calls", "fallbacks"):
                db.run(
                    f"UPDATE {{p}}{table} SET superseded = 1 WHERE session = ? AND turn = ? "
                    "AND attempt > 0 AND attempt < ? AND superseded = 0",
                    env.session,
                    turn,
                    event.attempt,
                )

    def _message(
        self,
        db: Db,
        rec: Rec,
        role: str,
        text: str,
        reasoning: str,
        event: AssistantMessage | None,
    ) -> None:
        env = rec.env
        turn, attempt = turn_of(env), attempt_of(env)
        finish = event.finish_reason if event else ("cancelled" if role == "assistant" else "")
        flag, extra = superseded(env.session, turn, attempt)
        db.run(
            "INSERT INTO {p}messages (session, version, position, turn, attempt, step, role, "
            "text, reasoning, finish_reason, input_tokens, output_tokens, at, superseded) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {flag})",
            env.session, env.version, rec.position, turn, attempt, event.step if event else 0,
            role, text, reasoning, finish, event.usage.input_tokens if event else 0,
            event.usage.output_tokens if event else 0, env.at, *extra,
        )  # fmt: skip

    def _tool_call(self, db: Db, rec: Rec, event: ToolCall) -> None:
        env = rec.env
        turn, attempt = turn_of(env), attempt_of(env)
        flag, extra = superseded(env.session, turn, attempt)
        db.run(
            "INSERT INTO {p}tool_calls (session, version, turn, attempt, step, call_id, tool, "
            f"server, arguments, at, superseded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {flag})",
            env.session, env.version, turn, attempt, event.step, event.call_id, event.tool,
            event.server, json_text(event.arguments), env.at, *extra,
        )  # fmt: skip

    def _tool_result(self, db: Db, rec: Rec, event: ToolResult) -> None:
        env = rec.env
        turn, attempt = turn_of(env), attempt_of(env)
        summary = event.summary or clip(event.content, SUMMARY_CHARS)
        matched = db.count(
            "UPDATE {p}tool_calls SET summary = ?, is_error = ?, duration_ms = ?, "
            "result_version = ?, result_at = ? WHERE session = ? AND version = "
            "(SELECT MIN(version) FROM {p}tool_calls WHERE session = ? AND turn = ? "
            "AND attempt = ? AND call_id = ? AND result_version = 0)",
            summary, int(event.is_error), event.duration_ms, env.version, env.at,
            env.session, env.session, turn, attempt, event.call_id,
        )  # fmt: skip
        if not matched:  # a result without its call: keep it, on its own row
            flag, extra = superseded(env.session, turn, attempt)
            db.run(
                "INSERT INTO {p}tool_calls (session, version, turn, attempt, step, call_id, "
                "tool, summary, is_error, duration_ms, result_version, at, result_at, "
                f"superseded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {flag})",
                env.session, env.version, turn, attempt, event.step, event.call_id, event.tool,
                summary, int(event.is_error), event.duration_ms, env.version, env.at, env.at,
                *extra,
            )  # fmt: skip

    def _fallback(self, db: Db, rec: Rec, event: Fallback) -> None:
        env = rec.env
        turn, attempt = turn_of(env), attempt_of(env)
        flag, extra = superseded(env.session, turn, attempt)
        db.run(
            "INSERT INTO {p}fallbacks (session, version, turn, attempt, kind, reason, from_, "
            f"to_, at, superseded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {flag})",
            env.session, env.version, turn, attempt, event.fallback, event.reason,
            event.from_, event.to, env.at, *extra,
        )  # fmt: skip

    def _ended(self, db: Db, rec: Rec, status: str, **fields: object) -> bool:
        """Record a terminal event; True if it applied (counted only for cancellations)."""
        env = rec.env
        run = db.count if status == "cancelled" else db.run
        names = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
        same_attempt = "" if env.attempt is None else " AND cur.attempt = excluded.attempt"
        changed = run(
            f"INSERT INTO {{p}}turns AS cur (session, turn, ordinal, attempt, status, ended_at, "
            f"{names}) VALUES (?, ?, ?, ?, ?, ?, {marks}) ON CONFLICT (session, turn) DO UPDATE "
            f"SET status = excluded.status, ended_at = excluded.ended_at, {updates} "
            f"WHERE cur.status IN {OPEN_SQL}{same_attempt}",
            env.session, turn_of(env), env.version, attempt_of(env), status, env.at,
            *fields.values(),
        )  # fmt: skip
        return bool(changed)

    def _cancel_requested(self, db: Db, rec: Rec, event: CancelRequested) -> None:
        env = rec.env
        which = "turn = ?" if env.turn else "status = 'running'"
        db.run(
            "UPDATE {p}turns SET cancel_requested = 1, cancel_request_reason = ? "
            f"WHERE session = ? AND {which}",
            event.reason,
            env.session,
            *((env.turn,) if env.turn else ()),
        )
