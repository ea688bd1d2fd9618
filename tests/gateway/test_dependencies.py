"""Handlers' dependencies are resolved one after the other: Litestar resolves a batch of
independent ones concurrently, in an anyio task group per request, which cost the
gateway about a tenth of its CPU per streamed turn."""

from __future__ import annotations

from litestar.routes import HTTPRoute

from tests.gateway.harness import Harness


def test_no_handler_resolves_its_dependencies_in_a_task_group(gw: Harness) -> None:
    checked = 0
    for route in gw.app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler, model in route.route_handler_map.values():
            batches = [sorted(d.key for d in batch) for batch in model.dependency_batches]
            assert all(len(batch) == 1 for batch in batches), (handler, batches)
            checked += bool(batches)
    assert checked > 10  # the authenticated routes, which take the gateway and the caller
