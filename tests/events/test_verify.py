"""``threadline verify`` catches deleted and rewritten events (on a stream without deny flags)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import pytest

from tests.conftest import fresh_stream
from threadline.base.config import StreamSettings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, TextDelta
from threadline.events.store import NewEvent, Stored


async def run_verify(
    url: str, settings: StreamSettings, session: str, *args: str
) -> tuple[int, str]:
    env = {
        **os.environ,
        "THREADLINE_NATS_URL": url,
        "THREADLINE_STREAM": settings.name,
        "THREADLINE_PREFIX": settings.prefix,
        "THREADLINE_ALLOW_UNSAFE_STREAM": "1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "threadline.services.cli", "verify", session, *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.fixture
async def tamperable(nats_url: str) -> AsyncIterator[tuple[JetStreamEventStore, StreamSettings]]:
    settings = fresh_stream(deny_delete=False, deny_purge=False)
    store = await JetStreamEventStore.connect(nats_url, settings, allow_unsafe=True)
    await store.append("s", NewEvent(event=SessionStarted(owner="o")))
    await store.append("s", [NewEvent(event=TextDelta(text=str(i))) for i in range(5)])
    yield store, settings
    await store.close()


async def test_verify_passes_an_untouched_session(
    tamperable: tuple[JetStreamEventStore, StreamSettings], nats_url: str
) -> None:
    store, settings = tamperable
    code, out = await run_verify(nats_url, settings, "s")
    assert code == 0, out
    assert "OK, 6 events" in out and (await store.head("s")).hash in out


async def test_verify_says_how_the_head_differs_from_the_expected_one(
    tamperable: tuple[JetStreamEventStore, StreamSettings], nats_url: str
) -> None:
    """Issue 12 item 12: a head mismatch names both hashes and where the head is, not
    "position 0 (an undecodable event)"."""
    store, settings = tamperable
    head = await store.head("s")
    expected = "ab" * 32
    code, out = await run_verify(nats_url, settings, "s", "--expect-head", expected)
    assert code == 1
    assert "position 0" not in out and "undecodable" not in out
    assert f"position {head.position} (version {head.version})" in out
    assert expected in out and head.hash in out


async def test_verify_names_a_deleted_event(
    tamperable: tuple[JetStreamEventStore, StreamSettings], nats_url: str
) -> None:
    store, settings = tamperable
    records = await store.load("s")
    await store.nc.jetstream().delete_msg(settings.name, records[3].position)
    code, out = await run_verify(nats_url, settings, "s")
    assert code == 1
    assert f"first bad event at position {records[4].position}" in out
    assert "version 5, expected 4" in out


async def test_verify_names_a_rewritten_event(
    tamperable: tuple[JetStreamEventStore, StreamSettings], nats_url: str
) -> None:
    store, settings = tamperable
    records = await store.load("s")
    victim = records[2]
    forged = victim.raw.replace(b'"text":"1"', b'"text":"X"')
    assert forged != victim.raw
    js = store.nc.jetstream()
    await js.delete_msg(settings.name, victim.position)
    await js.publish(f"{settings.prefix}.s.text_delta", forged)  # lands at the end
    code, out = await run_verify(nats_url, settings, "s")
    assert code == 1
    assert f"first bad event at position {records[3].position}" in out


async def test_verify_names_a_modified_event_in_place(nats_url: str) -> None:
    """Bytes changed without deleting (as if edited on disk): the next link breaks."""
    from threadline.events.verify import verify_session

    store = await JetStreamEventStore.connect(nats_url, fresh_stream())
    records = await store.append("s", [NewEvent(event=TextDelta(text=str(i))) for i in range(4)])
    await store.close()

    async def altered() -> AsyncIterator[Stored]:
        for rec in records:
            yield Stored(
                rec.position, "tl.s.text_delta", rec.raw.replace(b'"text":"2"', b'"text":"Z"')
            )

    report = await verify_session("s", altered())
    assert not report.ok
    assert report.problems[0].position == records[3].position
    assert "hash chain broken" in report.problems[0].reason
