"""``useChat`` tool approvals (``addToolApprovalResponse``) -> the approval command.

The stream of a turn that waits for approval sends a ``tool-approval-request`` chunk per
waiting call (``approvalId`` = ``toolCallId`` = our call id) and ends (``finish``
``tool-calls``). ``addToolApprovalResponse({id, approved, reason})`` puts the answer on
the tool part (state ``approval-responded``); with ``sendAutomaticallyWhen:
lastAssistantMessageIsCompleteWithApprovalResponses`` the chat posts its messages again
(``trigger`` ``submit-message``, the last message the assistant's). Each answer of that
last message is recorded through the one approval command
(``Commands.answer_approval``: the first answer wins), and the response streams the same
turn on from where the client's copy stopped. An answer that came too late (decided
elsewhere, or by the deadline; the turn stopped) is not an error of the stream: it gets a
``data-approval-refused`` part ``{call_id, error, message}`` (``error``: the REST route's
409 type) and the turn streams on as it was decided.
"""

from __future__ import annotations

from typing import NamedTuple

from threadline.base.errors import ApprovalDecided, ApprovalNotFound, TurnFinished
from threadline.events.approvals import find
from threadline.events.schema import ApprovalRequested
from threadline.events.store import Recorded
from threadline.services.commands import AnswerApproval
from threadline.services.gateway.aisdk import protocol as p
from threadline.services.gateway.aisdk.commands import ChatRequest
from threadline.services.gateway.context import Gateway


class Answered(NamedTuple):
    """The turn the answers belong to, where its first decision on them is, and the
    refusals to show in its stream."""

    turn: str
    decided_at: int
    refused: list[p.Chunk]


def answers_of(body: ChatRequest, session: str, actor: str) -> list[AnswerApproval]:
    """The approval answers of the request's last message, when it is the assistant's."""
    last = body.messages[-1]
    if last.role != "assistant" or body.trigger != "submit-message":
        return []
    return [
        AnswerApproval(
            session=session,
            actor=actor,
            call_id=part.approval.id,
            approved=part.approval.approved,
            reason=part.approval.reason or "",
        )
        for part in last.parts
        if part.state == "approval-responded"
        and part.approval is not None
        and part.approval.approved is not None
    ]


async def record(gw: Gateway, session: str, answers: list[AnswerApproval]) -> Answered:
    """Record each answer (``ApprovalNotFound``: 404 before any stream)."""
    refused: list[p.Chunk] = []
    for answer in answers:
        try:
            await gw.commands.answer_approval(answer)
        except (ApprovalDecided, TurnFinished) as exc:
            data = p.ApprovalRefusedData(call_id=answer.call_id, error=exc.code, message=str(exc))
            refused.append(p.DataApprovalRefused(id=f"refused-{answer.call_id}", data=data))
    found = find(await gw.sessions.get(session), answers[0].call_id)
    if found is None:  # not reached: the command found it
        raise ApprovalNotFound(answers[0].call_id)
    turn = found[0]
    calls = {answer.call_id for answer in answers}
    decided = [a.position for c, a in turn.approvals.items() if c in calls and a.position]
    return Answered(turn.turn_id, min(decided, default=0), refused)


def seen_until(records: list[Recorded], turn: str, decided_at: int) -> int:
    """Where the client's copy of the turn stopped: its last ``approval_requested`` before
    the decisions (the stream paused there)."""
    return max(
        (
            rec.position
            for rec in records
            if rec.turn == turn
            and isinstance(rec.event, ApprovalRequested)
            and rec.position < decided_at
        ),
        default=0,
    )
