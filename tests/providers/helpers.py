"""What the adapter tests share: the request they send and how a failing step is checked.

(``conftest`` modules cannot be imported under importlib mode, hence a module of its own;
``wire`` is conftest's ``WireServer``.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from threadline.events.conversation import UserTurn
from threadline.services.agent.providers import ModelAdapter, ModelRequest, ProviderError

ASK = ModelRequest(system="sys", messages=(UserTurn(text="hello"),))
#: runs a test on each HTTP transport the adapters offer (settings.transport)
TRANSPORTS = pytest.mark.parametrize("transport", ["aiohttp", "httpx"])


async def fail(adapter: ModelAdapter, request: ModelRequest = ASK) -> ProviderError:
    """The ProviderError that streaming ``request`` through ``adapter`` raises."""
    with pytest.raises(ProviderError) as info:
        async for _ in adapter.stream(request):
            pass
    return info.value


class HttpErrorCase(NamedTuple):
    """An error reply from the wire server and the ProviderError it must become."""

    status: int
    body: Any
    headers: dict[str, str]
    kind: str
    retryable: bool
    retry_after: float | None
    text: str  #: part of the error's message


def http_error_cases(*rows: tuple[Any, ...]) -> list[Any]:
    """``rows`` (:class:`HttpErrorCase` fields) as ``pytest.param``s named status-kind."""
    cases = [HttpErrorCase(*row) for row in rows]
    return [pytest.param(case, id=f"{case.status}-{case.kind}") for case in cases]


async def expect_http_error(wire: Any, adapter: ModelAdapter, case: HttpErrorCase) -> ProviderError:
    """Reply ``case``'s error to ``adapter``'s request; check the error and return it."""
    wire.reply(wire.json_reply(case.status, case.body, case.headers))
    err = await fail(adapter)
    got = (err.kind, err.retryable, err.retry_after_s, err.status)
    assert got == (case.kind, case.retryable, case.retry_after, case.status), (got, err.message)
    assert case.text in err.message, err.message
    return err
