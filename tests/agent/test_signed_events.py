"""Signed events (docs/audit.md): under a trust policy the agent does not act on a
question whose signature does not verify (a log line, ``threadline_events_signature_
rejected_total{by="agent"}``), and answers the signed ones; its own events are signed
with its key. Real nats-server, dev model and agent worker."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.agent.conftest import Harness
from tests.conftest import fresh_stream
from tests.support.signing import independent_check, policy
from threadline.base.config import Settings
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted, UserMessage
from threadline.events.signing import REJECTED, Signer
from threadline.events.store import NewEvent
from threadline.events.verify import verify_session
from threadline.services.agent.service import serve_agent
from threadline.services.agent.turn import AgentSettings


async def test_the_agent_ignores_forged_questions_and_answers_signed_ones(
    nats_url: str, devmodel_url: str, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="threadline.services.agent.worker")
    gateway, agent = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    trust = policy(gateway=(gateway, ("user:*",)), agent=(agent, ("agent:*",)))
    stream = fresh_stream()
    connect = JetStreamEventStore.connect
    as_gateway = await connect(nats_url, stream, signer=Signer(gateway), trust=trust)
    as_agent = await connect(nats_url, stream, signer=Signer(agent), trust=trust)
    unsigned = await connect(nats_url, stream)
    stranger = await connect(nats_url, stream, signer=Signer(Ed25519PrivateKey.generate()))
    posing = await connect(nats_url, stream, signer=Signer(agent))  # the agents' key, as a user
    before = REJECTED.value(by="agent")
    settings = Settings(data_dir=str(tmp_path))
    worker = AgentSettings(worker="signed", retry_base_s=0.01, delta_window_s=0.005)
    try:
        async with serve_agent(
            settings, as_agent, devmodel_url=devmodel_url, agent=worker, env={}, ack_wait_s=5
        ):
            harness = Harness(as_gateway)
            started = SessionStarted(owner="alice", provider="dev")
            await as_gateway.append("s1", NewEvent(event=started, actor="user:alice"))
            forged = [
                await forger.append("s1", ask(f"forged {n}", f"f{n}"))
                for n, forger in enumerate((unsigned, stranger, posing))
            ]
            await as_gateway.append("s1", ask("hi", "t1"))
            answered = await harness.until_terminal("s1", "t1")
        assert answered[-1].kind == "turn_completed"
        everything = await unsigned.load("s1")  # no trust policy: every record
        assert {r.turn for r in everything[1:] if r.kind != "user_message"} == {"t1"}
        assert REJECTED.value(by="agent") - before == 3
        logged = [r.getMessage() for r in caplog.records if "not acting on" in r.getMessage()]
        assert len(logged) == 3
        for [rec], line in zip(forged, logged, strict=True):
            assert f"position {rec.position}" in line and f"version {rec.version}" in line
        assert "not signed" in logged[0] and "does not list" in logged[1]
        assert "may not write a record of actor 'user:alice'" in logged[2]
        for rec in answered:  # the agent's own events: signed with its key
            assert independent_check(rec.raw, agent.public_key()), rec.raw
        report = await verify_session(
            "s1", unsigned.follow_raw([f"{stream.prefix}.s1.*"], until_end=True), trust=trust
        )
        assert [p.position for p in report.problems] == [rec.position for [rec] in forged]
    finally:
        for store in (as_gateway, as_agent, unsigned, stranger, posing):
            await store.close()


def ask(text: str, turn: str) -> NewEvent:
    return NewEvent(event=UserMessage(text=text), turn=turn, actor="user:alice")
