"""``useChat`` requests -> our commands: open the chat's session, append the user message.

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
  append-only: the earlier answer stays in it and in the model's context). While the
  latest answer to that message is still running, it streams that one instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from threadline.base.errors import ConcurrencyError, InvalidSessionId
from threadline.events.fold import fold
from threadline.events.ids import new_id, validate_session_id
from threadline.events.schema import SessionStarted, UserMessage
from threadline.events.store import NewEvent, Recorded
from threadline.services.gateway.auth import Principal
from threadline.services.gateway.catalog import check_choice
from threadline.services.gateway.context import Gateway
from threadline.services.gateway.errors import Problem, unprocessable
from threadline.services.gateway.models import (
    KEY_PATTERN,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TEXT_CHARS,
    Name,
)

_KEY_RE = re.compile(KEY_PATTERN)
_TITLE_CHARS = 80


class UIPart(msgspec.Struct, frozen=True, kw_only=True):
    """A part of a UIMessage; only ``text`` parts of the user's message are read."""

    type: str
    text: str | None = None


class UIMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: Annotated[str, Meta(max_length=1000)] = ""
    role: Literal["system", "user", "assistant"]
    parts: list[UIPart] = msgspec.field(default_factory=list)


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True):
    """The body ``DefaultChatTransport`` posts (unknown fields are ignored)."""

    id: Annotated[str, Meta(min_length=1, max_length=1000)]
    messages: Annotated[list[UIMessage], Meta(min_length=1)]
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    message_id: str | None = msgspec.field(default=None, name="messageId")
    # settings of a new chat's session, from the transport's `body` option
    title: Annotated[str, Meta(max_length=200)] = ""
    provider: Annotated[str, Meta(max_length=128)] = ""
    model: Annotated[str, Meta(max_length=200)] = ""
    system_prompt: Annotated[str, Meta(max_length=MAX_SYSTEM_PROMPT_CHARS)] = ""
    tool_servers: Annotated[list[Name], Meta(max_length=32)] = msgspec.field(default_factory=list)


def session_for(owner: str, chat_id: str) -> str:
    """The session of a chat: its id when valid, else ``ai-`` + a hash of owner and id."""
    try:
        return validate_session_id(chat_id)
    except InvalidSessionId:
        digest = hashlib.sha256(f"aisdk\0{owner}\0{chat_id}".encode()).hexdigest()
        return f"ai-{digest[:32]}"


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
    texts: list[str] = []
    for part in message.parts:
        if part.type == "text":
            texts.append(part.text or "")
        elif part.type == "file":
            raise unprocessable("messages", "file parts are not supported; send text")
        # other parts (data-*, step-start, ...) carry no text for the model
    text = "\n".join(t for t in texts if t)
    if not text.strip():
        raise unprocessable("messages", "the user message has no text")
    if len(text) > MAX_TEXT_CHARS:
        raise unprocessable("messages", f"the text is over {MAX_TEXT_CHARS} characters")
    return text


def _title(text: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line if len(line) <= _TITLE_CHARS else line[: _TITLE_CHARS - 1] + "…"


async def open_chat(gw: Gateway, principal: Principal, session: str, body: ChatRequest) -> None:
    """Create the chat's session on first use; then the caller must own it (404 / 403)."""
    if await gw.owners.owner_of(session) is None:
        provider, model = check_choice(gw.catalog, body.provider, body.model, body.tool_servers)
        first = text_of(last_user_message(body))
        event = SessionStarted(
            owner=principal.owner,
            title=body.title or _title(first),
            provider=provider,
            model=model,
            system_prompt=body.system_prompt,
            tool_servers=tuple(body.tool_servers),
        )
        new = NewEvent(event=event, actor=principal.actor, key="aisdk:create")
        with contextlib.suppress(ConcurrencyError):  # created meanwhile: checked below
            await gw.store.append(session, new, expected_version=0)
    await gw.owners.writable(principal, session)


def _message_key(message_id: str) -> tuple[str, str]:
    """(idempotency key, client_message_id) for a UIMessage id."""
    if _KEY_RE.fullmatch(message_id):
        return f"message:{message_id}", message_id
    digest = hashlib.sha256(message_id.encode()).hexdigest()[:40]
    return f"message:aisdk-{digest}", ""


async def submit(gw: Gateway, principal: Principal, session: str, body: ChatRequest) -> Recorded:
    """Append the new user message (once per message id); its record names the turn."""
    message = last_user_message(body)
    text = text_of(message)
    if not message.id:
        event = UserMessage(text=text)
        new = NewEvent(event=event, actor=principal.actor, turn=new_id())
        (rec,) = await gw.store.append(session, new)
        return rec
    key, client_id = _message_key(message.id)
    event = UserMessage(text=text, client_message_id=client_id)
    new = NewEvent(event=event, actor=principal.actor, turn=new_id(), key=key)
    (rec,) = await gw.store.append(session, new)
    if rec.event != event:
        raise Problem(
            409,
            "idempotency_key_reused",
            f"message {message.id!r} was already sent with other content; "
            "editing a sent message is not supported",
            field="messages",
        )
    return rec


async def regenerate(
    gw: Gateway, principal: Principal, session: str, body: ChatRequest
) -> Recorded:
    """A new turn for the last user message, or its latest turn while that one runs."""
    message = last_user_message(body)
    key, _ = _message_key(message.id) if message.id else ("", "")
    records = await gw.store.load(session)
    asked = [
        rec
        for rec in records
        if isinstance(rec.event, UserMessage)
        and (rec.envelope.key == key or (message.id and rec.event.client_message_id == message.id))
    ]
    if not asked:  # never sent (or sent without an id): this is its first answer
        return await submit(gw, principal, session, body)
    latest = asked[-1]
    assert isinstance(latest.event, UserMessage)
    if latest.turn is not None and not fold(records).is_terminal(latest.turn):
        return latest
    event = UserMessage(text=latest.event.text, client_message_id=latest.event.client_message_id)
    new = NewEvent(
        event=event, actor=principal.actor, turn=new_id(), key=f"regenerate:{latest.turn}"
    )
    (rec,) = await gw.store.append(session, new)
    return rec
