"""NATS accounts and users for production: an admin, one user per service, and
permissions that allow appending and reading but never deleting, purging or
reconfiguring the stream (rendered into ``deploy/nats/nats-server.conf``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from threadline.base.config import StreamSettings

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


def roles(stream: StreamSettings | None = None) -> tuple[Role, ...]:
    """The application users and their permissions for one stream."""
    s = stream or StreamSettings()
    api = "$JS.API"
    reads = (
        f"{api}.INFO",
        f"{api}.STREAM.INFO.{s.name}",
        f"{api}.STREAM.MSG.GET.{s.name}",
        f"{api}.DIRECT.GET.{s.name}",
        f"{api}.DIRECT.GET.{s.name}.>",
        f"{api}.CONSUMER.CREATE.{s.name}",
        f"{api}.CONSUMER.CREATE.{s.name}.>",
        f"{api}.CONSUMER.DELETE.{s.name}.>",
        f"{api}.CONSUMER.INFO.{s.name}.>",
        f"$JS.FC.{s.name}.>",
    )
    durable = (
        f"{api}.CONSUMER.DURABLE.CREATE.{s.name}.>",
        f"{api}.CONSUMER.MSG.NEXT.{s.name}.>",
        f"$JS.ACK.{s.name}.>",
    )
    user_intents = tuple(
        f"{s.prefix}.*.{kind}" for kind in ("session_started", "user_message", "cancel_requested")
    )
    return (
        Role(
            "agent",
            (f"{s.prefix}.>", *reads, *durable),
            comment="appends turns; shares the durable consumer on user messages",
        ),
        Role(
            "gateway",
            (*user_intents, *reads),
            comment="appends user intents only (sessions, messages, stop); reads and tails",
        ),
        Role("projector", reads, comment="reads and tails only; appends nothing"),
    )


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
    for role in roles(stream):
        out += [
            f"      # {role.user}: {role.comment}",
            "      {",
            f"        user: {role.user}, password: ${'NATS_' + role.user.upper() + '_PASSWORD'}",
            "        permissions: {",
            "          publish: {",
            f"            allow: {conf_list(role.publish, '            ')}",
            f"            deny: {conf_list(DENIED_API, '            ')}",
            "          }",
            f"          subscribe: {{ allow: {conf_list(role.subscribe, '            ')} }}",
            "        }",
            "      }",
        ]
    out += ["    ]", "  }", "}"]
    return "\n".join(out)
