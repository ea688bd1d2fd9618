"""``useChat`` requests -> commands (``threadline.services.commands``): open the chat's
session, append the user message or ask it again.

The body is what the AI SDK's ``DefaultChatTransport`` sends: ``id`` (the chat),
``messages`` (UIMessages with ``parts``), ``trigger`` and ``messageId``, plus whatever
the app adds with the transport's ``body`` option. Only the last user message matters:
the conversation itself is in the log.

* The chat id is the session id when it is one (1-64 of ``A-Z a-z 0-9 _ -``, which the
  AI SDK's generated ids are); any other id maps to ``ai-<32 hex>``, a hash of the
  owner and the chat id, so every request for that chat lands in the same session.
* The first request creates the session, owned by the caller; ``title``, ``provider``,
  ``model``, ``system_prompt`` and ``tool_servers`` in the body configure it then
  (checked against the catalog) and are ignored afterwards.
* ``submit-message`` appends the last message (it must be the user's, text parts only)
  idempotently, keyed on its message id like ``client_message_id``: a retry appends
  nothing and streams the same turn; the same id with other text is a 409.
* ``regenerate-message`` asks the last user message again as a new turn (the log is
  append-only: an earlier completed answer stays in it and in the model's context; a
  failed one left the context, so this is its retry). While the latest answer to that
  message is still running, it streams that one instead.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Literal, TypeVar

import msgspec
from msgspec import Meta

from threadline.base.errors import ConcurrencyError, IdempotencyKeyReused
from threadline.events.store import Recorded
from threadline.events.turns import title_from
from threadline.services.commands import Regenerate, SendMessage
from threadline.services.commands.keys import is_plain
from threadline.services.gateway.auth import Principal
from threadline.services.gateway.context import Gateway
from threadline.services.gateway.errors import unprocessable
from threadline.services.gateway.models import MAX_TEXT_CHARS, NewSession

C = TypeVar("C", bound=SendMessage)


class UIApproval(msgspec.Struct, frozen=True, kw_only=True):
    """A tool part's ``approval``: its id (our call id) and, once answered, the answer."""

    id: Annotated[str, Meta(max_length=200)]
    approved: bool | None = None
    reason: Annotated[str, Meta(max_length=2000)] | None = None


class UIPart(msgspec.Struct, frozen=True, kw_only=True):
    """A part of a UIMessage; only ``text`` parts of the user's message are read, and the
    answered approvals (``approval-responded``) of tool parts of the last message."""

    type: str
    text: str | None = None
    state: str | None = None
    approval: UIApproval | None = None


class UIMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: Annotated[str, Meta(max_length=1000)] = ""
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = msgspec.field(default_factory=list)


class ChatRequest(NewSession, frozen=True, kw_only=True):
    """The body ``DefaultChatTransport`` posts (unknown fields are ignored); a new chat's
    session settings come from the transport's ``body`` option."""

    id: Annotated[str, Meta(min_length=1, max_length=1000)]
    messages: Annotated[list[UIMessage], Meta(min_length=1)]
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = msgspec.field(default=None, name="messageId")


def last_user_message(body: ChatRequest) -> UIMessage:
    """The message to send: the last one, which must be the user's (422 otherwise)."""
    users = [m for m in body.messages if m.role == "user"]
    last = body.messages[-1]
    if body.trigger == "submit-message" and last.role != "user":
        raise unprocessable("messages", "the last message must be the user's")
    if not users:
        raise unprocessable("messages", "there is no user message")
    return users[-1]


def text_of(message: UIMessage) -> str:
    """The text of a user message: its text parts joined (422 for files or no text)."""
    if any(part.type == "file" for part in message.parts):
        raise unprocessable("messages", "file parts are not supported; send text")
    # other parts (data-*, step-start, ...) carry no text for the model
    text = "\n".join(part.text for part in message.parts if part.type == "text" and part.text)
    if not text.strip():
        raise unprocessable("messages", "the user message has no text")
    if len(text) > MAX_TEXT_CHARS:
        raise unprocessable("messages", f"the text is over {MAX_TEXT_CHARS} characters")
    return text


async def open_chat(gw: Gateway, principal: Principal, session: str, body: ChatRequest) -> None:
    """Create the chat's session on first use; then the caller must own it (404 / 403)."""
    if await gw.owners.owner_of(session) is None:
        first = text_of(last_user_message(body))  # a request we refuse creates nothing
        start = body.start(principal, title=body.title or title_from(first), session=session)
        with contextlib.suppress(ConcurrencyError):  # created meanwhile: checked below
            await gw.commands.create_session(start)
    await gw.owners.writable(principal, session)


def _message(command: type[C], principal: Principal, session: str, body: ChatRequest) -> C:
    """The last user message as a command, keyed on its message id."""
    message = last_user_message(body)
    return command(
        session=session,
        actor=principal.actor,
        text=text_of(message),
        key=message.id,
        client_message_id=message.id if is_plain(message.id) else "",
    )


async def submit(gw: Gateway, principal: Principal, session: str, body: ChatRequest) -> Recorded:
    """Append the new user message (once per message id), or with ``regenerate-message``
    ask it again as a new turn (its latest turn while that one runs); the record names
    the turn."""
    if body.trigger == "regenerate-message":
        return await gw.commands.regenerate(_message(Regenerate, principal, session, body))
    message = _message(SendMessage, principal, session, body)
    try:
        return await gw.commands.post_message(message)
    except IdempotencyKeyReused:
        raise IdempotencyKeyReused(
            f"message {message.key!r} was already sent with other content; "
            "editing a sent message is not supported",
            field="messages",
        ) from None
