"""Property-based testing of the whole HTTP API against its own OpenAPI document.

Schemathesis (4.x, its Python engine: the same phases as ``schemathesis run``: coverage,
fuzzing with 100 examples per operation in positive and negative modes, and stateful
sequences that create sessions and use them) with every check enabled: no 5xx, every
response conforms to the document (status, content type, headers, body, each SSE
event), schema-valid requests are accepted, schema-violating ones rejected, auth is not
ignored, OPTIONS/405 advertise the right methods.

The gateway runs in-process on this test's event loop; the engine is synchronous and
runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import schemathesis
from schemathesis import engine
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from tests.gateway.harness import gateway_options
from tests.gateway.views_harness import running_views_gateway
from threadline.services.runtime.natsserver import EmbeddedNats

EXAMPLES = 100


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "headers": {"Authorization": "Bearer alice-token"},
            "workers": 1,
            "request-timeout": 10,
            "max-stream-events": 1,  # an SSE stream never ends: judge its first event
            "generation": {"max-examples": EXAMPLES, "mode": "all", "database": "none"},
            "checks": {"enabled": True},
            "phases": {"stateful": {"generation": {"max-examples": 25}}},
            "operations": [
                # the first entry that names an operation decides (put narrow ones first)
                {
                    # admins only: the fuzzing caller (alice) is refused whatever she sends
                    "include-name": "POST /v1/admin/erasures",
                    "checks": {"positive_data_acceptance": {"expected-statuses": ["401", "403"]}},
                },
                {
                    # provider, model and tool servers are checked against the catalog,
                    # which the document cannot express: a schema-valid but unknown name
                    # is a 422 (only this operation; everything else must accept valid data)
                    "include-path": "/v1/sessions",
                    "include-method": "POST",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "404", "409", "422", "429"]
                        }
                    },
                },
                {
                    # the same for a fork's provider and model; and its version must exist
                    # (include-name: include-path and include-method would be ORed)
                    "include-name": "POST /v1/sessions/{session_id}/fork",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "404", "409", "422"]
                        }
                    },
                },
                {
                    # a day matching YYYY-MM-DD may still be no date (2026-13-45): 422
                    "include-name": "GET /v1/usage",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "409", "422"]
                        }
                    },
                },
            ],
        }
    )


def _run(url: str) -> tuple[list[str], dict[str, int]]:
    schema = schemathesis.openapi.from_url(f"{url}/schema/openapi.json", config=_config())
    problems: list[str] = []
    phases: dict[str, int] = {}
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            key = f"{event.phase.name} {event.recorder.label}"
            phases[key] = phases.get(key, 0) + len(event.recorder.cases)
            if event.status in (Status.FAILURE, Status.ERROR):
                problems += _describe(event)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"{type(event).__name__}: {event}")
    return problems, phases


def _describe(event: events.ScenarioFinished) -> list[str]:
    out = []
    for case_id, checks in event.recorder.checks.items():
        interaction: Any = event.recorder.interactions.get(case_id)
        exchange = ""
        if interaction is not None and interaction.response is not None:
            request, response = interaction.request, interaction.response
            exchange = (
                f" | {request.method} {request.uri} -> {response.status_code} "
                f"{response.content[:300]!r}"
            )
        for check in checks:
            if check.failure_info is not None:
                title = str(check.failure_info.failure).splitlines()[0]
                out.append(f"{event.recorder.label}: {check.name}: {title}{exchange}")
    return out or [f"{event.recorder.label}: {event.status}"]


async def test_the_api_conforms_to_its_openapi_document(
    nats_server: EmbeddedNats, tmp_path: Path, figure: Callable[[str], None]
) -> None:
    """Against the gateway as ``threadline up`` wires it: history from the projections."""
    options = gateway_options(wait_timeout_s=0.05, max_stream_s=0.05, max_sse_per_owner=64)
    async with running_views_gateway(nats_server.url, tmp_path, options, with_log=False) as pair:
        problems, cases = await asyncio.to_thread(_run, pair.views.url)
        document = (await pair.views.alice.get("/schema/openapi.json")).json()
    assert not problems, "\n".join(problems)
    # every documented operation was fuzzed (a route added to the document is, with no
    # count to update), and those with inputs got their examples (the others: one request)
    without_inputs = {"GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/providers"}
    documented = {f"{m.upper()} {path}" for path, item in document["paths"].items() for m in item}
    fuzzed = {k.removeprefix("FUZZING "): n for k, n in cases.items() if k.startswith("FUZZING ")}
    assert set(fuzzed) == documented, (sorted(documented - set(fuzzed)), sorted(fuzzed))
    assert without_inputs < documented and len(documented) >= 17, sorted(documented)
    assert all(n >= EXAMPLES for op, n in fuzzed.items() if op not in without_inputs), fuzzed
    assert cases.get("STATEFUL_TESTING Stateful tests", 0) > 0, cases
    with_inputs = {op: n for op, n in fuzzed.items() if op not in without_inputs}
    figure(
        f"{len(fuzzed)} operations, all checks: {sum(cases.values())} cases "
        f"(fuzzing: {min(with_inputs.values())}-{max(with_inputs.values())} per operation "
        f"with inputs, {len(without_inputs)} without inputs; coverage and stateful phases "
        "besides): 0 5xx, 0 schema violations, 0 failed checks"
    )
