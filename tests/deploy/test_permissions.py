"""The production users' permissions, on real nats-servers running deploy/nats/: every
delete, purge, message delete and stream change by a service is refused, on the stream
and on the key-value buckets beside it (and the same call by admin is not), services
append only what they own and write only the buckets they keep, and with one node
killed the other two carry on."""

from __future__ import annotations

import asyncio
import json
import signal

import nats
import nats.errors

from tests.deploy.prodcluster import (
    STREAM,
    ProdCluster,
    connect,
    retried,
    violation,
)
from threadline.base.errors import StoreUnavailable
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.kv import buckets
from threadline.events.schema import Event, SessionStarted, UserMessage
from threadline.events.store import NewEvent, checkpoint_subject
from threadline.events.stream import stream_problems
from threadline.services.runtime.processes import wait_healthy

APP_USERS = ("agent", "gateway", "projector", "checkpointer")


def destructive_calls(stream: str) -> list[tuple[str, bytes]]:
    unsafe = json.dumps({"name": stream, "subjects": ["x.>"], "deny_delete": False}).encode()
    return [
        (f"$JS.API.STREAM.DELETE.{stream}", b""),
        (f"$JS.API.STREAM.PURGE.{stream}", b""),
        (f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq": 1}'),
        (f"$JS.API.STREAM.MSG.DELETE.{stream}", b'{"seq": 1, "no_erase": true}'),
        (f"$JS.API.STREAM.UPDATE.{stream}", unsafe),
        (f"$JS.API.STREAM.CREATE.{stream}X", unsafe),
        (f"$JS.API.STREAM.SNAPSHOT.{stream}", b""),
        (f"$JS.API.STREAM.PEER.REMOVE.{stream}", b'{"peer": "nats-0"}'),
        (f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b""),
        (f"$JS.API.ACCOUNT.PURGE.{stream}", b""),
    ]


async def refusals(prod: ProdCluster, user: str) -> dict[tuple[int, str], bool]:
    """Every destructive call as ``user``: refused (no answer, and the server reported a
    permissions violation for exactly that subject)?"""
    errors: list[str] = []
    nc = await connect(prod, user, errors)
    calls = [
        call
        for stream in (STREAM.name, "SCRATCH", *(f"KV_{b.bucket}" for b in buckets(STREAM)))
        for call in destructive_calls(stream)
    ]
    results = await asyncio.gather(
        *(nc.request(subject, body, timeout=1.5) for subject, body in calls),
        return_exceptions=True,
    )
    await nc.close()
    return {
        (i, subject): isinstance(result, nats.errors.TimeoutError)
        and violation(errors, subject + '"')
        for i, ((subject, _), result) in enumerate(zip(calls, results, strict=True))
    }


async def test_services_cannot_delete_purge_or_reconfigure(prod: ProdCluster) -> None:
    admin = await connect(prod, "admin")
    js = admin.jetstream()
    # a stream without deny flags: only the users' permissions stand in the way here
    await js.add_stream(name="SCRATCH", subjects=["scratch.>"], num_replicas=3)
    await js.publish("scratch.a", b"keep me")
    before = (await js.stream_info(STREAM.name)).state
    outcomes = await asyncio.gather(*(refusals(prod, user) for user in APP_USERS))
    attempts = sum(len(o) for o in outcomes)
    refused = sum(ok for o in outcomes for ok in o.values())
    failures = [(user, call) for user, o in zip(APP_USERS, outcomes, strict=True)
                for call, ok in o.items() if not ok]  # fmt: skip
    assert not failures
    assert attempts == refused == len(APP_USERS) * 40
    after = await js.stream_info(STREAM.name)
    assert after.state.messages == before.messages and after.state.last_seq == before.last_seq
    assert stream_problems(after.config, STREAM) == []
    for bucket in buckets(STREAM):  # still there, as the admin made them
        kept = (await js.stream_info(f"KV_{bucket.bucket}")).config
        assert kept.num_replicas == 3 and kept.max_msgs_per_subject == 1 and kept.deny_delete
    assert (await js.stream_info("SCRATCH")).state.messages == 1
    await js.purge_stream("SCRATCH")  # the control: the same call is fine for admin
    assert (await js.stream_info("SCRATCH")).state.messages == 0
    await js.delete_stream("SCRATCH")
    await admin.close()


async def refused_append(prod: ProdCluster, user: str, event: Event) -> bool:
    errors: list[str] = []
    nc = await connect(prod, user, errors)
    store = JetStreamEventStore(nc, STREAM, timeout_s=1.5)
    try:
        await store.append(f"deny-{user}", NewEvent(event=event))
    except StoreUnavailable as exc:
        return "no acknowledgement" in str(exc) and violation(errors, f"tl.deny-{user}.")
    finally:
        await nc.close()
    return False


async def refused_publish(prod: ProdCluster, user: str, subject: str) -> bool:
    """A record published to ``subject`` as ``user``: refused (else stored)?"""
    errors: list[str] = []
    nc = await connect(prod, user, errors)
    try:
        await nc.jetstream().publish(subject, b"{}", timeout=1.5)
    except nats.errors.TimeoutError:
        return violation(errors, subject + '"')
    finally:
        await nc.close()
    return False


async def test_services_append_only_what_they_own(prod: ProdCluster) -> None:
    """The gateway appends sessions' records (the command layer's: a fork copies every
    kind; which actor it may write is the trust policy's) but no checkpoint, the
    projector nothing, the checkpointer checkpoints only."""
    admin = await connect(prod, "admin")
    before = (await admin.jetstream().stream_info(STREAM.name)).state.last_seq
    refused = await asyncio.gather(
        refused_append(prod, "projector", UserMessage(text="not mine")),
        refused_publish(prod, "gateway", checkpoint_subject(STREAM.prefix)),
        refused_append(prod, "checkpointer", UserMessage(text="not mine")),
    )
    assert refused == [True, True, True]
    assert (await admin.jetstream().stream_info(STREAM.name)).state.last_seq == before
    await admin.close()


async def refused_put(prod: ProdCluster, user: str, bucket: str) -> bool:
    """A key put into ``bucket`` as ``user``: refused (else stored)?"""
    errors: list[str] = []
    nc = await connect(prod, user, errors)
    subject = f"$KV.{bucket}.probe-{user}"
    try:
        await nc.request(subject, b"x", timeout=1.5)
    except nats.errors.TimeoutError:
        return violation(errors, subject + '"')
    finally:
        await nc.close()
    return False


async def test_services_write_only_the_buckets_they_keep(prod: ProdCluster) -> None:
    """Snapshots: the agent and the gateway; the sessions directory: the gateway only;
    the projector and the checkpointer neither (reading: test_buckets.py)."""
    snapshots, sessions = (b.bucket for b in buckets(STREAM))
    refused = await asyncio.gather(
        *(refused_put(prod, user, snapshots) for user in APP_USERS),
        *(refused_put(prod, user, sessions) for user in APP_USERS),
    )
    assert refused == [False, False, True, True, True, False, True, True]


async def test_failover_with_one_node_down(prod: ProdCluster) -> None:
    """R3 over mutual-TLS routes: with a node killed, the other two elect leaders and
    appends and reads go on (retried by the client while the election runs)."""
    errors: list[str] = []
    gateway = await connect(prod, "gateway", errors)
    store = JetStreamEventStore(gateway, STREAM, timeout_s=3)
    victim = prod.nodes[1]
    await victim.stop(signal.SIGKILL)
    try:
        new = NewEvent(event=SessionStarted(owner="o"))
        (rec,) = await retried(lambda: store.append("fo", new))
        stored = await retried(lambda: store.load("fo"))
        assert [r.position for r in stored] == [rec.position]
    finally:
        await gateway.close()
        await victim.start()
        await wait_healthy(prod.monitor_urls)
    assert not violation(errors, "")
