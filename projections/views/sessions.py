"""The sessions list: one row per session, listed per owner."""

from __future__ import annotations

from collections.abc import Sequence

from threadline.events.schema import (
    AssistantMessage,
    SessionStarted,
    TurnCancelled,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UserMessage,
)
from threadline.projections.sql import Db, Table
from threadline.projections.views.base import (
    OPEN_SQL,
    Rec,
    View,
    attempt_clause,
    turn_of,
)

SESSIONS = Table(
    "sessions",
    (
        ("session", "text"),
        ("owner", "text"),
        ("title", "text"),
        ("title_set", "int"),
        ("provider", "text"),
        ("model", "text"),
        ("forked_from", "text"),
        ("forked_version", "int"),
        ("created_at", "int"),
        ("updated_at", "int"),
        ("message_count", "int"),
        ("turn_count", "int"),
        ("last_turn", "text"),
        ("last_status", "text"),
        ("version", "int"),
        ("position", "int"),
    ),
    key=("session",),
    indexes=(("owner", "created_at", "session"),),
)

#: The turns this view has seen, the attempt that counts, and how many assistant
#: messages that attempt produced (so a superseding attempt can take them back).
SESSION_TURNS = Table(
    "session_turns",
    (
        ("session", "text"),
        ("turn", "text"),
        ("attempt", "int"),
        ("status", "text"),
        ("assistant_count", "int"),
    ),
    key=("session", "turn"),
)

_TERMINAL = {TurnCompleted: "completed", TurnFailed: "failed", TurnCancelled: "cancelled"}


def title_from(text: str) -> str:
    """A session's title when none was set: the first line of its first user message."""
    stripped = text.strip()
    return stripped.splitlines()[0][:80] if stripped else ""


class SessionsView(View):
    name = "sessions"
    tables = (SESSIONS, SESSION_TURNS)

    def before(self, db: Db, recs: Sequence[Rec]) -> None:
        first: dict[str, int] = {}
        for rec in recs:
            first.setdefault(rec.env.session, rec.env.at)
        db.many(
            "INSERT INTO {p}sessions (session, created_at, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (session) DO NOTHING",
            [(session, at, at) for session, at in first.items()],
        )

    def after(self, db: Db, recs: Sequence[Rec]) -> None:
        last: dict[str, Rec] = {}
        for rec in recs:
            last[rec.env.session] = rec
        db.many(
            "UPDATE {p}sessions SET updated_at = ?, version = ?, position = ? WHERE session = ?",
            [(r.env.at, r.env.version, r.position, s) for s, r in last.items()],
        )

    def apply(self, db: Db, rec: Rec) -> None:
        env, event = rec.env, rec.env.event
        session = env.session
        if isinstance(event, SessionStarted):
            origin = event.forked_from
            db.run(
                "UPDATE {p}sessions SET owner = ?, provider = ?, model = ?, forked_from = ?, "
                "forked_version = ? WHERE session = ?",
                event.owner,
                event.provider,
                event.model,
                origin.session if origin else "",
                origin.version if origin else 0,
                session,
            )
            if event.title:
                db.run(
                    "UPDATE {p}sessions SET title = ?, title_set = 1 WHERE session = ?",
                    event.title,
                    session,
                )
        elif isinstance(event, UserMessage):
            db.run(
                "UPDATE {p}sessions SET message_count = message_count + 1, title = CASE "
                "WHEN title_set = 0 AND title = '' THEN ? ELSE title END WHERE session = ?",
                title_from(event.text),
                session,
            )
            if env.turn:
                self._new_turn(db, session, env.turn, 0, "pending")
        elif isinstance(event, TurnStarted):
            self._started(db, session, env.turn or event.turn_id, event.attempt)
        elif isinstance(event, AssistantMessage):
            where, args = attempt_clause(env)
            changed = db.count(
                "UPDATE {p}session_turns SET assistant_count = assistant_count + 1 "
                f"WHERE session = ? AND turn = ? AND status IN {OPEN_SQL}{where}",
                session,
                turn_of(env),
                *args,
            )
            if changed:
                self._count_messages(db, session, 1)
        elif type(event) in _TERMINAL:
            self._ended(db, rec, _TERMINAL[type(event)])

    def _new_turn(self, db: Db, session: str, turn: str, attempt: int, status: str) -> bool:
        inserted = db.count(
            "INSERT INTO {p}session_turns (session, turn, attempt, status) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (session, turn) DO NOTHING",
            session,
            turn,
            attempt,
            status,
        )
        if inserted:
            db.run(
                "UPDATE {p}sessions SET turn_count = turn_count + 1, last_turn = ?, "
                "last_status = ? WHERE session = ?",
                turn,
                status,
                session,
            )
        return inserted > 0

    def _started(self, db: Db, session: str, turn: str, attempt: int) -> None:
        if self._new_turn(db, session, turn, attempt, "running"):
            return
        row = db.one(
            "SELECT attempt, status, assistant_count FROM {p}session_turns "
            "WHERE session = ? AND turn = ?",
            session,
            turn,
        )
        if row is None or row[1] not in ("pending", "running"):
            return  # a finished turn does not restart (the fold records an anomaly)
        superseding = attempt > row[0]
        db.run(
            "UPDATE {p}session_turns SET attempt = ?, status = 'running', assistant_count = ? "
            "WHERE session = ? AND turn = ?",
            max(attempt, row[0]),
            0 if superseding else row[2],
            session,
            turn,
        )
        if superseding and row[2]:
            self._count_messages(db, session, -row[2])
        self._last_status(db, session, turn, "running")

    def _ended(self, db: Db, rec: Rec, status: str) -> None:
        env, event = rec.env, rec.env.event
        where, args = attempt_clause(env)
        changed = db.count(
            f"UPDATE {{p}}session_turns SET status = ? WHERE session = ? AND turn = ? "
            f"AND status IN {OPEN_SQL}{where}",
            status,
            env.session,
            turn_of(env),
            *args,
        )
        if not changed:
            return
        self._last_status(db, env.session, turn_of(env), status)
        if isinstance(event, TurnCancelled) and event.partial_text:
            self._count_messages(db, env.session, 1)

    def _last_status(self, db: Db, session: str, turn: str, status: str) -> None:
        db.run(
            "UPDATE {p}sessions SET last_status = ? WHERE session = ? AND last_turn = ?",
            status,
            session,
            turn,
        )

    def _count_messages(self, db: Db, session: str, delta: int) -> None:
        db.run(
            "UPDATE {p}sessions SET message_count = message_count + ? WHERE session = ?",
            delta,
            session,
        )
