"""Audit bundles end to end on a real nats-server (issue 14 item 3): a session with tool
calls after a checkpoint, its records signed by the gateway's and the agent's keys of a
deployment key set (events/signing.py), is exported with ``threadline export --audit``
and checked with ``threadline audit-verify`` (offline: in a process that has no NATS to
reach); a record byte, a proof hash or the checkpoint root altered, a record dropped, or
a record signed by a key not allowed to write it, each fails, naming what and where. The
bundle's proofs are compared with RFC 6962's definitions computed by the second
implementation in tests/events/test_merkle.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fresh_stream
from tests.events.test_merkle import mth, path
from threadline.base.config import Settings
from threadline.events.checkpoint import decode_checkpoint
from threadline.events.checkpointer import log_records
from threadline.events.jetstream import JetStreamEventStore
from threadline.events.keys import ensure_signing_key
from threadline.events.schema import (
    AssistantMessage,
    SessionStarted,
    ToolCall,
    ToolResult,
    UserMessage,
)
from threadline.events.signing import Signer, TrustPolicy
from threadline.events.store import NewEvent
from threadline.events.stream import ensure_stream
from threadline.services.cli import auditverify
from threadline.services.cli import checkpoint as checkpoint_cmd
from threadline.services.cli import export as export_cmd
from threadline.services.cli.main import build_parser
from threadline.services.runtime.eventkeys import ensure_deployment_keys, writer_key

SESSION = "s-audit"


@pytest.fixture
async def log(nats_url: str) -> AsyncIterator[JetStreamEventStore]:
    store = await JetStreamEventStore.connect(nats_url, fresh_stream(), heartbeat_s=0.5)
    yield store
    await store.close()


@pytest.fixture
def settings(log: JetStreamEventStore, nats_url: str, tmp_path: Path) -> Settings:
    """A data dir with ``up``'s key set: a key per writer and the trust policy."""
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        nats_url=nats_url,
        stream=log.settings.name,
        prefix=log.prefix,
    )
    ensure_deployment_keys(settings)
    return settings


def policy_file(settings: Settings) -> Path:
    return settings.data_path / "keys" / "trust.json"


async def writer(url: str, log: JetStreamEventStore, settings: Settings, name: str) -> Any:
    """A store that signs what it appends with the writer ``name``'s key."""
    return await JetStreamEventStore.connect(
        url,
        log.settings,
        heartbeat_s=0.5,
        signer=Signer.from_file(writer_key(settings, name)),
        trust=TrustPolicy.load(policy_file(settings)),
    )


@pytest.fixture
async def writers(
    log: JetStreamEventStore, settings: Settings, nats_url: str
) -> AsyncIterator[dict[str, JetStreamEventStore]]:
    stores = {name: await writer(nats_url, log, settings, name) for name in ("gateway", "agent")}
    yield stores
    for store in stores.values():
        await store.close()


async def turn(
    writers: dict[str, JetStreamEventStore], session: str, n: int, *, tools: bool
) -> None:
    t = f"t{n}"
    question = NewEvent(event=UserMessage(text=f"question {n}"), actor="user:alice", turn=t)
    await writers["gateway"].append(session, question)
    events = []
    if tools:
        events += [
            NewEvent(
                event=ToolCall(call_id=f"c{n}", tool="add", arguments={"a": n, "b": 2}),
                actor="agent:dev",
                turn=t,
                attempt=1,
            ),
            NewEvent(
                event=ToolResult(call_id=f"c{n}", tool="add", content=str(n + 2)),
                actor="agent:dev",
                turn=t,
            ),
        ]
    answer = AssistantMessage(text=f"answer {n}")
    events.append(NewEvent(event=answer, actor="agent:dev", turn=t, attempt=1))
    await writers["agent"].append(session, events)


@pytest.fixture
async def history(
    writers: dict[str, JetStreamEventStore], settings: Settings, capsys: Any
) -> Settings:
    """Two sessions interleaved, a checkpoint, then tool calls in the audited session."""
    for session in (SESSION, "s-other"):
        started = NewEvent(event=SessionStarted(owner="alice"), actor="user:alice")
        await writers["gateway"].append(session, started)
    for n in range(3):
        await turn(writers, SESSION, n, tools=False)
        await turn(writers, "s-other", n, tools=True)
    assert await checkpoint_cmd.run(parse("checkpoint"), settings) == 0
    for n in range(3, 5):
        await turn(writers, SESSION, n, tools=True)
        await turn(writers, "s-other", n, tools=False)
    capsys.readouterr()
    return settings


