"""Item 10, isolation: every route of the app, called by every kind of caller.

The routes are enumerated from the app itself (its OpenAPI document plus the routes left
out of it: the AI SDK endpoints, the web page, the schema pages), and each must have a
recipe below or be one of the public routes: a route added without a recipe fails this
test, so a new route cannot escape the matrix.

* **Another owner** (a static token, an HS256 JWT, an RS256 JWT) calling a route that
  names a session with a real session of alice's: 404, byte for byte the answer for a
  session that does not exist, no SSE event delivered, nothing appended, no upstream
  follow started. Routes that name no session (lists, usage, create, providers) must not
  mention alice's session. The ``/api/chat`` routes name a chat, which is per owner:
  naming alice's session gives the caller a chat of their own, answered as for an unused
  id (a resume: 204, a cancel: 404).
* **Bad credentials** (wrong signature HS256/RS256, wrong issuer, wrong audience,
  expired, ``alg: none``, unknown static token, garbage, none at all): 401 with
  ``WWW-Authenticate: Bearer`` on every authenticated route, nothing appended.
* **Admin**: reads any session, writes only its own (403), as docs/gateway.md says.
* **The owner**: each recipe works (so the refusals above are not 422s in disguise).
* ``OPTIONS`` (unauthenticated, as CORS pre-flights are) answers the same for alice's
  session and one that does not exist.

Against the gateway as ``threadline up`` wires it (history from the projections).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from tests.gateway.harness import (
    HS_SECRET,
    OTHER_PRIVATE_KEY,
    PRIVATE_KEY,
    Harness,
    agent_turn,
    gateway_options,
    make_jwt,
)
from tests.gateway.views_harness import running_views_gateway
from threadline.events.ids import new_id
from threadline.events.sealing import DirectoryKeyStore, Keyring
from threadline.services.gateway.web.signin import DEV_SIGNIN
from threadline.services.runtime.natsserver import EmbeddedNats

SESSION = "{session}"
SECRET_TEXT = "classified-7f3a"  # in alice's session: must never reach anyone else


@dataclass(frozen=True)
class Recipe:
    """How to call one route, and what its owner gets."""

    method: str
    #: the route's path template as the app reports it (``{session_id:str}``)
    template: str
    path: str
    owner_status: int
    admin_status: int
    json: Any = None
    #: the route names a session (path or body): another owner must get the 404
    scoped: bool = True
    #: the body names a chat, which is per owner: another owner naming alice's session
    #: gets a chat of their own, answered as for an id nobody has (not a 404)
    per_owner: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.template


S = "/v1/sessions/{session_id:str}"
C = "/api/chat/{chat_id:str}"
CHAT = {
    "id": SESSION,
    "messages": [{"id": "iso-m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
}
RECIPES = [
    Recipe("GET", "/v1/sessions", "/v1/sessions", 200, 200, scoped=False),
    Recipe("POST", "/v1/sessions", "/v1/sessions", 201, 201, {"title": "mine"}, scoped=False),
    Recipe("GET", S, f"/v1/sessions/{SESSION}", 200, 200),
    Recipe("PATCH", S, f"/v1/sessions/{SESSION}", 200, 403, {"title": "renamed"}),
    Recipe("POST", f"{S}/messages", f"/v1/sessions/{SESSION}/messages", 202, 403, {"text": "x"}),
    Recipe("POST", f"{S}/cancel", f"/v1/sessions/{SESSION}/cancel", 202, 403, {}),
    Recipe("POST", f"{S}/retry", f"/v1/sessions/{SESSION}/retry", 202, 403, {}),
    # no call of the session waits: its owner learns that (404), nobody else anything
    Recipe(
        "POST",
        f"{S}/approvals/{{call_id:str}}",
        f"/v1/sessions/{SESSION}/approvals/call_x",
        404,
        403,
        {"approved": True},
    ),  # fmt: skip
    Recipe("GET", f"{S}/events", f"/v1/sessions/{SESSION}/events", 200, 200),
    Recipe("GET", f"{S}/export", f"/v1/sessions/{SESSION}/export", 200, 200),
    Recipe("GET", f"{S}/verify", f"/v1/sessions/{SESSION}/verify", 200, 200),
    Recipe("POST", f"{S}/fork", f"/v1/sessions/{SESSION}/fork", 201, 201, {"version": 2}),
    Recipe("GET", "/v1/providers", "/v1/providers", 200, 200, scoped=False),
    Recipe("GET", "/v1/usage", "/v1/usage", 200, 200, scoped=False),
    # before the POST, which makes each caller a chat of that id (an admin's is his own)
    Recipe("GET", f"{C}/stream", f"/api/chat/{SESSION}/stream", 200, 204, per_owner=True),
    Recipe("POST", f"{C}/cancel", f"/api/chat/{SESSION}/cancel", 202, 404, {}, per_owner=True),
    Recipe("POST", "/api/chat", "/api/chat", 200, 200, CHAT, per_owner=True),
    # admins only; the admin erases an owner who has nothing (alice's content stays)
    Recipe(
        "POST",
        "/v1/admin/erasures",
        "/v1/admin/erasures",
        403,
        200,
        {"owner": "nobody-iso"},
        scoped=False,
    ),  # fmt: skip
]
#: routes that need no token and carry no owner data
PUBLIC = re.compile(r"^/(healthz|readyz|metrics|debug|web/.*|schema(/.*)?)?$")
#: public routes that exist only under ``threadline up`` (its dev token, a loopback
#: browser: docs/web.md); on this gateway, as in any deployment, they must answer exactly
#: as a path the app does not serve, to everyone (tests/web/test_signin.py: when they answer)
UP_ONLY = frozenset({DEV_SIGNIN})
UNSERVED = "/web/no-such-route-0"

#: another owner, three ways
OTHERS: dict[str, Callable[[], str]] = {
    "bob (static token)": lambda: "bob-token",
    "mallory (HS256 JWT)": lambda: make_jwt("mallory"),
    "jane (RS256 JWT)": lambda: make_jwt("jane", key=PRIVATE_KEY, alg="RS256"),
}
BAD_CREDENTIALS: dict[str, Callable[[], str | None]] = {
    "HS256 wrong signature": lambda: make_jwt(
        "alice", key="another-secret-that-is-long-enough-0123456789"
    ),
    "RS256 wrong signature": lambda: make_jwt("alice", key=OTHER_PRIVATE_KEY, alg="RS256"),
    "wrong issuer": lambda: make_jwt("alice", iss="https://evil.test"),
    "wrong audience": lambda: make_jwt("alice", aud="someone-else"),
    "expired": lambda: make_jwt("alice", exp_in=-3600),
    "alg none": lambda: jwt.encode({"sub": "alice", "exp": 2**40}, None, algorithm="none"),
    "unknown static token": lambda: "alice-token-but-not-quite",
    "garbage": lambda: "a.b.c",
    "no token": lambda: None,
}
assert HS_SECRET  # the gateway verifies HS256 with it (harness.gateway_options)


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str
    www_authenticate: str | None

    @property
    def events(self) -> int:
        """SSE events (or AI SDK chunks) delivered."""
        return len(re.findall(rb"^(?:id|data):", self.body, re.MULTILINE))


async def call(client: httpx.AsyncClient, recipe: Recipe, session: str) -> Answer:
    """One request; a streaming answer is read up to its first event, then dropped."""
    json = recipe.json
    if isinstance(json, dict) and json.get("id") == SESSION:
        json = {**json, "id": session}
    url = recipe.path.replace(SESSION, session)
    async with client.stream(recipe.method, url, json=json) as response:
        body = b""
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            with contextlib.suppress(TimeoutError):
                async for chunk in _until_first_event(response):
                    body += chunk
        else:
            body = await response.aread()
        return Answer(
            response.status_code,
            body,
            response.headers.get("content-type", ""),
            response.headers.get("www-authenticate"),
        )


async def _until_first_event(response: httpx.Response) -> AsyncIterator[bytes]:
    async with asyncio.timeout(10):
        seen = b""
        async for chunk in response.aiter_bytes():
            yield chunk
            seen += chunk
            if re.search(rb"^(?:id|data):", seen, re.MULTILINE):
                return


@pytest_asyncio.fixture(scope="module")
async def views(
    nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Harness]:
    options = gateway_options(max_stream_s=5.0, max_sse_per_owner=64)
    data_dir: Path = tmp_path_factory.mktemp("isolation")
    async with running_views_gateway(nats_server.url, data_dir, options, with_log=False) as pair:
        pair.views.store.keyring = Keyring(DirectoryKeyStore(data_dir / "erasure-keys"))
        yield pair.views


async def alices_session(gw: Harness) -> str:
    """A session of alice's with a finished turn (with usage) and a pending one."""
    session = await gw.new_session(title=f"private {SECRET_TEXT}")
    first = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": SECRET_TEXT})
    await agent_turn(gw.store, session, first.json()["turn_id"], deltas=(SECRET_TEXT,))
    await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "pending"})
    return session


