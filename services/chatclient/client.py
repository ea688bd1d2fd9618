"""The gateway's REST API and a session's event stream, for ``threadline chat``.

The bearer token only ever goes into the ``Authorization`` header of this client; it is
registered with the redactor so no log line can show it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx2
import msgspec

from threadline.base.errors import CorruptEvent
from threadline.base.redact import register_secret
from threadline.events.codec import decode
from threadline.events.schema import Envelope
from threadline.services.gateway.models import (
    ProviderList,
    SessionCreated,
    SessionDetail,
    TurnAccepted,
)

T = TypeVar("T")
#: an idle stream gets a ``: ping`` every 15 s by default; silence this long means it is dead
STREAM_READ_TIMEOUT_S = 60.0


class ChatError(Exception):
    """Something the user should read: the gateway said no, or cannot be reached."""

    def __init__(self, message: str, status: int = 0, type_: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.type = type_


def _problem(response: httpx2.Response) -> ChatError:
    try:
        error = response.json()["error"]
        message, type_ = str(error["message"]), str(error["type"])
    except (ValueError, KeyError, TypeError):
        message, type_ = f"HTTP {response.status_code}", ""
    if response.status_code == 401:
        message = f"the gateway rejected the token ({message})"
    return ChatError(message, response.status_code, type_)


class GatewayClient:
    def __init__(self, base_url: str, token: str, *, timeout_s: float = 15.0) -> None:
        register_secret(token)
        self.base_url = base_url.rstrip("/")
        self.http = httpx2.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _call(self, answer: type[T], method: str, path: str, **options: Any) -> T:
        """The gateway's answer to a request (``options``: httpx2's), decoded as ``answer``."""
        try:
            response = await self.http.request(method, path, **options)
        except httpx2.TransportError as exc:
            raise ChatError(f"cannot reach the gateway at {self.base_url}: {exc!r}") from None
        if response.is_error:
            raise _problem(response)
        return msgspec.json.decode(response.content, type=answer)

    async def providers(self) -> ProviderList:
        return await self._call(ProviderList, "GET", "/v1/providers")

    async def create_session(
        self,
        *,
        title: str = "",
        provider: str = "",
        model: str = "",
        tool_servers: list[str] | None = None,
        approve_tools: bool = False,
    ) -> SessionCreated:
        body: dict[str, Any] = {"title": title, "provider": provider, "model": model}
        body["tool_servers"] = tool_servers or []
        if approve_tools:  # every tool call waits for a person
            body["approval"] = "always"
        key = {"Idempotency-Key": uuid.uuid4().hex}
        return await self._call(SessionCreated, "POST", "/v1/sessions", json=body, headers=key)

    async def session(self, session: str, *, wait_for: int = 0) -> SessionDetail:
        path = f"/v1/sessions/{session}" + (f"?wait_for={wait_for}" if wait_for else "")
        return await self._call(SessionDetail, "GET", path)

    async def send(self, session: str, text: str, client_message_id: str) -> TurnAccepted:
        body = {"text": text, "client_message_id": client_message_id}
        return await self._call(TurnAccepted, "POST", f"/v1/sessions/{session}/messages", json=body)

    async def decide(self, session: str, call_id: str, approved: bool, reason: str) -> None:
        """Approve or deny a tool call waiting for approval (``ChatError`` 409: decided)."""
        body = {"approved": approved, "reason": reason}
        path = f"/v1/sessions/{session}/approvals/{call_id}"
        await self._call(dict[str, Any], "POST", path, json=body)

    async def retry(self, session: str, turn_id: str = "") -> TurnAccepted:
        """Ask ``turn_id``'s question again (default: the latest turn's) as a new turn."""
        body = {"turn_id": turn_id} if turn_id else None
        return await self._call(TurnAccepted, "POST", f"/v1/sessions/{session}/retry", json=body)

    async def cancel(self, session: str, turn_id: str, reason: str = "") -> TurnAccepted | None:
        """Stop ``turn_id``; None when it had already ended."""
        body, path = {"turn_id": turn_id, "reason": reason}, f"/v1/sessions/{session}/cancel"
        try:
            return await self._call(TurnAccepted, "POST", path, json=body)
        except ChatError as exc:
            if exc.status == 409:
                return None
            raise

    async def follow(self, session: str, after: int) -> AsyncIterator[tuple[int, Envelope]]:
        """The session's events after position ``after``, live, for ever.

        Reconnects after the gateway's ``retry:`` hint with ``Last-Event-ID`` (no gap, no
        duplicate); raises :class:`ChatError` when the gateway refuses (401, 404).
        """
        last, retry_s = after, 1.0
        timeout = httpx2.Timeout(10.0, read=STREAM_READ_TIMEOUT_S)
        url = f"/v1/sessions/{session}/events"
        while True:
            headers = {"Last-Event-ID": str(last)}
            try:
                async with self.http.sse(url, headers=headers, timeout=timeout) as source:
                    r = source.response
                    if r.status_code in (401, 403, 404):
                        await r.aread()
                        raise _problem(r)
                    if r.status_code != 200:
                        retry_s = max(retry_s, _seconds(r.headers.get("Retry-After")))
                    else:
                        async for message in source:
                            if message.retry is not None:  # the gateway's reconnect hint
                                retry_s = message.retry / 1000
                            if message.data and message.id:  # one of the session's events
                                last = int(message.id)
                                yield last, decode(message.data.encode(), last)
            except httpx2.TransportError:
                pass  # the gateway went away or restarted: try again
            except CorruptEvent as exc:
                raise ChatError(f"an event this client cannot read: {exc}") from None
            await asyncio.sleep(retry_s)


def _seconds(value: str | None) -> float:
    try:
        return min(max(float(value or 1), 0.1), 60.0)
    except ValueError:
        return 1.0
