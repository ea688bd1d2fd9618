"""The record signature rule (events/signing.py, docs/audit.md) on hand-made bytes: what a
check refuses, and why, for records no store would write."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.signing import independent_check, policy
from threadline.events import codec
from threadline.events.schema import ForkOrigin, ToolCall
from threadline.events.signing import Signer, TrustPolicy, detach

KEY = Ed25519PrivateKey.generate()
TRUST = policy(gateway=(KEY, ("user:*",), True))


def unsigned(actor: str = "user:alice", **more: object) -> bytes:
    fields = {"schema": 1, "session": "s1", "version": 1, "at": 1, "actor": actor,
              "key": "k", "prev": "0" * 64, **more}  # fmt: skip
    # an event whose own members include a "sig" and end the record's text with '"}'
    event = ToolCall(call_id="c", tool="t", arguments={"sig": "ed25519:x:y"})
    return codec.encode_sealed(fields, codec.encode(event))


def check(stored: bytes) -> str | None:
    return TRUST.check(stored, codec.decode(stored))


def test_a_signed_record_passes_and_any_change_fails() -> None:
    _, stored = Signer(KEY).seal(unsigned())
    assert check(stored) is None and independent_check(stored, KEY.public_key())
    assert detach(stored) is not None and detach(stored)[0] == unsigned()  # type: ignore[index]
    tampered = stored.replace(b'"actor":"user:alice"', b'"actor":"user:alicf"')
    assert "does not verify" in (check(tampered) or "")


def test_unsigned_and_malformed_signatures_are_named() -> None:
    assert check(unsigned()) == "it is not signed"  # the event's own "sig" is not one
    sig, stored = Signer(KEY).seal(unsigned())
    head, _, value = sig.rpartition(":")
    # the same 64 bytes spelt otherwise: the last character's 4 unused bits set
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(value[-3])
    padded = value[:-3] + alphabet[last ^ 1] + "=="
    assert base64.b64decode(padded) == base64.b64decode(value)
    for bad, why in [
        (stored.replace(sig.encode(), b"rsa:" + sig.encode()[8:]), "is not ed25519:"),
        (stored.replace(sig.encode(), head.encode() + b":" + padded.encode()), "does not verify"),
        (stored.replace(sig.encode(), head.encode() + b":!!!!"), "does not verify"),
    ]:
        assert why in (check(bad) or ""), bad


def test_a_copy_needs_a_key_that_may_write_copies() -> None:
    copy = unsigned(actor="agent:w1", copied_from=ForkOrigin(session="s0", version=3))
    _, stored = Signer(KEY).seal(copy)
    assert check(stored) is None
    no_copies = policy(gateway=(KEY, ("user:*",)))
    reason = no_copies.check(stored, codec.decode(stored))
    assert reason is not None and "may not write a fork's copy of actor 'agent:w1'" in reason


def test_a_policy_file_must_say_what_it_is() -> None:
    with pytest.raises(ValueError, match="not a trust policy"):
        TrustPolicy.from_json({"keys": []})
    raw = base64.b64encode(b"\0" * 31).decode()
    with pytest.raises(ValueError):
        TrustPolicy.from_json({"version": 1, "keys": [{"public_key": raw}]})
    assert TrustPolicy.from_json(TRUST.to_json()).keys.keys() == TRUST.keys.keys()


def test_unsigned_records_from_before_the_policy_pass_and_later_ones_do_not() -> None:
    grandfathered = TrustPolicy(TRUST.keys, unsigned_before=5)
    record = unsigned()
    envelope = codec.decode(record)
    assert grandfathered.check(record, envelope, 4) is None  # written before signing began
    assert grandfathered.check(record, envelope, 5) == "it is not signed"
    assert grandfathered.check(record, envelope) == "it is not signed"  # position unknown
    _, stored = Signer(Ed25519PrivateKey.generate()).seal(record)  # signed: always checked
    assert "does not list" in (grandfathered.check(stored, codec.decode(stored), 4) or "")
    assert TrustPolicy.from_json(grandfathered.to_json()).unsigned_before == 5
    with pytest.raises(ValueError, match="unsigned_before"):
        TrustPolicy.from_json({**grandfathered.to_json(), "unsigned_before": -1})
