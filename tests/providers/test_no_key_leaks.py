"""A recognisable fake key sent to a provider never comes back out: not in a
ProviderError (message, str, repr, args) and not in any log line, even when the server
echoes it back in its error body and headers, at DEBUG level for every logger."""

from __future__ import annotations

from typing import Any

import pytest

from tests.providers.helpers import fail
from threadline.base.redact import Redactor
from threadline.events.conversation import UserTurn
from threadline.services.agent.providers import ModelRequest, ProviderError

KEY = "sk-test-SECRET123"
ASK = ModelRequest(messages=(UserTurn(text="hi"),))


def leaks(err: ProviderError) -> list[str]:
    texts = [err.message, str(err), repr(err), *map(str, err.args)]
    return [t for t in texts if "SECRET123" in t]


async def fail_redacting(
    make_adapter: Any, api: str, logs: pytest.LogCaptureFixture
) -> ProviderError:
    """``api``'s adapter, keyed with KEY, failing on the queued reply; meanwhile the
    logs pass through its redactor, as the services' log handlers do."""
    redactor = Redactor()
    logs.handler.addFilter(redactor.log_filter())
    try:
        return await fail(make_adapter(api, key=KEY, redactor=redactor), ASK)
    finally:
        logs.handler.filters.clear()


@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize(
    "status", [401, 400, 429, 500], ids=["auth", "bad_request", "rate_limit", "server"]
)
async def test_key_echoed_by_the_server_never_leaks(
    wire: Any, make_adapter: Any, debug_logs: pytest.LogCaptureFixture, api: str, status: int
) -> None:
    body = {
        "error": {
            "message": f"Incorrect API key provided: {KEY}. Header was 'Bearer {KEY}'",
            "type": "invalid_request_error",
        }
    }
    wire.reply(wire.json_reply(status, body, {"x-echo-key": KEY, "retry-after": "1"}))
    err = await fail_redacting(make_adapter, api, debug_logs)
    assert wire.last.headers["authorization"] == f"Bearer {KEY}"  # it really was sent
    assert leaks(err) == []
    assert err.__cause__ is None and err.__suppress_context__
    assert "SECRET123" not in debug_logs.text
    for record in debug_logs.records:
        assert "SECRET123" not in record.getMessage()
    assert any(r.name.startswith(api) for r in debug_logs.records)  # the SDK did log


async def test_key_in_a_broken_stream_never_leaks(
    wire: Any, make_adapter: Any, debug_logs: pytest.LogCaptureFixture
) -> None:
    chunks = [f'data: {{"error": {{"message": "bad key {KEY}"}}}}\n\n'.encode()]
    wire.reply(wire.sse_reply(chunks))
    err = await fail_redacting(make_adapter, "openai", debug_logs)
    assert leaks(err) == []
    assert "SECRET123" not in debug_logs.text
