"""A real gateway for tests: JetStream store on the session's nats-server, uvicorn on a
free port, httpx clients per caller, an SSE reader, and a hand-driven "agent"."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar

from tests.conftest import fresh_stream
from threadline.base.config import Settings, StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import (
    AssistantMessage,
    Event,
    TextDelta,
    ToolCall,
    ToolCallRef,
    ToolResult,
    TurnCompleted,
    TurnStarted,
    Usage,
)
from threadline.events.store import NewEvent, Recorded
from threadline.services.gateway import (
    Gateway,
    GatewayOptions,
    JwtOptions,
    RateOptions,
    create_app,
    serve_app,
)
from threadline.services.gateway.app import gateway_of

TOKENS = "alice-token:alice,bob-token:bob,root-token:root:admin,carol-token:carol"
HS_SECRET = "hs256-test-secret-that-is-long-enough-0123456789"
ISSUER = "https://issuer.test"
AUDIENCE = "threadline-api"
PROVIDERS: dict[str, Any] = {
    "default": "openai",
    "openai": {"models": ["gpt-4.1-mini", "gpt-4.1"], "default_model": "gpt-4.1-mini"},
    "ollama": {"base_url": "http://localhost:11434/v1"},
}
MCP_SERVERS: dict[str, Any] = {"demo": {"transport": "stdio"}, "search": {"transport": "http"}}


def rsa_keys() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


PRIVATE_KEY, PUBLIC_KEY = rsa_keys()
OTHER_PRIVATE_KEY, _ = rsa_keys()


def make_jwt(
    sub: str | None = "jane",
    *,
    key: bytes | str = HS_SECRET,
    alg: str = "HS256",
    iss: str | None = ISSUER,
    aud: str | None = AUDIENCE,
    exp_in: float = 300,
    roles: Sequence[str] = (),
    **extra: Any,
) -> str:
    """A signed token; ``extra`` claims replace the made ones (``exp="..."``)."""
    claims: dict[str, Any] = {"exp": int(time.time() + exp_in)}
    for name, value in (("sub", sub), ("iss", iss), ("aud", aud)):
        if value is not None:
            claims[name] = value
    if roles:
        claims["roles"] = list(roles)
    claims.update(extra)
    return jwt.encode(claims, key, algorithm=alg)


def gateway_options(**overrides: Any) -> GatewayOptions:
    base: dict[str, Any] = {
        "heartbeat_s": 5.0,
        "retry_ms": 1000,
        "max_sse_per_owner": 4,
        "wait_timeout_s": 2.0,
        "jwt": JwtOptions(
            secret=HS_SECRET, public_key=PUBLIC_KEY, issuer=ISSUER, audience=AUDIENCE
        ),
        # these tests send commands as fast as they can; the rate limit has its own tests
        # (tests/hardening/test_abuse.py)
        "rate": RateOptions(per_s=0),
    }
    base.update(overrides)
    return GatewayOptions(**base)


@dataclass
class Harness:
    url: str
    app: Litestar
    store: JetStreamEventStore
    clients: dict[str, httpx.AsyncClient] = field(default_factory=dict)

    @property
    def gateway(self) -> Gateway:
        return gateway_of(self.app)

    def client(self, token: str | None) -> httpx.AsyncClient:
        """A client sending ``token`` (None: no Authorization header), kept for reuse."""
        key = token or ""
        if key not in self.clients:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self.clients[key] = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=15)
        return self.clients[key]

    @property
    def alice(self) -> httpx.AsyncClient:
        return self.client("alice-token")

    @property
    def bob(self) -> httpx.AsyncClient:
        return self.client("bob-token")

    @property
    def root(self) -> httpx.AsyncClient:
        return self.client("root-token")

    async def new_session(self, client: httpx.AsyncClient | None = None, **body: Any) -> str:
        response = await (client or self.alice).post("/v1/sessions", json=body)
        assert response.status_code == 201, response.text
        session: str = response.json()["id"]
        return session

    async def version(self, session: str) -> int:
        return (await self.store.head(session)).version


@contextlib.asynccontextmanager
async def running_gateway(
    nats_url: str,
    options: GatewayOptions | None = None,
    stream: StreamSettings | None = None,
) -> AsyncIterator[Harness]:
    store = await JetStreamEventStore.connect(nats_url, stream or fresh_stream(), heartbeat_s=0.5)
    settings = Settings(tokens=TOKENS, providers=PROVIDERS, mcp_servers=MCP_SERVERS)
    app = create_app(settings, store, options=options or gateway_options())
    harness = Harness("", app, store)
    try:
        async with serve_app(app) as url:
            harness.url = url
            try:
                yield harness
            finally:
                for client in harness.clients.values():
                    await client.aclose()
    finally:
        await store.close()


# --------------------------------------------------------------------------- the agent


async def agent_turn(
    store: JetStreamEventStore,
    session: str,
    turn: str,
    *,
    deltas: Sequence[str] = ("Hel", "lo", "!"),
    tool: bool = False,
    attempt: int = 1,
    end: bool = True,
) -> list[Recorded]:
    """Append what the agent would for one turn: started, deltas, (a tool step), answer, done."""

    def new(event: Event, n: int) -> NewEvent:
        return NewEvent(
            event=event,
            actor="agent:test",
            turn=turn,
            attempt=attempt,
            key=f"{turn}/{attempt}/{n}",
        )

    events: list[Event] = [
        TurnStarted(turn_id=turn, attempt=attempt, provider="dev", model="threadline-dev")
    ]
    step = 0
    if tool:
        call = ToolCallRef(call_id="c1", tool="demo__add", arguments={"a": 1, "b": 2})
        events += [
            ToolCall(call_id="c1", tool="demo__add", server="demo", arguments={"a": 1, "b": 2}),
            AssistantMessage(text="", finish_reason="tool_calls", tool_calls=(call,)),
            ToolResult(call_id="c1", tool="demo__add", content="3", duration_ms=1.5),
        ]
        step = 1
    events += [TextDelta(text=d, step=step) for d in deltas]
    if end:
        events += [
            AssistantMessage(
                text="".join(deltas), step=step, usage=Usage(input_tokens=5, output_tokens=3)
            ),
            TurnCompleted(
                usage=Usage(input_tokens=5, output_tokens=3), ttft_ms=120, duration_ms=900
            ),
        ]
    return await store.append(session, [new(e, n) for n, e in enumerate(events)])


# --------------------------------------------------------------------------- SSE


@dataclass
class SSEBlock:
    """One blank-line-terminated block of an SSE stream."""

    id: int | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


async def sse_blocks(response: httpx.Response) -> AsyncIterator[SSEBlock]:
    block = SSEBlock()
    async for line in response.aiter_lines():
        if line == "":
            yield block
            block = SSEBlock()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            block.comments.append(value)
        elif name == "id":
            block.id = int(value)
        elif name == "event":
            block.event = value
        elif name == "data":
            block.data = value if block.data is None else block.data + "\n" + value
        elif name == "retry":
            block.retry = int(value)


class SSEReader:
    """Reads one SSE response block by block, across several calls."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._blocks = sse_blocks(response)

    async def blocks(self) -> AsyncIterator[SSEBlock]:
        async for block in self._blocks:
            yield block

    async def events(
        self, *, until: int | None = None, count: int | None = None
    ) -> tuple[list[SSEBlock], list[SSEBlock]]:
        """Events (blocks with an id) up to position ``until`` / ``count`` events / the end.

        Returns (events, every block seen). Bounded by a timeout so a bug cannot hang a test.
        """
        events: list[SSEBlock] = []
        seen: list[SSEBlock] = []
        async with asyncio.timeout(20):
            async for block in self._blocks:
                seen.append(block)
                if block.id is None:
                    continue
                events.append(block)
                if (until is not None and block.id >= until) or (
                    count is not None and len(events) >= count
                ):
                    break
        return events, seen


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    session: str,
    *,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[SSEReader]:
    url = f"/v1/sessions/{session}/events"
    async with client.stream("GET", url, params=params, headers=headers) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SSEReader(response)
