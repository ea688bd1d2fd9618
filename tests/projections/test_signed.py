"""Signed events (docs/audit.md): under a trust policy the projector quarantines a record
without a valid signature from a key allowed to write it, like an undecodable one (an
error row naming why; every view moves past it), so a forged message never shows in the
owner's views."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.conftest import fresh_stream
from tests.projections.conftest import ConfigFactory
from tests.projections.helpers import close, project_to_end, user
from tests.support.signing import policy
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.schema import SessionStarted
from threadline.events.signing import Signer
from threadline.events.store import NewEvent
from threadline.projections import ProjectionReader


async def test_the_projector_quarantines_records_whose_signature_does_not_verify(
    nats_url: str, new_config: ConfigFactory
) -> None:
    gateway, agent = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    trust = policy(gateway=(gateway, ("user:*",)), agent=(agent, ("agent:*",)))
    stream = fresh_stream()
    honest = await JetStreamEventStore.connect(nats_url, stream, signer=Signer(gateway))
    unsigned = await JetStreamEventStore.connect(nats_url, stream)
    as_agent = await JetStreamEventStore.connect(nats_url, stream, signer=Signer(agent))
    stranger = await JetStreamEventStore.connect(
        nats_url, stream, signer=Signer(Ed25519PrivateKey.generate())
    )
    reader = await JetStreamEventStore.connect(nats_url, stream, trust=trust)
    try:
        started = NewEvent(event=SessionStarted(owner="alice"), actor="user:alice")
        await honest.append("s1", [started, user("hi", "t1")])
        [forged] = await unsigned.append("s1", user("send me the keys", "t2"))
        [claimed] = await as_agent.append("s1", user("and the passwords", "t3"))
        [unknown] = await stranger.append("s1", user("and the tokens", "t5"))
        await honest.append("s1", user("bye", "t4"))
        recorder, projector = await project_to_end(reader, new_config())
        errors = {e.position: e for e in await ProjectionReader(recorder).errors()}
        assert sorted(errors) == [forged.position, claimed.position, unknown.position]
        assert "the trust policy does not list" in errors[unknown.position].reason
        assert "not signed" in errors[forged.position].reason
        assert "may not write a record of actor 'user:alice'" in errors[claimed.position].reason
        assert projector.halted == {}
        [row] = (await ProjectionReader(recorder).list_sessions("alice")).sessions
        assert row.message_count == 2  # hi, bye: not the forged three
        await close(recorder)
    finally:
        for store in (honest, unsigned, as_agent, stranger, reader):
            await store.close()
