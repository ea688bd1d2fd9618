"""NATS accounts and users for production: an admin, one user per service, and
permissions that allow appending and reading but never deleting, purging or
reconfiguring the stream (rendered into ``deploy/nats/nats-server.conf``); and the
key-value buckets beside the stream (:func:`threadline.events.kv.buckets`), which the
admin makes with it (``deploy/nats/kv-*.json``) and each service uses only as far as its
work needs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from nats.js.api import DiscardPolicy, KeyValueConfig, StreamConfig

from threadline.base.config import StreamSettings
from threadline.events.kv import buckets
from threadline.events.store import checkpoint_subject

ACCOUNT: Final = "THREADLINE"

#: JetStream API calls no application user may make: deleting, purging or changing the
#: stream, deleting messages, restoring over it, moving peers, or account-wide purges.
DENIED_API: Final = tuple(
    f"$JS.API.{call}.>"
    for call in (
        *(f"STREAM.{op}" for op in ("CREATE", "UPDATE", "DELETE", "PURGE", "MSG.DELETE")),
        *(f"STREAM.{op}" for op in ("RESTORE", "SNAPSHOT", "PEER.REMOVE", "LEADER.STEPDOWN")),
        "META",
        "SERVER",
        "ACCOUNT",
    )
)


def conf_list(items: Sequence[str], indent: str) -> str:
    """A list in nats-server config syntax, one quoted item per line."""
    inner = "".join(f"{indent}  {json.dumps(item)}\n" for item in items)
    return f"[\n{inner}{indent}]"


@dataclass(frozen=True)
class Role:
    """An application user: what it may publish and subscribe to."""

    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...] = ("_INBOX.>",)
    comment: str = ""
    #: subjects it may not publish to although ``publish`` matches them
    deny: tuple[str, ...] = ()


API: Final = "$JS.API"


def consumers(stream: str) -> tuple[str, ...]:
    """Making, reading and ending one's own ephemeral (ordered) consumers on ``stream``."""
    return (
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.CREATE.{stream}.>",
        f"{API}.CONSUMER.DELETE.{stream}.>",
        f"{API}.CONSUMER.INFO.{stream}.>",
        f"$JS.FC.{stream}.>",
    )


def bucket_use(bucket: KeyValueConfig, *, write: bool = False) -> tuple[str, ...]:
    """Binding ``bucket``, listing its keys (``STREAM.INFO`` with a subject filter) and
    reading a key (a direct get where the bucket allows them, else from the stream
    leader); ``write``: putting keys."""
    stream = f"KV_{bucket.bucket}"
    get = f"{API}.DIRECT.GET.{stream}.>" if bucket.direct else f"{API}.STREAM.MSG.GET.{stream}"
    return (
        f"{API}.STREAM.INFO.{stream}",
        get,
        *((f"$KV.{bucket.bucket}.>",) if write else ()),
    )


def roles(stream: StreamSettings | None = None) -> tuple[Role, ...]:
    """The application users and their permissions for one stream."""
    s = stream or StreamSettings()
    reads = (
        f"{API}.INFO",
        f"{API}.STREAM.INFO.{s.name}",
        f"{API}.STREAM.MSG.GET.{s.name}",
        f"{API}.DIRECT.GET.{s.name}",
        f"{API}.DIRECT.GET.{s.name}.>",
        *consumers(s.name),
    )
    durable = (
        f"{API}.CONSUMER.DURABLE.CREATE.{s.name}.>",
        f"{API}.CONSUMER.MSG.NEXT.{s.name}.>",
        f"$JS.ACK.{s.name}.>",
    )
    # The command layer writes a session's every kind: user intents, renames, approval
    # decisions, a cancelled wait and a fork's copies of the source's history (any kind).
    # Which actor a key may write is the trust policy's (events/signing.py), checked on
    # every read; the server keeps the checkpoints to the checkpointer.
    sessions_any = f"{s.prefix}.*.*"
    snapshots, sessions = buckets(s)
    return (
        Role(
            "agent",
            (f"{s.prefix}.>", *reads, *durable, *bucket_use(snapshots, write=True)),
            comment="appends turns; shares the durable consumer on user messages; "
            "reads and writes snapshots",
        ),
        Role(
            "gateway",
            (
                sessions_any,
                *reads,
                *bucket_use(snapshots, write=True),
                *bucket_use(sessions, write=True),
            ),
            comment="appends what the command layer writes (intents, renames, decisions, "
            "fork copies, erasures), never a checkpoint; reads and tails; reads and writes "
            "snapshots and the sessions directory",
            deny=(checkpoint_subject(s.prefix),),
        ),
        Role("projector", reads, comment="reads and tails only; appends nothing"),
        Role(
            "checkpointer",
            (checkpoint_subject(s.prefix), *reads),
            comment="reads and tails the log; appends signed checkpoints only",
        ),
    )


