"""The issue-11 benchmark harness works: its raw streaming client against the real dev
model, and the long-session section end to end on a real stack (a few turns)."""

from __future__ import annotations

import sys

import pytest

from bench import followcpu, instructions, longsession
from bench.against import figures, table
from bench.e2e_client import TurnError
from bench.stream_client import StreamClient, Wire, openai_wire
from threadline.services.devmodel import DevModelSettings, serve


def test_points_and_windows() -> None:
    assert longsession.points_for(30) == [1, 10, 30]
    assert longsession.points_for(1000) == [1, 10, 100, 500, 1000]
    assert longsession.window_for(1) == range(1, 2)
    assert longsession.window_for(10) == range(2, 11)
    assert longsession.window_for(1000) == range(991, 1001)


async def test_stream_client_times_a_streamed_answer() -> None:
    async with serve(DevModelSettings(ttft_ms=30, tokens_per_second=200)) as url:
        ttft_ms, duration_s = await StreamClient(url, openai_wire("Hi [[words:20]]")).turn(0, 0)
    assert 30 <= ttft_ms < duration_s * 1000


async def test_stream_client_reports_a_refused_request() -> None:
    wire = openai_wire(token="bad-key")
    async with serve(DevModelSettings.fast()) as url:
        with pytest.raises(TurnError, match="HTTP 401"):
            await StreamClient(url, wire).turn(0, 0)
        missing = Wire("/v1/nowhere", wire.body, wire.first)
        with pytest.raises(TurnError, match="HTTP 404"):
            await StreamClient(url, missing).turn(0, 0)


async def test_long_session_section_measures_its_points() -> None:
    result = await longsession.measure(5, sessions=2, quiet_wait_s=0)
    assert (result.error, result.done) == ("", 10)
    assert [[p.turn for p in run] for run in result.runs] == [[1, 5], [1, 5]]
    assert [p.turn for p in result.points] == [1, 5]
    first, second = (run[1].get_kib for run in result.runs)
    assert result.points[1].get_kib == (first + second) / 2  # the median of two
    for point in result.points:
        assert point.ttft_ms > 0 and point.direct_ms > 0
        assert point.get_ms > 0 and point.get_kib > 0
    assert result.points[1].get_kib > result.points[0].get_kib  # the history grew
    assert any(line.startswith("| 5 | 2-5 |") for line in longsession.report(result))


def test_against_reads_every_figure_of_a_report() -> None:
    report = "\n".join([
        "Run 2026-12-07 on x86_64, code at commit abc1234.",
        "",
        "### Event log",
        "",
        "| measure | raw nats-py | Threadline store | ratio / delta |",
        "| --- | --- | --- | --- |",
        "| appends/s, one session | 2,939 | 2,925 | 1.00 |",
        "| latency p99 (ms) | 0.745 | 0.713 | -0.031 ms |",
        "",
        "### Gateway",
        "",
        "| measure | value | notes |",
        "| --- | --- | --- |",
        "| replay over SSE (events/s) | 40,298 | 10,000 events, from the start |",
        "| every client got every event | yes | |",
    ])  # fmt: skip
    found = figures(report)
    assert found == {
        ("Event log", "appends/s, one session", "raw nats-py"): 2939.0,
        ("Event log", "appends/s, one session", "Threadline store"): 2925.0,
        ("Event log", "appends/s, one session", "ratio / delta"): 1.0,
        ("Event log", "latency p99 (ms)", "raw nats-py"): 0.745,
        ("Event log", "latency p99 (ms)", "Threadline store"): 0.713,
        ("Event log", "latency p99 (ms)", "ratio / delta"): -0.031,
        ("Gateway", "replay over SSE (events/s)", "value"): 40298.0,
    }
    key = ("Gateway", "replay over SSE (events/s)", "value")
    rows = table("abc1234", {key: [1.0, 3.0, 2.5]}, {key: [4000.0, 6000.0, 5000.0]})
    assert rows[-1] == (
        "| Gateway | replay over SSE (events/s) | value | 2.5 (1, 3, 2.5) "
        "| 5,000 (4,000, 6,000, 5,000) |"
    )


async def test_followcpu_times_every_reader(nats_url: str) -> None:
    results = await followcpu.measure(nats_url, 250, 2)
    assert len(results) == 2 and all(r > 0 for r in results)


def test_against_names_rows_by_their_leading_cells_and_splits_paired_figures() -> None:
    report = "\n".join([
        "### Against the peers",
        "",
        "| conversations | system | turns | added p50 / p99 (ms) | serving path CPU (ms/turn) |",
        "| --- | --- | --- | --- | --- |",
        "| 50 | direct SDK | 740 | - | - |",
        "| 50 | Threadline | 735 | +2.0 / -7.9 | 23 (nats-server 5, agent 10) |",
        "| 50 | AI SDK + Redis | 635 | +105.5 / +287.2 | 28 (node 28) |",
    ])  # fmt: skip
    found = figures(report)
    peers = "Against the peers"
    assert found[(peers, "50 · Threadline", "turns")] == 735.0
    assert found[(peers, "50 · Threadline", "added p50 / p99 (ms) [1]")] == 2.0
    assert found[(peers, "50 · Threadline", "added p50 / p99 (ms) [2]")] == -7.9
    assert found[(peers, "50 · Threadline", "serving path CPU (ms/turn)")] == 23.0
    assert found[(peers, "50 · AI SDK + Redis", "added p50 / p99 (ms) [2]")] == 287.2
    assert found[(peers, "50 · direct SDK", "turns")] == 740.0
    assert len(found) == 9


@pytest.mark.parametrize("loop", ["store", "raw"])
def test_instruction_count_loops_run_against_a_real_server(nats_url: str, loop: str) -> None:
    """The loops ``bench.instructions`` counts under callgrind run to the end (here
    without valgrind: a few events, the checkout's own tree)."""
    done = instructions.run_loop(instructions.ROOT, sys.executable, loop, nats_url, 3)
    assert done.stdout == "3 events followed\n"