def app_routes(gw: Harness) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in gw.app.routes
        for method in getattr(route, "methods", ())
        if method not in ("OPTIONS", "HEAD")
    }


@dataclass
class Matrix:
    gw: Harness
    session: str
    canonical: Answer  # what a session that does not exist looks like
    missing: str = "nosuchsession0000"

    def __post_init__(self) -> None:
        self.failures: list[str] = []
        self.counts = {"other": 0, "other_404": 0, "bad": 0, "bad_401": 0, "events": 0}
        self.counts["up_only_404"] = 0

    async def position(self) -> int:
        return await self.gw.store.last_position()

    async def other_owner(self, who: str, client: httpx.AsyncClient, recipe: Recipe) -> None:
        """404 exactly like a missing session; nothing delivered, nothing appended."""
        label = f"{who}: {recipe.method} {recipe.template}"
        before, version = await self.position(), await self.gw.version(self.session)
        answer = await call(client, recipe, self.session)
        if await self.gw.version(self.session) != version:
            self.failures.append(f"{label}: changed alice's session")
        if SECRET_TEXT.encode() in answer.body:
            self.failures.append(f"{label}: leaked alice's text")
        if recipe.per_owner:
            nobodys = await call(client, recipe, new_id())
            if (answer.status, answer.content_type) != (nobodys.status, nobodys.content_type):
                self.failures.append(f"{label}: {answer.status}, not {nobodys.status}")
            return
        if not recipe.scoped:
            if self.session.encode() in answer.body:
                self.failures.append(f"{label}: mentions alice's session")
            return
        self.counts["other"] += 1
        self.counts["events"] += answer.events
        if await self.position() != before:
            self.failures.append(f"{label}: appended something")
        expected = (404, self.canonical.body, self.canonical.content_type)
        if (answer.status, answer.body, answer.content_type) == expected:
            self.counts["other_404"] += 1
        else:
            self.failures.append(f"{label}: {answer.status} {answer.body[:120]!r}")

    async def bad_credential(self, what: str, client: httpx.AsyncClient, recipe: Recipe) -> None:
        """401 with a bearer challenge; nothing appended."""
        label = f"{what}: {recipe.method} {recipe.template}"
        before = await self.position()
        answer = await call(client, recipe, self.session)
        self.counts["bad"] += 1
        if answer.status == 401 and answer.www_authenticate == "Bearer" and not answer.events:
            self.counts["bad_401"] += 1
        else:
            self.failures.append(f"{label}: {answer.status} {answer.body[:120]!r}")
        if await self.position() != before:
            self.failures.append(f"{label}: appended something")

    async def options(self, recipe: Recipe) -> None:
        """``OPTIONS`` answers the same for a real session and a missing one."""
        anonymous = self.gw.client(None)
        answers = [
            await anonymous.options(recipe.path.replace(SESSION, s))
            for s in (self.session, self.missing)
        ]
        if len({(a.status_code, a.headers.get("allow")) for a in answers}) != 1:
            self.failures.append(f"OPTIONS {recipe.template} differs for a real session")

    async def public(self, method: str, template: str) -> None:
        answer = await self.gw.client("not-a-token").request(method, template)
        if template in UP_ONLY:
            await self.up_only(method, template)
        elif answer.status_code >= 400 or self.session.encode() in answer.content:
            self.failures.append(f"public {method} {template}: {answer.status_code}")

    async def up_only(self, method: str, template: str) -> None:
        """For anyone (no token, a bad one, the owner, an admin), the unserved path's answer."""
        gw = self.gw
        callers = {"anonymous": gw.client(None), "bad token": gw.client("x")}
        for who, client in {**callers, "owner": gw.alice, "admin": gw.root}.items():
            await self.like_unserved(who, client, method, template)

    async def like_unserved(
        self, who: str, client: httpx.AsyncClient, method: str, template: str
    ) -> None:
        got, unserved = [await client.request(method, p) for p in (template, UNSERVED)]
        if unserved.status_code != 404 or (got.status_code, got.content) != (
            unserved.status_code,
            unserved.content,
        ):
            self.failures.append(f"{who} {method} {template} (no dev sign-in): {got.status_code}")
        else:
            self.counts["up_only_404"] += 1

    async def expected(self, caller: str, client: httpx.AsyncClient, recipe: Recipe) -> None:
        """The owner's calls work; an admin reads but writes only its own."""
        before = await self.position()
        answer = await call(client, recipe, self.session)
        wanted = recipe.owner_status if caller == "owner" else recipe.admin_status
        if answer.status != wanted:
            self.failures.append(f"{caller} {recipe.method} {recipe.template}: {answer.status}")
        if answer.status == 403 and await self.position() != before:
            self.failures.append(f"{caller} {recipe.method} {recipe.template}: appended")


