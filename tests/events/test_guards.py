"""The production stream refuses every way of erasing history."""

from __future__ import annotations

import nats.js.errors
import pytest

from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, TextDelta
from threadline.events.store import NewEvent


async def test_delete_purge_and_rollup_are_refused(js_store: JetStreamEventStore) -> None:
    records = await js_store.append(
        "kept", [NewEvent(event=SessionStarted(owner="o")), NewEvent(event=TextDelta(text="x"))]
    )
    js = js_store.nc.jetstream()
    name, prefix = js_store.settings.name, js_store.prefix
    attempts = {
        "message delete": lambda: js.delete_msg(name, records[0].position),
        "purge": lambda: js.purge_stream(name),
        "purge by subject": lambda: js.purge_stream(name, subject=f"{prefix}.kept.>"),
        "purge keeping 0": lambda: js.purge_stream(name, keep=0),
        "rollup publish": lambda: js.publish(
            f"{prefix}.kept.text_delta", b"{}", headers={"Nats-Rollup": "sub"}
        ),
    }
    refused = []
    for label, attempt in attempts.items():
        with pytest.raises(nats.js.errors.APIError):
            await attempt()
        refused.append(label)
    assert refused == list(attempts)  # 100% refused
    assert [r.raw for r in await js_store.load("kept")] == [r.raw for r in records]
