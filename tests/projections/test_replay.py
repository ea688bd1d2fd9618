"""``threadline replay``: the timeline, JSON lines, as-of, real-time pacing, follow."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import msgspec
import pytest

from tests.projections.cli import run_command, settings_for
from tests.projections.helpers import rich_session, user
from threadline.base.errors import InvalidInput, SessionNotFound
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import TextDelta
from threadline.events.store import NewEvent
from threadline.projections import session_at
from threadline.projections.timeline import Timeline
from threadline.services.cli import replay


async def replay_output(
    store: JetStreamEventStore, url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    *argv: str,
) -> str:  # fmt: skip
    assert await run_command(replay, list(argv), settings_for(store, url, tmp_path)) == 0
    return capsys.readouterr().out


async def test_timeline_of_tools_fallbacks_failure_and_cancel(
    js_store: JetStreamEventStore,
    nats_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await js_store.append("s1", rich_session())
    out = await replay_output(js_store, nats_url, tmp_path, capsys, "s1")
    print(out, file=sys.stderr)  # shown with -s: the example in docs/projections.md
    lines = out.splitlines()
    assert lines[0].startswith("session s1: 28 events, v1..v28, from ")
    expected = [
        "session started  owner=alice  openai/gpt-x",
        'user:alice     USER (t1): "What\'s the weather in Paris?"',
        "turn t1 attempt 1 started  openai/gpt-x  worker=w1",
        "text (t1#1 step 0) x2 over ",
        '"Let me check."',
        'TOOL CALL c1 weather.forecast {"city": "Paris"}',
        'ASSISTANT (t1#1 step 0, tool_calls, in=10 out=5)  calls=c1: "Let me check."',
        'TOOL RESULT c1 forecast ok 120ms: "18C, sunny"',
        "turn t1 COMPLETED  steps=2 ttft=400ms duration=1500ms in=30 out=13",
        'FALLBACK provider_switched  openai/gpt-x -> anthropic/claude-x: "rate limited"',
        "turn t2 attempt 2 started  anthropic/claude-x  worker=w2",
        'FALLBACK tools_disabled: "model does not support tools"',
        'turn t3 FAILED rate_limit: "rate limited; retry after 20 s" (retryable)',
        'CANCEL REQUESTED (t4): "stop pressed"',
        'turn t4 CANCELLED: "user"  partial="Once upon"',
    ]
    for piece in expected:
        assert piece in out, piece
    superseded = [line for line in lines if "[superseded attempt]" in line]
    assert len(superseded) == 3  # t2's first attempt: started, its text, its message
    assert all("t2" in line for line in superseded)
    assert sum("text (" in line for line in lines) == 4  # deltas folded: one line per step
    assert [line.split()[0] for line in lines[1:4]] == ["v1", "v2", "v3"]


async def test_gaps_get_a_line_of_their_own(js_store: JetStreamEventStore) -> None:
    records = await js_store.append("s1", rich_session()[:6])
    start = records[0].envelope.at
    spaced = [  # the tool call comes 3.5 s after the deltas
        msgspec.structs.replace(
            rec,
            envelope=msgspec.structs.replace(
                rec.envelope, at=start + i * 1000 + (i >= 5) * 3_500_000
            ),
        )
        for i, rec in enumerate(records)
    ]
    timeline = Timeline(gap_s=2.0)
    text = "".join(timeline.feed(rec) for rec in spaced) + timeline.close()
    assert "... 3.501s without events ..." in text
    assert text.count("without events") == 1


async def test_json_lines_for_machines(
    js_store: JetStreamEventStore, nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recs = await js_store.append("s1", rich_session())
    out = await replay_output(js_store, nats_url, tmp_path, capsys, "s1", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["position"] for r in rows] == [r.position for r in recs]
    assert rows[0]["gap_ms"] is None and rows[1]["gap_ms"] >= 0
    assert rows[5]["kind"] == "tool_call" and rows[5]["event"]["arguments"] == {"city": "Paris"}
    assert [r["version"] for r in rows if r["superseded"]] == [13, 14, 15]
    assert rows[-1]["event"] == {
        "kind": "turn_cancelled",
        "partial_text": "Once upon",
        "reason": "user",
    }


async def test_as_of_a_version(
    js_store: JetStreamEventStore, nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await js_store.append("s1", rich_session())
    at_t1 = await session_at(js_store, "s1", 11)
    assert at_t1.version == 11 and at_t1.status("t1") == "completed"
    assert [m.__class__.__name__ for m in at_t1.committed] == [
        "UserTurn", "AssistantTurn", "ToolTurn", "AssistantTurn",
    ]  # fmt: skip
    mid_t2 = await session_at(js_store, "s1", 14)
    assert mid_t2.in_flight == "t2" and mid_t2.turns["t2"].partial_text == "Why"
    out = await replay_output(js_store, nats_url, tmp_path, capsys, "s1", "--at", "11")
    assert out.startswith("session s1 at version 11 (position ")
    assert '  tool c1 forecast: "18C, sunny"' in out
    assert '  assistant: "Let me check."  calls: c1 forecast({"city": "Paris"})' in out
    assert "  t1  completed  attempt 1" in out
    out = await replay_output(js_store, nats_url, tmp_path, capsys, "s1", "--at", "28", "--json")
    state = json.loads(out)
    assert state["version"] == 28 and state["turns"]["t4"]["status"] == "cancelled"
    with pytest.raises(InvalidInput, match="no version 99"):
        await session_at(js_store, "s1", 99)
    with pytest.raises(SessionNotFound):
        await session_at(js_store, "nope", 1)


async def test_realtime_replays_at_the_recorded_pace(
    js_store: JetStreamEventStore, nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await js_store.append("s1", rich_session()[:4])
    await asyncio.sleep(0.4)  # test data: a pause between two deltas, to be replayed
    await js_store.append("s1", NewEvent(event=TextDelta(text="check."), turn="t1", attempt=1))
    started = time.monotonic()
    out = await replay_output(js_store, nats_url, tmp_path, capsys, "s1", "--realtime")
    assert time.monotonic() - started >= 0.35
    assert "text (t1#1 step 0): Let me check.\n" in out  # streamed as it came
    started = time.monotonic()
    await replay_output(js_store, nats_url, tmp_path, capsys, "s1", "--realtime", "--speed", "20")
    assert time.monotonic() - started < 0.35


class _Stdout:
    """Collects what a command writes and wakes the test when ``wanted`` shows up."""

    def __init__(self, wanted: str) -> None:
        self.text = ""
        self.wanted = wanted
        self.seen = asyncio.Event()

    def write(self, text: str) -> int:
        self.text += text
        if self.wanted in self.text:
            self.seen.set()
        return len(text)

    def flush(self) -> None:
        pass


async def test_follow_shows_new_events_live(
    js_store: JetStreamEventStore,
    nats_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await js_store.append("s1", rich_session()[:3])
    stdout = _Stdout('USER (t9): "are you there?"')
    monkeypatch.setattr(sys, "stdout", stdout)
    task = asyncio.create_task(
        run_command(replay, ["s1", "--follow"], settings_for(js_store, nats_url, tmp_path))
    )
    await js_store.append("s1", user("are you there?", "t9"))
    await asyncio.wait_for(stdout.seen.wait(), 30)
    task.cancel()
    await asyncio.wait([task])
    assert "turn t1 attempt 1 started" in stdout.text
