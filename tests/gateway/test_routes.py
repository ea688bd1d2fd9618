"""Every route, the happy paths, over real HTTP against a real gateway and nats-server."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import msgspec
import pytest

from tests.gateway.harness import Harness, agent_turn
from threadline.events.memory import MemoryEventStore
from threadline.events.schema import SessionStarted, TextDelta, UserMessage
from threadline.events.sealing import ERASED, DirectoryKeyStore, Keyring
from threadline.events.store import NewEvent
from threadline.services.gateway.routes.events import EXPORT_CHUNK_BYTES, _export_lines


async def test_create_session_appends_session_started(gw: Harness) -> None:
    response = await gw.alice.post(
        "/v1/sessions",
        json={
            "title": "Plans",
            "provider": "openai",
            "model": "gpt-4.1",
            "system_prompt": "Be brief.",
            "tool_servers": ["demo"],
            "params": {"temperature": 0.2, "max_tokens": 100, "top_p": 0.9, "max_steps": 4},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    records = await gw.store.load(body["id"])
    assert [r.kind for r in records] == ["session_started"]
    (rec,) = records
    assert (body["position"], body["version"]) == (rec.position, 1)
    assert rec.envelope.actor == "user:alice"
    event = rec.event
    assert isinstance(event, SessionStarted)
    assert (event.owner, event.title, event.provider, event.model) == (
        "alice",
        "Plans",
        "openai",
        "gpt-4.1",
    )
    assert event.tool_servers == ("demo",) and event.params.max_steps == 4


async def test_create_session_without_body_uses_defaults(gw: Harness) -> None:
    response = await gw.alice.post("/v1/sessions")
    assert response.status_code == 201, response.text
    (rec,) = await gw.store.load(response.json()["id"])
    assert rec.event == SessionStarted(owner="alice")


async def test_model_without_provider_picks_the_provider_offering_it(gw: Harness) -> None:
    session = await gw.new_session(model="gpt-4.1-mini")
    (rec,) = await gw.store.load(session)
    assert isinstance(rec.event, SessionStarted) and rec.event.provider == "openai"
    # a provider that lists no models accepts any model name
    session = await gw.new_session(provider="ollama", model="qwen3")
    (rec,) = await gw.store.load(session)
    assert isinstance(rec.event, SessionStarted) and rec.event.model == "qwen3"


async def test_list_sessions_is_per_owner_newest_first_and_paged(gw: Harness) -> None:
    owner = gw.client("carol-token")
    made = [await gw.new_session(owner, title=f"s{i}") for i in range(5)]
    last = (await gw.store.head(made[-1])).position
    first = await owner.get("/v1/sessions", params={"limit": 2, "wait_for": last})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [s["id"] for s in page["sessions"]] == made[::-1][:2]
    assert page["sessions"][0]["title"] == "s4" and page["sessions"][0]["owner"] == "carol"
    seen = [s["id"] for s in page["sessions"]]
    while page["next_cursor"]:
        response = await owner.get(
            "/v1/sessions", params={"limit": 2, "cursor": page["next_cursor"]}
        )
        page = response.json()
        seen += [s["id"] for s in page["sessions"]]
    assert seen == made[::-1]
    others = (await gw.bob.get("/v1/sessions", params={"wait_for": last})).json()["sessions"]
    assert not set(made) & {s["id"] for s in others}


async def test_get_session_history_with_tool_calls_and_as_of_a_version(gw: Harness) -> None:
    session = await gw.new_session(title="Maths")
    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "1+2?"})
    assert posted.status_code == 202, posted.text
    turn = posted.json()["turn_id"]
    await agent_turn(gw.store, session, turn, deltas=("It is ", "3."), tool=True)

    response = await gw.alice.get(f"/v1/sessions/{session}")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["title"] == "Maths" and detail["owner"] == "alice"
    assert detail["in_flight"] is None and detail["pending"] == []
    assert [t["status"] for t in detail["turns"]] == ["completed"]
    assert detail["turns"][0]["duration_ms"] == 900 and detail["turns"][0]["ttft_ms"] == 120
    roles = [(m["role"], m["text"]) for m in detail["messages"]]
    assert roles == [("user", "1+2?"), ("assistant", ""), ("tool", "3"), ("assistant", "It is 3.")]
    call = detail["messages"][1]["tool_calls"][0]
    assert call == {"call_id": "c1", "tool": "demo__add", "arguments": {"a": 1, "b": 2}}
    assert detail["messages"][2]["call_id"] == "c1" and detail["messages"][2]["is_error"] is False

    as_of = (await gw.alice.get(f"/v1/sessions/{session}", params={"at": 2})).json()
    assert as_of["version"] == 2 and as_of["pending"] == [turn]
    assert [m["role"] for m in as_of["messages"]] == ["user"]
    running = (await gw.alice.get(f"/v1/sessions/{session}", params={"at": 5})).json()
    assert running["in_flight"] == turn and running["turns"][0]["status"] == "running"
    missing = await gw.alice.get(f"/v1/sessions/{session}", params={"at": 999})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "version_not_found"


async def test_wait_for_gives_read_your_writes(gw: Harness) -> None:
    session = await gw.new_session()
    posted = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "hi"})).json()
    response = await gw.alice.get(
        f"/v1/sessions/{session}", params={"wait_for": posted["position"]}
    )
    assert response.json()["messages"][-1]["text"] == "hi"
    future = await gw.store.last_position() + 1000
    late = await gw.alice.get(f"/v1/sessions/{session}", params={"wait_for": future})
    assert late.status_code == 409 and late.json()["error"]["type"] == "not_caught_up"


async def test_post_message_appends_user_message_with_a_new_turn(gw: Harness) -> None:
    session = await gw.new_session()
    response = await gw.alice.post(
        f"/v1/sessions/{session}/messages", json={"text": "Hello", "client_message_id": "m-1"}
    )
    assert response.status_code == 202, response.text
    body = response.json()
    rec = (await gw.store.load(session))[-1]
    assert rec.event == UserMessage(text="Hello", client_message_id="m-1")
    assert (rec.turn, rec.position, rec.version) == (body["turn_id"], body["position"], 2)
    assert rec.envelope.actor == "user:alice"


async def test_cancel_targets_the_running_turn_or_the_given_one(gw: Harness) -> None:
    session = await gw.new_session()
    nothing = await gw.alice.post(f"/v1/sessions/{session}/cancel")
    assert nothing.status_code == 409 and nothing.json()["error"]["type"] == "nothing_to_cancel"

    turn = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "a"})).json()
    await agent_turn(gw.store, session, turn["turn_id"], end=False)  # running
    response = await gw.alice.post(f"/v1/sessions/{session}/cancel", json={"reason": "stop"})
    assert response.status_code == 202, response.text
    assert response.json()["turn_id"] == turn["turn_id"]
    rec = (await gw.store.load(session))[-1]
    assert rec.kind == "cancel_requested" and rec.turn == turn["turn_id"]
    again = await gw.alice.post(f"/v1/sessions/{session}/cancel")
    assert again.json() == response.json()  # already asked: nothing new appended
    assert await gw.version(session) == rec.version

    unknown = await gw.alice.post(f"/v1/sessions/{session}/cancel", json={"turn_id": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "turn_id"

    done = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "b"})).json()
    await agent_turn(gw.store, session, done["turn_id"])
    finished = await gw.alice.post(
        f"/v1/sessions/{session}/cancel", json={"turn_id": done["turn_id"]}
    )
    assert finished.status_code == 409 and finished.json()["error"]["type"] == "turn_finished"


async def test_cancel_a_pending_turn(gw: Harness) -> None:
    session = await gw.new_session()
    turn = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "a"})).json()
    response = await gw.alice.post(f"/v1/sessions/{session}/cancel")
    assert response.status_code == 202 and response.json()["turn_id"] == turn["turn_id"]


async def test_export_is_the_raw_log_as_json_lines(gw: Harness) -> None:
    session = await gw.new_session()
    turn = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "x"})).json()
    await agent_turn(gw.store, session, turn["turn_id"])
    response = await gw.alice.get(f"/v1/sessions/{session}/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    stored = await gw.store.load(session)
    assert [(x["position"], x["hash"]) for x in lines] == [(r.position, r.hash) for r in stored]
    assert [msgspec.json.encode(x["record"]) for x in lines] == [r.raw for r in stored]


async def test_providers_list_names_and_models_never_keys(gw: Harness) -> None:
    response = await gw.alice.get("/v1/providers")
    assert response.status_code == 200
    body = response.json()
    names = {p["name"]: p for p in body["providers"]}
    assert names["dev"]["models"] == ["threadline-dev"]
    assert names["openai"]["default_model"] == "gpt-4.1-mini"
    assert body["tool_servers"] == ["demo", "search"]
    assert "base_url" not in response.text and "localhost" not in response.text


async def test_health_ready_metrics_need_no_token(gw: Harness) -> None:
    anonymous = gw.client(None)
    assert (await anonymous.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["event_log"] == "ok"
    session = await gw.new_session()
    turn = (await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "t"})).json()
    ended = gw.gateway.metrics.turns_seen
    await agent_turn(gw.store, session, turn["turn_id"])
    await gw.gateway.metrics.turns_ended(ended + 1)
    await gw.alice.get(f"/v1/sessions/{session}")
    metrics = await anonymous.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert (
        'threadline_gateway_requests_total{method="GET",route="/v1/sessions/{session_id}",status="200"}'
        in text
    )
    assert "threadline_gateway_sse_clients " in text
    assert "threadline_gateway_events_relayed_total " in text
    assert "# TYPE threadline_gateway_turn_duration_seconds histogram" in text
    assert 'threadline_gateway_turn_duration_seconds_bucket{le="1.0"}' in text
    assert 'threadline_gateway_turns_total{outcome="completed"}' in text
    assert "alice" not in text and session not in text


async def test_the_schema_page_loads_nothing_from_another_origin(gw: Harness) -> None:
    page = await gw.client(None).get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    head = page.text.split("<body", 1)[0]  # the body holds the OpenAPI document itself
    assert not re.search(r"(?i)(https?:)?//", head), head  # no CDN, no web fonts, no icon
    (script,) = re.findall(r'<script src="([^"]+)"', head)
    assert script.startswith("/")
    bundle = await gw.client(None).get(script)
    assert bundle.status_code == 200 and bundle.headers["content-type"].startswith(
        "text/javascript"
    )
    assert b"Redoc" in bundle.content and len(bundle.content) > 100_000


async def test_openapi_schema_is_served_and_documents_the_api(gw: Harness) -> None:
    response = await gw.client(None).get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert set(schema["paths"]) >= {
        "/v1/sessions",
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/messages",
        "/v1/sessions/{session_id}/cancel",
        "/v1/sessions/{session_id}/events",
        "/v1/sessions/{session_id}/export",
        "/v1/sessions/{session_id}/verify",
        "/v1/providers",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["components"]["schemas"]["PostMessage"]["additionalProperties"] is False


async def test_rename_shows_in_the_list_and_the_session_and_forks_are_marked(
    gw: Harness,
) -> None:
    session = await gw.new_session(title="Draft")
    renamed = await gw.alice.patch(
        f"/v1/sessions/{session}",
        json={"title": "Release notes"},
        headers={"Idempotency-Key": "r1"},
    )
    assert renamed.status_code == 200, renamed.text
    again = await gw.alice.patch(
        f"/v1/sessions/{session}",
        json={"title": "Release notes"},
        headers={"Idempotency-Key": "r1"},
    )
    assert again.json() == renamed.json()  # a retry renames once
    listed = await gw.alice.get("/v1/sessions", params={"wait_for": renamed.json()["position"]})
    row = next(s for s in listed.json()["sessions"] if s["id"] == session)
    assert row["title"] == "Release notes" and row["forked_from"] is None
    assert (await gw.alice.get(f"/v1/sessions/{session}")).json()["title"] == "Release notes"
    for bad in ({"title": ""}, {"title": "   "}, {"title": "x" * 201}, {}):
        refused = await gw.alice.patch(f"/v1/sessions/{session}", json=bad)
        assert refused.status_code in (400, 422), (bad, refused.text)
    assert (await gw.bob.patch(f"/v1/sessions/{session}", json={"title": "mine"})).status_code in (
        403,
        404,
    )
    version = await gw.version(session)
    fork = await gw.alice.post(f"/v1/sessions/{session}/fork", json={"version": version})
    assert fork.status_code == 201, fork.text
    listed = await gw.alice.get("/v1/sessions", params={"wait_for": fork.json()["position"]})
    row = next(s for s in listed.json()["sessions"] if s["id"] == fork.json()["id"])
    assert (row["title"], row["forked_from"], row["forked_version"]) == (
        "Release notes",
        session,
        version,
    )


#: the whitespace of either dialect: Python's ``re`` (the gateway's) and ECMAScript's
#: (the OpenAPI document's), as ``\s`` of each matches (U+180E: space to neither now)
SPACES = (
    "\t\n\v\f\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u180e\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200C))
)
ECMA_TEST = (
    "const {pattern, inputs} = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
    "console.log(JSON.stringify(inputs.map((s) => new RegExp(pattern, 'u').test(s))));"
)


async def ecmascript_matches(pattern: str, inputs: list[str]) -> list[bool]:
    """Whether each input matches ``pattern`` as a JSON Schema (ECMAScript) validator sees it."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is missing")
    proc = await asyncio.create_subprocess_exec(
        node, "-e", ECMA_TEST, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate(json.dumps({"pattern": pattern, "inputs": inputs}).encode())
    assert proc.returncode == 0
    verdicts: list[bool] = json.loads(out)
    return verdicts


async def test_titles_and_messages_the_document_allows_are_accepted_and_no_others(
    gw: Harness,
) -> None:
    """The document's patterns are ECMAScript, the gateway checks with Python's ``re``: a
    bare ``\\S`` let the document promise a title of U+001F that the gateway refused
    (schemathesis found it), and refuse U+FEFF that the gateway took."""
    schemas = (await gw.alice.get("/schema/openapi.json")).json()["components"]["schemas"]
    session = await gw.new_session(title="Draft")
    for schema, field, route in (
        ("RenameSession", "title", ("PATCH", f"/v1/sessions/{session}")),
        ("PostMessage", "text", ("POST", f"/v1/sessions/{session}/messages")),
    ):
        pattern = schemas[schema]["properties"][field]["pattern"]
        spaces = list(SPACES)
        allowed = await ecmascript_matches(pattern, spaces)
        for space, documented in zip(spaces, allowed, strict=True):
            answer = await gw.alice.request(*route, json={field: space})
            assert (answer.status_code < 300) == documented, (field, hex(ord(space)), answer.text)
        assert all(await ecmascript_matches(pattern, [f"a{c}" for c in spaces] + ["\u200b"]))
    for space in SPACES:  # with something to show, any space is fine
        answer = await gw.alice.patch(f"/v1/sessions/{session}", json={"title": f"a{space}"})
        assert answer.status_code == 200, (hex(ord(space)), answer.text)


async def test_the_export_is_written_in_chunks_not_line_by_line() -> None:
    """One write per line made a 12,601-event export take 2-4 s more than reading it."""
    store = MemoryEventStore()
    await store.append("s", NewEvent(event=SessionStarted(owner="o")))
    await store.append("s", [NewEvent(event=TextDelta(text="x" * 100)) for _ in range(1999)])
    chunks = [chunk async for chunk in _export_lines(store, "s")]
    body = b"".join(chunks)
    assert body.count(b"\n") == 2000 and body.endswith(b"\n")
    assert len(chunks) <= len(body) // EXPORT_CHUNK_BYTES + 1
    assert all(len(chunk) >= EXPORT_CHUNK_BYTES for chunk in chunks[:-1])


async def test_admins_erase_an_owner_through_the_api(gw: Harness, tmp_path: Path) -> None:
    """``POST /v1/admin/erasures``: admins only; afterwards the owner's sessions read as
    erased (and still verify), other owners' do not."""
    gw.store.keyring = Keyring(DirectoryKeyStore(tmp_path / "keys"))
    session = await gw.new_session(title="secret plans")
    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "my secret"})
    assert posted.status_code == 202, posted.text
    others = await gw.new_session(gw.bob, title="bob's")
    assert (await gw.alice.get(f"/v1/sessions/{session}")).json()["title"] == "secret plans"

    refused = await gw.alice.post("/v1/admin/erasures", json={"owner": "alice"})
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "forbidden"
    assert (await gw.root.post("/v1/admin/erasures", json={})).status_code == 422
    bad = await gw.root.post("/v1/admin/erasures", json={"before": "2026-13-01"})
    assert bad.status_code == 422, bad.text
    done = await gw.root.post("/v1/admin/erasures", json={"owner": "alice"})
    assert done.status_code == 200, done.text
    body = done.json()
    assert len(body["keys"]) == 1 and body["position"] > posted.json()["position"]

    shown = (await gw.alice.get(f"/v1/sessions/{session}")).json()
    assert shown["title"] == ERASED and shown["messages"][0]["text"] == ERASED
    assert (await gw.bob.get(f"/v1/sessions/{others}")).json()["title"] == "bob's"
    verified = await gw.alice.get(f"/v1/sessions/{session}/verify")
    assert verified.status_code == 200 and verified.json()["ok"] is True, verified.text
