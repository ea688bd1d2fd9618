"""Bad input: the right status, one error shape, a named field, and nothing appended."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import fresh_stream
from tests.gateway.harness import Harness, gateway_options, running_gateway
from threadline.services.runtime.natsserver import EmbeddedNats

SESSION = "{session}"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    field: str | None = None
    token: str | None = "alice-token"


MESSAGES = f"/v1/sessions/{SESSION}/messages"
CASES = [
    Case("body over the size limit", "POST", MESSAGES, 413,
         {"content": b'{"text": "' + b"x" * (1024 * 1024) + b'"}'}, "payload_too_large"),
    Case("malformed JSON", "POST", MESSAGES, 400, {"content": b'{"text": '}, "malformed_body"),
    Case("not an object", "POST", MESSAGES, 422, {"json": ["text"]}, "invalid_request"),
    Case("missing text", "POST", MESSAGES, 422, {"json": {}}, "invalid_request", "text"),
    Case("text not a string", "POST", MESSAGES, 422, {"json": {"text": 5}}, field="text"),
    Case("empty text", "POST", MESSAGES, 422, {"json": {"text": ""}}, field="text"),
    Case("blank text", "POST", MESSAGES, 422, {"json": {"text": " \n\t"}}, field="text"),
    Case("oversize text", "POST", MESSAGES, 422, {"json": {"text": "y" * 64_001}}, field="text"),
    Case("unknown field", "POST", MESSAGES, 422, {"json": {"text": "a", "txt": "b"}}, field="txt"),
    Case("bad client_message_id", "POST", MESSAGES, 422,
         {"json": {"text": "a", "client_message_id": "has space"}}, field="client_message_id"),
    Case("bad Idempotency-Key", "POST", MESSAGES, 422,
         {"json": {"text": "a"}, "headers": {"Idempotency-Key": "has space"}},
         field="Idempotency-Key"),
    Case("unknown session", "POST", "/v1/sessions/nope/messages", 404, {"json": {"text": "a"}},
         "session_not_found"),
    Case("malformed session id", "POST", "/v1/sessions/bad.id/messages", 404,
         {"json": {"text": "a"}}, "session_not_found"),
    Case("over-long session id", "GET", "/v1/sessions/" + "s" * 65, 404, {}, "session_not_found"),
    Case("no token", "POST", MESSAGES, 401, {"json": {"text": "a"}}, "unauthorized", token=None),
    Case("wrong token", "POST", MESSAGES, 401, {"json": {"text": "a"}}, "unauthorized",
         token="wrong-token"),
    Case("unknown provider", "POST", "/v1/sessions", 422, {"json": {"provider": "acme"}},
         field="provider"),
    Case("model the provider lacks", "POST", "/v1/sessions", 422,
         {"json": {"provider": "openai", "model": "gpt-0"}}, field="model"),
    Case("model nobody offers", "POST", "/v1/sessions", 422, {"json": {"model": "gpt-0"}},
         field="model"),
    Case("unknown tool server", "POST", "/v1/sessions", 422,
         {"json": {"tool_servers": ["demo", "shell"]}}, field="tool_servers"),
    Case("temperature out of range", "POST", "/v1/sessions", 422,
         {"json": {"params": {"temperature": 3}}}, field="params.temperature"),
    Case("negative top_p", "POST", "/v1/sessions", 422,
         {"json": {"params": {"top_p": -0.1}}}, field="params.top_p"),
    Case("more steps than the deployment allows", "POST", "/v1/sessions", 422,
         {"json": {"params": {"max_steps": 9}}}, field="params.max_steps"),
    Case("more output tokens than the deployment allows", "POST", "/v1/sessions", 422,
         {"json": {"params": {"max_tokens": 200_000}}}, field="params.max_tokens"),
    Case("thinking budget for an OpenAI-wire provider", "POST", "/v1/sessions", 422,
         {"json": {"provider": "dev", "params": {"reasoning_budget_tokens": 2048}}},
         field="params.reasoning_budget_tokens"),
    Case("thinking budget for the default provider (OpenAI)", "POST", "/v1/sessions", 422,
         {"json": {"params": {"reasoning_budget_tokens": 2048}}},
         field="params.reasoning_budget_tokens"),
    Case("zero thinking budget", "POST", "/v1/sessions", 422,
         {"json": {"params": {"reasoning_budget_tokens": 0}}},
         field="params.reasoning_budget_tokens"),
    Case("create body too large", "POST", "/v1/sessions", 413,
         {"content": b'{"system_prompt": "' + b"p" * (1024 * 1024) + b'"}'}),
    Case("bad cancel turn id", "POST", f"/v1/sessions/{SESSION}/cancel", 422,
         {"json": {"turn_id": "a.b"}}, field="turn_id"),
    Case("bad retry turn id", "POST", f"/v1/sessions/{SESSION}/retry", 422,
         {"json": {"turn_id": "a.b"}}, field="turn_id"),
    Case("limit zero", "GET", "/v1/sessions", 422, {"params": {"limit": 0}}, field="limit"),
    Case("limit not a number", "GET", "/v1/sessions", 422, {"params": {"limit": "ten"}},
         field="limit"),
    Case("bad cursor", "GET", "/v1/sessions", 422, {"params": {"cursor": "abc"}}, field="cursor"),
    Case("cursor of a position", "GET", "/v1/sessions", 422, {"params": {"cursor": "12"}},
         field="cursor"),
    Case("negative version", "GET", f"/v1/sessions/{SESSION}", 422, {"params": {"at": -1}},
         field="at"),
    Case("negative wait_for", "GET", f"/v1/sessions/{SESSION}", 422,
         {"params": {"wait_for": -1}}, field="wait_for"),
    Case("null as a query value", "GET", f"/v1/sessions/{SESSION}", 422,
         {"params": {"wait_for": "null"}}, field="wait_for"),
    Case("null resume position", "GET", f"/v1/sessions/{SESSION}/events", 422,
         {"params": {"after": "null"}}, field="after"),
    Case("unknown route", "GET", "/v1/nothing-here", 404, {}, "not_found"),
    Case("wrong method", "DELETE", f"/v1/sessions/{SESSION}", 405, {}, "method_not_allowed"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input(gw: Harness, case: Case) -> None:
    session = await gw.new_session()
    before = await gw.store.last_position()
    client = gw.client(case.token)
    response = await client.request(case.method, case.path.replace(SESSION, session), **case.kwargs)
    assert response.status_code == case.status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"type", "message"} <= set(body["error"])
    if case.error_type:
        assert body["error"]["type"] == case.error_type
    if case.field:
        assert body["error"]["field"] == case.field, body
        assert case.field in body["error"]["message"]
    assert "Traceback" not in response.text and "alice-token" not in response.text
    assert await gw.store.last_position() == before, "a rejected request appended something"
    if case.status == 405:
        assert "GET" in response.headers["allow"]


DEEP = "[" * 1000 + "]" * 1000  # 2 KB


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/sessions", DEEP),
        (MESSAGES, '{"text": ' + DEEP + "}"),
        ("/api/chat", '{"id": "c", "messages": ' + DEEP + "}"),
    ],
)
async def test_json_nested_a_thousand_deep_is_400_and_one_log_line(
    gw: Harness, caplog: pytest.LogCaptureFixture, path: str, body: str
) -> None:
    session = await gw.new_session()
    url, headers = path.replace(SESSION, session), {"content-type": "application/json"}
    with caplog.at_level(logging.DEBUG, logger="threadline"):
        response = await gw.alice.post(url, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "malformed_body"
    logged = [r for r in caplog.records if r.name.startswith("threadline.services.gateway")]
    assert len(logged) <= 1 and not any(r.exc_info for r in logged), logged
    assert not any("Traceback" in r.getMessage() for r in logged)


async def test_an_event_over_the_stores_limit_is_413_and_nothing_is_appended(
    nats_server: EmbeddedNats,
) -> None:
    stream = fresh_stream(max_event_bytes=4096)
    async with running_gateway(nats_server.url, gateway_options(), stream=stream) as gw:
        session = await gw.new_session()
        response = await gw.alice.post(
            f"/v1/sessions/{session}/messages", json={"text": "z" * 5000}
        )
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "payload_too_large"
        assert await gw.version(session) == 1


async def test_readiness_fails_when_the_log_is_unreachable(nats_server: EmbeddedNats) -> None:
    async with running_gateway(nats_server.url) as gw:
        assert (await gw.client(None).get("/readyz")).status_code == 200
        await gw.store.nc.close()
        response = await gw.client(None).get("/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "checks": {"event_log": "unreachable"}}
        refused = await gw.alice.post("/v1/sessions")
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "unavailable"
