"""The sessions list: one row per session, listed per owner.

``message_count`` counts what the session's history shows (user messages, the steps of
each turn's counting attempt, a cancelled turn's partial text); ``turn_count``,
``last_turn`` and ``last_status`` follow the turns. What an event does to a turn is the
session model's rule (:func:`~threadline.events.turns.transition`) applied to the
phase kept in ``session_turns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import assert_never

from threadline.events import schema as ev
from threadline.events.sealing import ERASED
from threadline.events.turns import Verdict, title_from, transition, turn_of
from threadline.projections.sql import Db, Table
from threadline.projections.views.base import Rec, TurnRows, View, keep_turns

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

#: The turns this view has seen, their phase (status, the attempt that counts), and how
#: many assistant messages that attempt produced (a superseding attempt takes them back).
#: what the view reads of a turn's row before a batch (views.base.TurnRows)
_TURN_COLUMNS = ("status", "attempt", "assistant_count")

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


#: The content key a session's title was sealed with (docs/audit.md#erasure): when that
#: key is erased, so is the title here.
SESSION_TITLE_KEYS = Table(
    "session_title_keys", (("session", "text"), ("key", "text")), key=("session",)
)


class SessionsView(View):
    name = "sessions"
    tables = (SESSIONS, SESSION_TURNS, SESSION_TITLE_KEYS)

    def erase(self, db: Db, key_ids: Sequence[str]) -> None:
        marks = ", ".join("?" * len(key_ids))
        db.run(
            "UPDATE {p}sessions SET title = ? WHERE session IN (SELECT session FROM "
            f"{{p}}session_title_keys WHERE key IN ({marks}))",
            ERASED,
            *key_ids,
        )

    def before(self, db: Db, recs: Sequence[Rec]) -> None:
        keep_turns(db, SESSION_TURNS.name, _TURN_COLUMNS, recs)
        first = {rec.env.session: rec.env.at for rec in reversed(recs)}  # the earliest wins
        db.many(
            "INSERT INTO {p}sessions (session, created_at, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (session) DO NOTHING",
            [(session, at, at) for session, at in first.items()],
        )

    def after(self, db: Db, recs: Sequence[Rec]) -> None:
        last = {rec.env.session: rec for rec in recs}  # the latest wins
        db.many(
            "UPDATE {p}sessions SET updated_at = ?, version = ?, position = ? WHERE session = ?",
            [(r.env.at, r.env.version, r.position, s) for s, r in last.items()],
        )

    def apply(self, db: Db, rec: Rec) -> None:
        event = rec.env.event
        match event:
            case ev.SessionStarted():
                self._session_started(db, rec, event)
            case ev.SessionRenamed():
                self._named(db, rec, event.title)
            case ev.UserMessage():
                self._title(db, rec, event.text)
                if rec.env.turn is None:  # a message outside any turn
                    db.run(
                        "UPDATE {p}sessions SET message_count = message_count + 1 "
                        "WHERE session = ?",
                        rec.env.session,
                    )
                else:
                    self._turn(db, rec)
            case (
                ev.TurnStarted() | ev.AssistantMessage() | ev.TurnCompleted() | ev.TurnFailed()
                | ev.TurnCancelled()
            ):  # fmt: skip
                self._turn(db, rec)
            case (
                ev.CancelRequested() | ev.TextDelta() | ev.ReasoningDelta() | ev.ToolCall()
                | ev.ToolResult() | ev.ToolProgress() | ev.Fallback() | ev.ContextTrimmed()
                | ev.ApprovalRequested() | ev.ApprovalGranted() | ev.ApprovalDenied()
            ):  # fmt: skip
                pass  # not in the list
            case _:
                assert_never(event)

    def _session_started(self, db: Db, rec: Rec, event: ev.SessionStarted) -> None:
        session, origin = rec.env.session, event.forked_from
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
            self._named(db, rec, event.title)

    def _named(self, db: Db, rec: Rec, title: str) -> None:
        """A title given (at the start, or a rename): a first message no longer names it."""
        session = rec.env.session
        db.run("UPDATE {p}sessions SET title = ?, title_set = 1 WHERE session = ?", title, session)
        if rec.env.sealed is None:  # the key the title is sealed with (none: in the clear)
            db.run("DELETE FROM {p}session_title_keys WHERE session = ?", session)
            return
        db.run(
            "INSERT INTO {p}session_title_keys (session, key) VALUES (?, ?) "
            "ON CONFLICT (session) DO UPDATE SET key = excluded.key",
            session,
            rec.env.sealed.key,
        )

    def _title(self, db: Db, rec: Rec, text: str) -> None:
        session = rec.env.session
        if rec.env.sealed is not None:  # the key of the title this message gives, if it does
            db.run(
                "INSERT INTO {p}session_title_keys (session, key) SELECT session, ? FROM "
                "{p}sessions WHERE session = ? AND title_set = 0 AND title = '' "
                "ON CONFLICT (session) DO UPDATE SET key = excluded.key",
                rec.env.sealed.key,
                session,
            )
        db.run(
            "UPDATE {p}sessions SET title = CASE WHEN title_set = 0 AND title = '' THEN ? "
            "ELSE title END WHERE session = ?",
            title_from(text),
            session,
        )

    def _turn(self, db: Db, rec: Rec) -> None:
        env, event = rec.env, rec.env.event
        session, turn = env.session, turn_of(env)
        if turn is None:
            return
        turns = TurnRows.of(db, SESSION_TURNS.name)
        row = turns.get(session, turn)  # status, attempt, assistant_count
        verdict, after = transition(turns.phase(session, turn), event, env.attempt)
        if after is None or verdict in ("ignored", "anomaly"):
            return
        shown = _shown(event, verdict)  # messages the event adds to (or takes from) the history
        assistant = int(isinstance(event, ev.AssistantMessage))
        if verdict == "starts" and row is not None:
            shown -= row[2]  # the messages of the attempt this one supersedes
        count = (0 if row is None or verdict == "starts" else row[2]) + assistant
        turns.put(session, turn, (after.status, after.attempt, count))  # as set just below
        db.run(
            "INSERT INTO {p}session_turns (session, turn, attempt, status, assistant_count) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (session, turn) DO UPDATE SET "
            "status = excluded.status, attempt = excluded.attempt, assistant_count = CASE "
            "WHEN ? THEN 0 ELSE session_turns.assistant_count END + excluded.assistant_count",
            session, turn, after.attempt, after.status,
            assistant, verdict == "starts",
        )  # fmt: skip
        if row is None:  # a new turn: the session's last
            db.run(
                "UPDATE {p}sessions SET turn_count = turn_count + 1, last_turn = ?, "
                "message_count = message_count + ?, last_status = ? WHERE session = ?",
                turn, shown, after.status, session,
            )  # fmt: skip
            return
        db.run(
            "UPDATE {p}sessions SET message_count = message_count + ?, last_status = CASE "
            "WHEN last_turn = ? THEN ? ELSE last_status END WHERE session = ?",
            shown, turn, after.status, session,
        )  # fmt: skip


def _shown(event: ev.Event, verdict: Verdict) -> int:
    """How many messages of the history an event adds (given its verdict)."""
    if verdict == "opens" or (verdict == "applies" and isinstance(event, ev.AssistantMessage)):
        return 1
    cancelled = isinstance(event, ev.TurnCancelled) and bool(event.partial_text)
    return int(verdict == "ends" and cancelled)