def bucket_stream(bucket: KeyValueConfig) -> StreamConfig:
    """The stream behind ``bucket``, as nats-py's ``create_key_value`` makes it (no TTL,
    no size limits: tests/deploy/test_buckets.py compares the two on a real server)."""
    return StreamConfig(
        name=f"KV_{bucket.bucket}",
        description=bucket.description,
        subjects=[f"$KV.{bucket.bucket}.>"],
        allow_direct=bucket.direct,
        allow_rollup_hdrs=True,
        allow_msg_ttl=True,
        deny_delete=True,
        discard=DiscardPolicy.NEW,
        duplicate_window=120,
        max_consumers=-1,
        max_msgs=-1,
        max_msgs_per_subject=bucket.history,
        num_replicas=bucket.replicas,
        storage=bucket.storage,
    )


def bucket_files(stream: StreamSettings) -> dict[str, str]:
    """``kv-<name>.json`` per bucket beside ``stream``: the streams behind them as
    JetStream's API takes them (``nats stream add --config``)."""
    return {
        f"kv-{config.bucket.removeprefix(stream.name + '_').lower()}.json": json.dumps(
            dict(sorted(bucket_stream(config).as_dict().items())), indent=2
        )
        + "\n"
        for config in buckets(stream)
    }


def accounts_block(stream: StreamSettings | None = None) -> str:
    """Accounts: ``SYS`` for server operations, one account for Threadline with an
    ``admin`` (stream creation, operations) and one user per service."""
    out = [
        "# Passwords come from the environment (a bcrypt hash from `nats server passwd`",
        "# works too). The system account is for `nats server` operations (peer removal,",
        "# health); admin creates the stream; services get only what they need.",
        "system_account: SYS",
        "accounts {",
        "  SYS {",
        "    users: [{ user: sys, password: $NATS_SYS_PASSWORD }]",
        "  }",
        f"  {ACCOUNT} {{",
        "    jetstream: enabled",
        "    users: [",
        "      { user: admin, password: $NATS_ADMIN_PASSWORD }",
    ]
    out += user_entries(stream, "      ")
    out += ["    ]", "  }", "}"]
    return "\n".join(out)


def password_var(user: str) -> str:
    """The variable a user's password comes from (``NATS_AGENT_PASSWORD``): nats-server
    resolves it from its environment."""
    return f"NATS_{user.upper()}_PASSWORD"


def user_entries(stream: StreamSettings | None, indent: str) -> list[str]:
    """The config lines of every application user (:func:`roles`) with its permissions:
    the production accounts and ``threadline up``'s embedded server both use these."""
    out: list[str] = []
    i = indent
    for role in roles(stream):
        out += [
            f"{i}# {role.user}: {role.comment}",
            f"{i}{{",
            f"{i}  user: {role.user}, password: ${password_var(role.user)}",
            f"{i}  permissions: {{",
            f"{i}    publish: {{",
            f"{i}      allow: {conf_list(role.publish, i + '      ')}",
            f"{i}      deny: {conf_list((*role.deny, *DENIED_API), i + '      ')}",
            f"{i}    }}",
            f"{i}    subscribe: {{ allow: {conf_list(role.subscribe, i + '      ')} }}",
            f"{i}  }}",
            f"{i}}}",
        ]
    return out
