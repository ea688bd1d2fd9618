"""Turns answered by the dev model record which model answered, like any provider's: a
session that names no model gets the provider's default, and the log and the history
say so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.support.stack import running_stack
from threadline.events.schema import TERMINAL_KINDS, TurnStarted
from threadline.services.runtime.natsserver import EmbeddedNats


async def test_a_dev_model_turn_records_its_model(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    provider = "dev"
    async with running_stack(nats_server.url, tmp_path) as stack:
        headers = {"Authorization": f"Bearer {stack.token}"}
        async with httpx.AsyncClient(base_url=stack.url, headers=headers) as client:
            made = await client.post("/v1/sessions", json={"provider": provider})
            assert made.status_code == 201, made.text
            session = made.json()["id"]
            posted = await client.post(f"/v1/sessions/{session}/messages", json={"text": "hi"})
            assert posted.status_code == 202, posted.text
            async with asyncio.timeout(30):
                records = []
                async for rec in stack.store.follow(session):
                    records.append(rec)
                    if rec.kind in TERMINAL_KINDS:
                        break
            detail = (await client.get(f"/v1/sessions/{session}")).json()
    [started] = [r.event for r in records if isinstance(r.event, TurnStarted)]
    assert (started.provider, started.model) == (provider, "threadline-dev")
    assert [(t["provider"], t["model"]) for t in detail["turns"]] == [(provider, "threadline-dev")]
