"""The shared metrics registry: exposition format, labels, scrape-time hooks, HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from tests.observability.promtext import has, parse, value
from threadline.base import metrics as metrics_module
from threadline.base.errors import ConfigurationError
from threadline.base.metrics import CONTENT_TYPE, Registry
from threadline.base.tracing import exporter_choice, make_provider
from threadline.services.runtime.metrics_http import serve_metrics


async def test_counters_gauges_and_histograms_render_in_the_text_format() -> None:
    reg = Registry()
    turns = reg.counter("t_turns_total", "Turns.\nSecond line \\ ok", ("outcome",))
    turns.inc(outcome="completed")
    turns.inc(2, outcome="failed")
    reg.gauge("t_running", "Running.").set(3)
    lat = reg.histogram("t_latency_seconds", "Latency.", ("model",), buckets=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 7.0):
        lat.observe(v, model='we"ird\\name\n')
    text = await reg.render()
    assert "# HELP t_turns_total Turns.\\nSecond line \\\\ ok\n" in text
    samples = parse(text)
    assert value(samples, "t_turns_total", outcome="completed") == 1
    assert value(samples, "t_turns_total", outcome="failed") == 2
    assert value(samples, "t_running") == 3
    weird = 'we"ird\\name\n'
    assert value(samples, "t_latency_seconds_bucket", model=weird, le="0.1") == 2  # le inclusive
    assert value(samples, "t_latency_seconds_bucket", model=weird, le="1.0") == 3
    assert value(samples, "t_latency_seconds_bucket", model=weird, le="+Inf") == 4
    assert value(samples, "t_latency_seconds_count", model=weird) == 4
    assert value(samples, "t_latency_seconds_sum", model=weird) == pytest.approx(7.65)


def test_instruments_are_made_once_and_checked() -> None:
    reg = Registry()
    a = reg.counter("x_total", "X.", ("kind",))
    assert reg.counter("x_total", "X.", ("kind",)) is a
    with pytest.raises(ValueError, match="already exists"):
        reg.gauge("x_total", "X.", ("kind",))
    with pytest.raises(ValueError, match="already exists"):
        reg.counter("x_total", "X.", ("other",))
    with pytest.raises(ValueError, match="takes labels"):
        a.inc(wrong="1")
    with pytest.raises(ValueError, match="non-negative"):
        a.inc(-1, kind="k")
    with pytest.raises(ValueError, match="invalid metric name"):
        reg.counter("bad-name", "no")
    a.inc(kind="k")
    a.remove(kind="k")
    assert reg.text() == "# HELP x_total X.\n# TYPE x_total counter\n"


async def test_scrape_hooks_sample_values_and_a_failing_one_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_module, "SCRAPE_HOOK_TIMEOUT_S", 0.05)
    reg = Registry()
    lag = reg.gauge("t_lag", "Lag.", ("view",))
    sampled = 0

    async def sample() -> None:
        nonlocal sampled
        sampled += 1
        lag.set(sampled * 10, view="v")

    async def broken() -> None:
        raise RuntimeError("down")

    async def stuck() -> None:
        await asyncio.sleep(10)

    remove = reg.on_scrape(sample)
    reg.on_scrape(broken)
    reg.on_scrape(stuck)
    assert value(parse(await reg.render()), "t_lag", view="v") == 10
    assert value(parse(await reg.render()), "t_lag", view="v") == 20  # sampled per scrape
    remove()
    assert value(parse(await reg.render()), "t_lag", view="v") == 20
    assert sampled == 2


async def test_the_metrics_port_serves_metrics_and_nothing_else() -> None:
    reg = Registry()
    reg.counter("t_hits_total", "Hits.").inc()
    async with serve_metrics(0, registry=reg) as url, httpx.AsyncClient() as client:
        assert url is not None and url.endswith("/metrics")
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPE
        assert has(parse(response.text), "t_hits_total")
        assert (await client.get(url.removesuffix("metrics") + "other")).status_code == 404
    async with serve_metrics(None, registry=reg) as nothing:
        assert nothing is None


def test_tracing_is_off_unless_an_exporter_is_chosen() -> None:
    assert exporter_choice({}) is None
    assert exporter_choice({"THREADLINE_OTEL_EXPORTER": "none"}) is None
    assert exporter_choice({"THREADLINE_OTEL_EXPORTER": "OTLP"}) == "otlp"
    assert exporter_choice({"THREADLINE_OTEL_EXPORTER": "console"}) == "console"
    with pytest.raises(ConfigurationError, match="otlp, console or none"):
        exporter_choice({"THREADLINE_OTEL_EXPORTER": "jaeger"})
    # no provider installed: a no-op
    with trace.get_tracer("t").start_as_current_span("nothing") as span:
        assert not span.is_recording()
    for kind in ("otlp", "console"):
        provider = make_provider(kind)
        assert isinstance(provider, TracerProvider)
        provider.shutdown()
