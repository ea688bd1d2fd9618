"""Usage and latency per turn: tokens in and out, time to first token, duration, by
provider and model; summable per owner and per (UTC) day.

A row counts the attempt that counts: a superseding attempt starts from zero. Tokens
come from ``turn_completed`` when it reports any, otherwise from the sum of the
attempt's ``assistant_message`` steps (so failed and cancelled turns still show what
they spent). The day is the day the turn started. A turn a fork copied from another
session (``is_fork_copy``: its events say what they copy) keeps a row, with no owner: it was spent,
and is counted, in its source.
"""

from __future__ import annotations

from threadline.events.schema import (
    AssistantMessage,
    SessionStarted,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
    is_fork_copy,
)
from threadline.projections.sql import Db, Table
from threadline.projections.views.base import Rec, View, attempt_clause, day_of, turn_of

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

#: The owner of each session, kept by this view so that it rebuilds on its own.
USAGE_OWNERS = Table("usage_owners", (("session", "text"), ("owner", "text")), key=("session",))


def _tokens(usage: Usage) -> tuple[int, int, int, int]:
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.reasoning_tokens,
        usage.cached_input_tokens,
    )


class UsageView(View):
    name = "usage"
    tables = (USAGE, USAGE_OWNERS)

    def apply(self, db: Db, rec: Rec) -> None:
        env, event = rec.env, rec.env.event
        if isinstance(event, SessionStarted):
            db.run(
                "INSERT INTO {p}usage_owners (session, owner) VALUES (?, ?) "
                "ON CONFLICT (session) DO UPDATE SET owner = excluded.owner",
                env.session,
                event.owner,
            )
        elif isinstance(event, TurnStarted):
            # a turn a fork copied was spent in its source: its row has no owner to charge
            copied = is_fork_copy(env)
            db.run(
                "INSERT INTO {p}usage AS cur (session, turn, owner, provider, model, day, "
                "attempt, status, started_at) VALUES (?, ?, CASE WHEN ? THEN '' ELSE "
                "COALESCE((SELECT owner FROM {p}usage_owners WHERE session = ?), '') END, "
                "?, ?, ?, ?, 'running', ?) "
                "ON CONFLICT (session, turn) DO UPDATE SET provider = excluded.provider, "
                "model = excluded.model, attempt = excluded.attempt, input_tokens = 0, "
                "output_tokens = 0, reasoning_tokens = 0, cached_input_tokens = 0, steps = 0 "
                "WHERE cur.status = 'running' AND cur.attempt < excluded.attempt",
                env.session, env.turn or event.turn_id, copied, env.session, event.provider,
                event.model, day_of(env.at), event.attempt, env.at,
            )  # fmt: skip
        elif isinstance(event, AssistantMessage):
            where, args = attempt_clause(env)
            db.run(
                "UPDATE {p}usage SET input_tokens = input_tokens + ?, "
                "output_tokens = output_tokens + ?, reasoning_tokens = reasoning_tokens + ?, "
                "cached_input_tokens = cached_input_tokens + ?, steps = steps + 1 "
                f"WHERE session = ? AND turn = ? AND status = 'running'{where}",
                *_tokens(event.usage), env.session, turn_of(env), *args,
            )  # fmt: skip
        elif isinstance(event, TurnCompleted):
            self._completed(db, rec, event)
        elif isinstance(event, TurnFailed | TurnCancelled):
            where, args = attempt_clause(env)
            db.run(
                "UPDATE {p}usage SET status = ?, ended_at = ?, "
                "duration_ms = (? - started_at) / 1000.0 "
                f"WHERE session = ? AND turn = ? AND status = 'running'{where}",
                "failed" if isinstance(event, TurnFailed) else "cancelled",
                env.at, env.at, env.session, turn_of(env), *args,
            )  # fmt: skip

    def _completed(self, db: Db, rec: Rec, event: TurnCompleted) -> None:
        env = rec.env
        where, args = attempt_clause(env)
        reported = any(_tokens(event.usage))
        tokens = (
            ", input_tokens = ?, output_tokens = ?, reasoning_tokens = ?, cached_input_tokens = ?"
            if reported
            else ""
        )
        db.run(
            "UPDATE {p}usage SET status = 'completed', ttft_ms = ?, duration_ms = ?, steps = ?, "
            f"ended_at = ?{tokens} WHERE session = ? AND turn = ? AND status = 'running'{where}",
            event.ttft_ms, event.duration_ms, event.steps, env.at,
            *(_tokens(event.usage) if reported else ()), env.session, turn_of(env), *args,
        )  # fmt: skip