def covered_routes(gw: Harness, documented: set[tuple[str, str]]) -> tuple[set[Any], set[Any]]:
    """(every route the app serves, the public ones); fails on a route without a recipe."""
    routes = app_routes(gw)
    plain = {(m, re.sub(r"\{(\w+):\w+\}", r"{\1}", t)) for m, t in routes}
    assert documented <= plain, f"documented but not served: {documented - plain}"
    recipes = {r.key for r in RECIPES}
    public = {(m, t) for m, t in routes if PUBLIC.match(t)}
    uncovered = routes - recipes - public
    assert not uncovered, f"routes without an isolation recipe (add one): {sorted(uncovered)}"
    assert not recipes - routes, "recipes for routes the app does not serve"
    return routes, public


async def test_every_route_isolates_owners_and_refuses_bad_credentials(
    views: Harness, figure: Callable[[str], None]
) -> None:
    gw = views
    schema = (await gw.client(None).get("/schema/openapi.json")).json()
    documented = {(m.upper(), path) for path, item in schema["paths"].items() for m in item}
    routes, public = covered_routes(gw, documented)

    session = await alices_session(gw)
    canonical = await call(gw.bob, RECIPES[2], "nosuchsession0000")  # GET a missing session
    assert canonical.status == 404
    matrix = Matrix(gw, session, canonical)
    for who, token in OTHERS.items():
        for recipe in RECIPES:
            await matrix.other_owner(who, gw.client(token()), recipe)
    assert not gw.gateway.hub.has_upstream(session), "a refused stream started a follow"
    for what, bad in BAD_CREDENTIALS.items():
        for recipe in RECIPES:
            await matrix.bad_credential(what, gw.client(bad()), recipe)
    for recipe in RECIPES:
        await matrix.options(recipe)
    for method, template in sorted(public):
        if "{" not in template:
            await matrix.public(method, template)
    for caller, client in (("admin", gw.root), ("owner", gw.alice)):  # last: these write
        for recipe in RECIPES:
            await matrix.expected(caller, client, recipe)

    assert not matrix.failures, "\n".join(matrix.failures)
    counts = matrix.counts
    assert counts["events"] == 0 and counts["other_404"] == counts["other"] > 0
    assert counts["bad_401"] == counts["bad"] > 0
    assert {t for _, t in public} >= UP_ONLY, "an up-only route is no longer served"
    assert counts["up_only_404"] == 4 * len(UP_ONLY)
    figure(
        f"{len(routes)} routes ({len(RECIPES)} authenticated, {len(public)} public); "
        f"other owners on session routes: {counts['other_404']}/{counts['other']} 404 "
        f"(identical to a missing session), {counts['events']} events delivered, 0 appended; "
        f"bad credentials: {counts['bad_401']}/{counts['bad']} 401"
    )
