"""Usage and latency per turn: tokens in and out, time to first token, duration, by
provider and model; summable per owner and per (UTC) day.

A row counts the attempt that counts (the session model's rule,
:func:`~threadline.events.turns.transition`, on the phase the row keeps): a superseding
attempt starts from zero. Tokens come from ``turn_completed`` when it reports any,
otherwise from the sum of the attempt's ``assistant_message`` steps (so failed and
cancelled turns still show what they spent). The day is the day the turn started. A
turn a fork copied from another session (``is_fork_copy``: its events say what they
copy) keeps a row, with no owner: it was spent, and is counted, in its source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from msgspec.structs import astuple  # Usage: input, output, reasoning, cached input

from threadline.events import schema as ev
from threadline.events.turns import transition, turn_of
from threadline.projections.sql import Db, Table
from threadline.projections.views.base import Rec, TurnRows, View, day_of, keep_turns

USAGE = Table(
    "usage",
    (
        ("session", "text"),
        ("turn", "text"),
        ("owner", "text"),
        ("provider", "text"),
        ("model", "text"),
        ("day", "text"),
        ("attempt", "int"),
        ("status", "text"),
        ("input_tokens", "int"),
        ("output_tokens", "int"),
        ("reasoning_tokens", "int"),
        ("cached_input_tokens", "int"),
        ("ttft_ms", "real?"),
        ("duration_ms", "real"),
        ("steps", "int"),
        ("started_at", "int"),
        ("ended_at", "int"),
    ),
    key=("session", "turn"),
    indexes=(("owner", "day"),),
)

#: What a turn_completed that reports tokens sets (else the steps' sums stay).
_REPORTED = ", input_tokens = ?, output_tokens = ?, reasoning_tokens = ?, cached_input_tokens = ?"

#: The owner of each session, kept by this view so that it rebuilds on its own.
USAGE_OWNERS = Table("usage_owners", (("session", "text"), ("owner", "text")), key=("session",))


class UsageView(View):
    name = "usage"
    tables = (USAGE, USAGE_OWNERS)

    def before(self, db: Db, recs: Sequence[Rec]) -> None:
        keep_turns(db, USAGE.name, ("status", "attempt"), recs)

    def apply(self, db: Db, rec: Rec) -> None:
        env, event = rec.env, rec.env.event
        match event:
            case ev.SessionStarted():
                db.run(
                    "INSERT INTO {p}usage_owners (session, owner) VALUES (?, ?) "
                    "ON CONFLICT (session) DO UPDATE SET owner = excluded.owner",
                    env.session,
                    event.owner,
                )
            case (
                ev.TurnStarted() | ev.AssistantMessage() | ev.TurnCompleted() | ev.TurnFailed()
                | ev.TurnCancelled()
            ):  # fmt: skip
                self._turn(db, rec)
            case (
                ev.SessionRenamed() | ev.UserMessage() | ev.CancelRequested() | ev.TextDelta()
                | ev.ReasoningDelta() | ev.ToolCall() | ev.ToolResult() | ev.ToolProgress()
                | ev.Fallback() | ev.ContextTrimmed()
                | ev.ApprovalRequested() | ev.ApprovalGranted() | ev.ApprovalDenied()
            ):  # fmt: skip
                pass  # spends nothing
            case _:
                assert_never(event)

    def _turn(self, db: Db, rec: Rec) -> None:
        env, event = rec.env, rec.env.event
        turn = turn_of(env)
        if turn is None:
            return
        turns = TurnRows.of(db, USAGE.name)
        verdict, after = transition(turns.phase(env.session, turn), event, env.attempt)
        key = (env.session, turn)
        if verdict in ("starts", "ends") and after is not None:
            # what the statements below set: a started attempt's row runs (a new row, or
            # a superseded attempt's, which was running), an ended one has its status
            turns.put(env.session, turn, (after.status, after.attempt))
        if verdict == "starts" and isinstance(event, ev.TurnStarted):
            # a new attempt: a fresh row (a turn a fork copied was spent in its source, so
            # its row has no owner to charge)
            db.run(
                "INSERT INTO {p}usage (session, turn, owner, provider, model, day, attempt, "
                "status, started_at) VALUES (?, ?, CASE WHEN ? THEN '' ELSE COALESCE((SELECT "
                "owner FROM {p}usage_owners WHERE session = ?), '') END, ?, ?, ?, ?, "
                "'running', ?) ON CONFLICT (session, turn) DO UPDATE SET "
                "provider = excluded.provider, model = excluded.model, "
                "attempt = excluded.attempt, input_tokens = 0, output_tokens = 0, "
                "reasoning_tokens = 0, cached_input_tokens = 0, steps = 0",
                env.session, turn, ev.is_fork_copy(env), env.session, event.provider,
                event.model, day_of(env.at), event.attempt, env.at,
            )  # fmt: skip
        elif verdict == "applies" and isinstance(event, ev.AssistantMessage):
            db.run(
                "UPDATE {p}usage SET input_tokens = input_tokens + ?, "
                "output_tokens = output_tokens + ?, reasoning_tokens = reasoning_tokens + ?, "
                "cached_input_tokens = cached_input_tokens + ?, steps = steps + 1 "
                "WHERE session = ? AND turn = ?",
                *astuple(event.usage), *key,
            )  # fmt: skip
        elif verdict == "ends" and isinstance(event, ev.TurnCompleted):
            reported = astuple(event.usage) if any(astuple(event.usage)) else ()
            tokens = _REPORTED if reported else ""
            db.run(
                "UPDATE {p}usage SET status = 'completed', ttft_ms = ?, duration_ms = ?, "
                f"steps = ?, ended_at = ?{tokens} WHERE session = ? AND turn = ?",
                event.ttft_ms, event.duration_ms, event.steps, env.at,
                *reported, *key,
            )  # fmt: skip
        elif verdict == "ends":
            db.run(
                "UPDATE {p}usage SET status = ?, ended_at = ?, "
                "duration_ms = (? - started_at) / 1000.0 WHERE session = ? AND turn = ?",
                "failed" if isinstance(event, ev.TurnFailed) else "cancelled", env.at, env.at, *key,
            )  # fmt: skip
