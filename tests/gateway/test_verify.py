"""``GET /v1/sessions/{id}/verify``: the session's hash chain checked by the gateway (the
check ``threadline verify`` makes, ``events/verify.py``), owner-checked like every session
route. A record published raw with nats-py whose ``prev`` does not chain (as a disk edit or
a writer around Threadline would leave it) is named as the first broken position; a
garbage record as unreadable; an earlier head passed back detects a removed tail."""

from __future__ import annotations

import msgspec

from tests.gateway.harness import Harness, agent_turn
from threadline.events.schema import SCHEMA_VERSION, Envelope, TextDelta


async def answered_session(gw: Harness) -> str:
    session = await gw.new_session(title="chained")
    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "hi"})
    assert posted.status_code == 202, posted.text
    await agent_turn(gw.store, session, posted.json()["turn_id"])
    return session


async def test_an_untouched_session_checks_ok_with_its_head(gw: Harness) -> None:
    session = await answered_session(gw)
    response = await gw.alice.get(f"/v1/sessions/{session}/verify")
    assert response.status_code == 200, response.text
    head = await gw.store.head(session)
    assert response.json() == {
        "session": session,
        "ok": True,
        "events": head.version,
        "head": head.hash,
        "last_version": head.version,
        "first_broken": None,
        "problems": [],
    }
    again = await gw.alice.get(f"/v1/sessions/{session}/verify", params={"expect_head": head.hash})
    assert again.json()["ok"] is True


async def test_a_record_that_does_not_chain_is_the_first_broken_position(gw: Harness) -> None:
    session = await answered_session(gw)
    head = await gw.store.head(session)
    forged = Envelope(
        schema=SCHEMA_VERSION, session=session, version=head.version + 1, at=1, actor="agent:x",
        key="forged", prev="0" * 64, event=TextDelta(text="forged"),
    )  # fmt: skip
    js, prefix = gw.store.nc.jetstream(), gw.store.prefix
    ack = await js.publish(f"{prefix}.{session}.text_delta", msgspec.json.encode(forged))
    garbage = await js.publish(f"{prefix}.{session}.text_delta", b"\x00 not a record")

    body = (await gw.alice.get(f"/v1/sessions/{session}/verify")).json()
    assert body["ok"] is False and body["first_broken"] == ack.seq
    assert [p["position"] for p in body["problems"]] == [ack.seq, garbage.seq]
    assert "hash chain broken" in body["problems"][0]["reason"]
    assert body["problems"][0]["version"] == head.version + 1
    assert body["problems"][1]["reason"].startswith("cannot be read")
    assert body["events"] == head.version + 2


async def test_a_head_recorded_earlier_detects_events_added_since(gw: Harness) -> None:
    session = await answered_session(gw)
    earlier = (await gw.alice.get(f"/v1/sessions/{session}/verify")).json()["head"]
    posted = await gw.alice.post(f"/v1/sessions/{session}/messages", json={"text": "more"})
    body = (
        await gw.alice.get(f"/v1/sessions/{session}/verify", params={"expect_head": earlier})
    ).json()
    assert body["ok"] is False and body["first_broken"] == posted.json()["position"]
    assert earlier in body["problems"][0]["reason"]
    bad = await gw.alice.get(f"/v1/sessions/{session}/verify", params={"expect_head": "xyz"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "expect_head"


async def test_only_readers_of_the_session_may_check_it(gw: Harness) -> None:
    session = await answered_session(gw)
    missing = await gw.bob.get("/v1/sessions/nosuchsession0000/verify")
    other = await gw.bob.get(f"/v1/sessions/{session}/verify")
    assert other.status_code == 404 and other.content == missing.content
    assert (await gw.client(None).get(f"/v1/sessions/{session}/verify")).status_code == 401
    admin = await gw.root.get(f"/v1/sessions/{session}/verify")
    assert admin.status_code == 200 and admin.json()["ok"] is True
