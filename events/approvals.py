"""Deciding a tool call that waits for approval, in one place: the first decision wins.

A person (REST, through the command layer) and the deadline (the agent) decide the same
way: :func:`decide` appends the decision at the session version it read, so of two
decisions at once the one that loses reads again and finds the call decided. It answers
the record of the decision that counts, which may be another's: the caller compares.
See docs/human-in-the-loop.md.
"""

from __future__ import annotations

import time
from typing import Final

from threadline.base.errors import ApprovalNotFound, ConcurrencyError, TurnFinished
from threadline.events.fold import Approval, SessionState, TurnState
from threadline.events.schema import ApprovalDenied, ApprovalGranted
from threadline.events.sessions import SessionCache
from threadline.events.store import EventStore, NewEvent, Recorded

Decision = ApprovalGranted | ApprovalDenied

#: how often a decision is tried again when its session moved on meanwhile
_TRIES: Final = 20
#: why a call whose deadline passed was not run (its denial's reason)
EXPIRED: Final = "no decision before the deadline"
#: who decides when the deadline does (the actor of :func:`expiry`'s record)
SYSTEM: Final = "system"


def approval_key(call_id: str) -> str:
    """The event key of the decision on ``call_id``: one per call."""
    return f"approval:{call_id}"


def find(state: SessionState, call_id: str) -> tuple[TurnState, Approval] | None:
    """The turn and approval of ``call_id`` (the open turns first: where one waits)."""
    for turns in (state.open_turns, reversed(state.turns)):
        for turn_id in turns:
            turn = state.turns[turn_id]
            if (approval := turn.approvals.get(call_id)) is not None:
                return turn, approval
    return None


def expired(approval: Approval) -> bool:
    """Whether the approval's deadline has passed (a deadline of 0 never does)."""
    deadline = approval.request.deadline
    return deadline > 0 and time.time_ns() // 1000 >= deadline


def expiry(call_id: str) -> ApprovalDenied:
    """The decision the deadline makes."""
    return ApprovalDenied(call_id=call_id, reason=EXPIRED, expired=True)


async def decide(
    store: EventStore, sessions: SessionCache, session: str, decision: Decision, actor: str
) -> Recorded:
    """Record ``decision`` unless the call is decided already; the record of the decision
    that counts. Raises ``ApprovalNotFound`` (no such call waits, or ever waited, in the
    turn's attempt that counts) and ``TurnFinished`` (the turn ended undecided)."""
    call_id = decision.call_id
    for _ in range(_TRIES):
        state = await sessions.get(session)
        found = find(state, call_id)
        if found is None:
            raise ApprovalNotFound(call_id)
        turn, approval = found
        if approval.decision is not None:
            return await store.get(approval.position)
        if turn.ending is not None:
            raise TurnFinished(f"turn {turn.turn_id!r} ended before call {call_id!r} was decided")
        new = NewEvent(event=decision, actor=actor, turn=turn.turn_id, key=approval_key(call_id))
        try:
            (rec,) = await store.append(session, new, expected_version=state.version)
        except ConcurrencyError:
            continue
        return rec
    raise ConcurrencyError(session, state.version)