def parse(*argv: str) -> Any:
    return build_parser(argv[0]).parse_args(list(argv))


async def export(settings: Settings, out: Path, capsys: Any, *extra: str) -> tuple[int, str]:
    code = await export_cmd.run(
        parse("export", "--audit", SESSION, "-o", str(out), *extra), settings
    )
    captured = capsys.readouterr()
    return code, captured.out + captured.err


async def audit_verify(
    bundle: Path, settings: Settings, capsys: Any, *extra: str, key: Path | None = None
) -> tuple[int, str]:
    key = key or public_key(settings)
    argv = [str(bundle), "--checkpoint-key", str(key), "--trusted-keys", str(policy_file(settings))]
    code = await auditverify.run(auditverify.build_parser().parse_args([*argv, *extra]))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def public_key(settings: Settings) -> Path:
    return settings.data_path / "keys" / "checkpoint.key.pub"


async def test_a_session_with_tool_calls_after_a_checkpoint_exports_and_verifies(
    log: JetStreamEventStore, history: Settings, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "bundle.json"
    code, text = await export(history, out, capsys)
    assert code == 0, text
    # the records after the first checkpoint made the exporter sign a fresh one
    bundle = json.loads(out.read_text())
    records = [r async for r in log_records(log)]
    assert bundle["checkpoint"]["size"] == len(records) - 1  # all but its own record
    mine = [r for r in records if f".{SESSION}." in r.subject]
    assert len(bundle["records"]) == len(mine) == 1 + 3 * 2 + 2 * 4
    # the exact stored bytes, in stream order
    assert [base64.b64decode(r["record"]) for r in bundle["records"]] == [r.data for r in mine]
    assert [r["position"] for r in bundle["records"]] == [r.position for r in mine]
    kinds = [json.loads(r.data)["event"]["kind"] for r in mine]
    assert kinds.count("tool_call") == 2 and kinds.count("tool_result") == 2
    assert "not covered" not in text

    # the proofs are RFC 6962's PATH, computed independently from the log's bytes
    size = bundle["checkpoint"]["size"]
    entries = [hashlib.sha256(r.data).digest() for r in records[:size]]
    assert mth(entries).hex() == bundle["checkpoint"]["root"]
    for entry in bundle["records"]:
        index = entry["leaf_index"]
        assert records[index].position == entry["position"]
        assert entry["proof"] == [h.hex() for h in path(index, entries)]

    code, text = await audit_verify(out, history, capsys)
    assert code == 0, text
    assert (
        f"OK: the checkpoint's signature (key {bundle['checkpoint']['key_id']}), 15 inclusion "
        "proofs against its root, 15 record signatures under the trust policy, the hash "
        "chain and versions 1..15" in text
    )
    # the keys the exporter knew, as information
    assert bundle["trust"]["trust_policy"] == json.loads(policy_file(history).read_text())
    assert list(bundle["trust"]["checkpoint_keys"]) == [bundle["checkpoint"]["key_id"]]


async def test_records_after_the_checkpoint_are_listed_as_not_covered(
    history: Settings, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "bundle.json"
    code, text = await export(history, out, capsys, "--no-checkpoint")
    assert code == 0, text
    assert "8 record(s) after it are not covered yet" in text
    bundle = json.loads(out.read_text())
    uncovered = [r for r in bundle["records"] if r["leaf_index"] is None]
    assert len(uncovered) == 8 and all(r["proof"] is None for r in uncovered)
    code, text = await audit_verify(out, history, capsys)
    assert code == 0, text
    assert "7 inclusion proofs" in text
    assert "NOT COVERED: 8 record(s) after the checkpoint (stream sequences " in text
    code, text = await audit_verify(out, history, capsys, "--strict")
    assert code == 1


@pytest.fixture
async def exported(history: Settings, tmp_path: Path, capsys: Any) -> dict[str, Any]:
    out = tmp_path / "bundle.json"
    code, text = await export(history, out, capsys)
    assert code == 0, text
    bundle: dict[str, Any] = json.loads(out.read_text())
    return bundle


async def tampered(
    bundle: dict[str, Any], settings: Settings, tmp_path: Path, capsys: Any
) -> tuple[int, str]:
    out = tmp_path / "tampered.json"
    out.write_text(json.dumps(bundle))
    return await audit_verify(out, settings, capsys)


async def test_a_record_byte_altered_fails_naming_the_record(
    exported: dict[str, Any], history: Settings, tmp_path: Path, capsys: Any
) -> None:
    entry = exported["records"][8]
    data = base64.b64decode(entry["record"])
    assert b'"a":3' in data  # the tool call's arguments of turn 3
    entry["record"] = base64.b64encode(data.replace(b'"a":3', b'"a":4')).decode()
    code, text = await tampered(exported, history, tmp_path, capsys)
    assert code == 1
    where = f"record at stream sequence {entry['position']}, version 9, leaf {entry['leaf_index']}"
    assert f"{where}: its inclusion proof does not lead to the checkpoint's root" in text
    assert f"{where}: signature: its signature does not verify with key " in text
    after = exported["records"][9]
    where = f"record at stream sequence {after['position']}, version 10, leaf {after['leaf_index']}"
    assert f"{where}: hash chain broken" in text


async def test_a_proof_hash_altered_fails_naming_the_record(
    exported: dict[str, Any], history: Settings, tmp_path: Path, capsys: Any
) -> None:
    entry = exported["records"][3]
    proof = entry["proof"]
    proof[1] = proof[1][:10] + ("0" if proof[1][10] != "0" else "1") + proof[1][11:]
    code, text = await tampered(exported, history, tmp_path, capsys)
    assert code == 1
    assert (
        f"record at stream sequence {entry['position']}, version 4, leaf {entry['leaf_index']}: "
        "its inclusion proof does not lead to the checkpoint's root"
    ) in text
    assert text.count("inclusion proof does not lead") == 1  # only that one


async def test_the_checkpoint_root_altered_fails(
    exported: dict[str, Any], history: Settings, tmp_path: Path, capsys: Any
) -> None:
    root = exported["checkpoint"]["root"]
    exported["checkpoint"]["root"] = ("f" if root[0] != "f" else "e") + root[1:]
    code, text = await tampered(exported, history, tmp_path, capsys)
    assert code == 1
    size = exported["checkpoint"]["size"]
    assert f"the checkpoint (of {size} records, root " in text
    assert f"its signature does not verify with key {exported['checkpoint']['key_id']}" in text
    assert "its inclusion proof does not lead to the checkpoint's root" in text


async def test_a_dropped_record_fails_naming_where(
    exported: dict[str, Any], history: Settings, tmp_path: Path, capsys: Any
) -> None:
    dropped = exported["records"].pop(5)
    code, text = await tampered(exported, history, tmp_path, capsys)
    assert code == 1
    after = exported["records"][5]
    assert dropped["position"] < after["position"]
    where = f"record at stream sequence {after['position']}, version 7, leaf {after['leaf_index']}"
    assert f"{where}: version 7, expected 6" in text
    assert f"{where}: hash chain broken" in text


async def test_a_bundle_is_checked_only_against_the_keys_given(
    exported: dict[str, Any], history: Settings, tmp_path: Path, capsys: Any
) -> None:
    """The keys a bundle names are information: another key on the command line fails."""
    assert exported["trust"]["checkpoint_keys"]  # the exporter's key, as information
    other = tmp_path / "other.key"
    ensure_signing_key(other)
    out = tmp_path / "bundle.json"
    out.write_text(json.dumps(exported))
    code, text = await audit_verify(out, history, capsys, key=Path(f"{other}.pub"))
    assert code == 1 and "which is not a trusted key" in text


async def test_audit_verify_runs_with_no_nats_and_no_config(
    exported: dict[str, Any], history: Settings, tmp_path: Path
) -> None:
    """A separate process whose NATS address leads nowhere, in an empty directory: it
    needs nothing but the bundle and the key (and creates no data dir)."""
    work = tmp_path / "offline"
    work.mkdir()
    bundle = work / "bundle.json"
    bundle.write_text(json.dumps(exported))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "THREADLINE_NATS_URL": "nats://127.0.0.1:1",
        "THREADLINE_DATA_DIR": str(work / "never"),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "threadline.services.cli",
        "audit-verify",
        str(bundle),
        "--checkpoint-key",
        str(public_key(history)),
        "--trusted-keys",
        str(policy_file(history)),
        cwd=work,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, out.decode() + err.decode()
    assert b"OK: the checkpoint's signature" in out
    assert sorted(p.name for p in work.iterdir()) == ["bundle.json"]
    # and the checkpoint it carries is the one in the checkpoint directory
    newest = sorted((history.data_path / "checkpoints").glob("checkpoint-*.json"))[-1]
    assert decode_checkpoint(newest.read_bytes()).root == exported["checkpoint"]["root"]


async def test_without_a_checkpoint_or_the_key_nothing_is_exported(
    log: JetStreamEventStore, settings: Settings, tmp_path: Path, capsys: Any
) -> None:
    await log.append(SESSION, NewEvent(event=SessionStarted(owner="alice")))
    out = tmp_path / "bundle.json"
    code, text = await export(settings, out, capsys)
    assert code == 2 and "no checkpoint to prove against" in text
    assert not out.exists() and not (settings.data_path / "keys" / "checkpoint.key").exists()


async def test_a_log_that_no_longer_extends_the_checkpoint_is_not_exported(
    log: JetStreamEventStore, history: Settings, tmp_path: Path, capsys: Any
) -> None:
    """No proof is made from a rewritten history: the stream re-created with one record
    dropped (every later one still there)."""
    records = [r async for r in log_records(log)]
    js = log.nc.jetstream()
    await js.delete_stream(log.settings.name)
    await ensure_stream(log.nc, log.settings)
    for stored in records[:4] + records[5:]:
        await js.publish(stored.subject, stored.data, stream=log.settings.name)
    out = tmp_path / "bundle.json"
    code, text = await export(history, out, capsys, "--no-checkpoint")
    assert code == 1 and "the log does not extend the checkpoint of 20 records" in text
    assert not out.exists()


async def test_records_not_signed_by_a_key_allowed_to_write_them_fail(
    log: JetStreamEventStore,
    writers: dict[str, JetStreamEventStore],
    history: Settings,
    tmp_path: Path,
    capsys: Any,
) -> None:
    """Each is in the checkpoint and its chain is sound: only its signature tells."""
    forged = NewEvent(event=UserMessage(text="transfer it all"), actor="user:alice", turn="t9")
    by_agent = (await writers["agent"].append(SESSION, forged))[0]
    unsigned = (await log.append(SESSION, NewEvent(event=UserMessage(text="and more"))))[0]
    out = tmp_path / "bundle.json"
    code, text = await export(history, out, capsys)
    assert code == 0, text
    code, text = await audit_verify(out, history, capsys)
    assert code == 1
    agent = Signer.from_file(writer_key(history, "agent")).key_id
    bundle = json.loads(out.read_text())
    leaves = {r["position"]: r["leaf_index"] for r in bundle["records"]}
    assert (
        f"record at stream sequence {by_agent.position}, version 16, leaf "
        f"{leaves[by_agent.position]}: signature: key {agent} (agent) may not write a record "
        "of actor 'user:alice'"
    ) in text
    assert (
        f"record at stream sequence {unsigned.position}, version 17, leaf "
        f"{leaves[unsigned.position]}: signature: it is not signed"
    ) in text
    assert "hash chain broken" not in text and "inclusion proof" not in text


async def test_an_unsigned_log_verifies_only_with_unsigned_said(
    log: JetStreamEventStore, settings: Settings, tmp_path: Path, capsys: Any
) -> None:
    """A deployment with signing off: its bundle passes with --unsigned (and the report
    says no record signature was checked), and fails under the trust policy, naming each."""
    await log.append(SESSION, NewEvent(event=SessionStarted(owner="alice")))
    await log.append(SESSION, NewEvent(event=UserMessage(text="hi"), actor="user:alice"))
    assert await checkpoint_cmd.run(parse("checkpoint"), settings) == 0
    out = tmp_path / "bundle.json"
    code, text = await export(settings, out, capsys)
    assert code == 0, text
    args = [str(out), "--checkpoint-key", str(public_key(settings)), "--unsigned"]
    code = await auditverify.run(auditverify.build_parser().parse_args(args))
    text = capsys.readouterr().out
    assert code == 0, text
    assert "2 inclusion proofs against its root, the hash chain and versions 1..2" in text
    assert "record signatures: not checked (--unsigned)" in text
    code, text = await audit_verify(out, settings, capsys)
    assert code == 1 and text.count("signature: it is not signed") == 2
    with pytest.raises(SystemExit):  # neither a trust policy nor --unsigned: refused
        auditverify.build_parser().parse_args(args[:-1])
