"""What a turn asks of nats-server: the messages of each kind per turn, counted on a
bench stack (``bench/e2e_stack.py``) by a tap subscription on ``>``, with ``/varz``
message counts and CPU per process.

``python -m bench.natsops [--conversations N] [--duration S]`` drives N closed-loop
conversations of one turn each (``bench/e2e_client.GatewayClient``, as the peers
section does); ``--open C --think S`` drives C open-loop conversations instead
(``bench/openloop.open_loop``: each comes back after a think time). The tap is a
subscriber like any other: nats-server delivers it every message, so its own CPU
figure is higher than without it; the counts per turn are what to compare. Read with
docs/eventstore.md ("What a turn costs nats-server").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import urllib.request
from typing import Any

import nats
from nats.aio.msg import Msg

from bench.common import progress
from bench.e2e_client import GatewayClient, Tally, drive
from bench.e2e_stack import running_stack
from bench.meter import Meter
from bench.openloop import _threadline_opener, open_loop

SERVING = ("nats-server", "agent", "gateway")
#: the JetStream API requests a turn may make, named without their stream and consumer
_APIS = (
    "STREAM.MSG.GET", "CONSUMER.MSG.NEXT", "DIRECT.GET", "CONSUMER.CREATE",
    "CONSUMER.DURABLE.CREATE", "CONSUMER.DELETE", "CONSUMER.INFO", "STREAM.INFO",
)  # fmt: skip


def kind_of(msg: Msg) -> str:
    """What a message is, from its subject, reply subject, headers and payload."""
    subject = msg.subject
    if subject.startswith("_INBOX."):
        return _reply_kind(msg)
    if subject.startswith("$JS.API."):
        api = subject.removeprefix("$JS.API.")
        api = next((name for name in _APIS if api.startswith(name)), api)
        if api.startswith("DIRECT.GET"):
            for field in ("batch", "last_by_subj", "next_by_subj"):
                if f'"{field}"'.encode() in msg.data:
                    return f"api DIRECT.GET ({field})"
        return f"api {api}"
    if subject.startswith("$JS.ACK."):
        return f"ack {msg.data[:4].decode(errors='replace') or '(+ACK)'}"
    if subject.startswith(("$JS.FC.", "$JS.EVENT.")):
        return ".".join(subject.split(".")[:3])
    if subject.startswith("$KV."):
        return f"kv put {subject.split('.')[1]}"
    kind = subject.rsplit(".", 1)[-1]
    return f"delivery {kind}" if (msg.reply or "").startswith("$JS.ACK.") else f"append {kind}"


def _reply_kind(msg: Msg) -> str:
    headers = msg.headers or {}
    if status := headers.get("Status"):
        return f"status {status} {headers.get('Description', '')}".rstrip()
    if "Nats-Sequence" in headers:
        return "reply direct-get record"
    if msg.data.startswith(b'{"stream"'):
        return "reply puback"
    if msg.data.startswith(b'{"type":"io.nats.jetstream.api.v1.'):
        return "reply " + msg.data[34:80].split(b'"')[0].decode()
    return "reply (empty)" if not msg.data else "reply (other)"


def varz(monitor_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{monitor_url}/varz", timeout=10) as resp:
        return dict(json.load(resp))


async def run(conversations: int, duration_s: float, open_c: int, think_s: float) -> None:
    async with running_stack(max(conversations, open_c), sync_always=False) as stack:
        counts: collections.Counter[str] = collections.Counter()
        tap = await nats.connect(stack.nats_url, name="natsops-tap")

        async def count(msg: Msg) -> None:
            counts[kind_of(msg)] += 1

        await tap.subscribe(">", cb=count, pending_msgs_limit=1_000_000)
        warm = GatewayClient(stack.gateway_url, stack.token_for, Tally())
        await drive(10, 0.0, warm.turn)  # warm-up, not counted
        await tap.flush()
        counts.clear()
        before, meter = varz(stack.monitor_url), Meter(stack.pids)
        tally = Tally()
        if open_c:
            opener = _threadline_opener(stack, tally)
            await open_loop(open_c, think_s, duration_s, opener, tally)
        else:
            await drive(conversations, duration_s, GatewayClient(
                stack.gateway_url, stack.token_for, tally).turn, tally)  # fmt: skip
        await tap.flush()
        after, spent = varz(stack.monitor_url), meter.done()
        await tap.close()
        turns = max(1, tally.done)
        print(f"{tally.done} turns, {tally.errors.total()} errors, {spent.wall:.0f} s")
        for key in ("in_msgs", "out_msgs"):
            per_turn = (after[key] - before[key]) / turns
            print(f"  /varz {key} per turn: {per_turn:.1f} (the tap's included)")
        for name in SERVING:
            print(f"  CPU {name}: {spent.per_turn_ms([name], turns):.2f} ms per turn")
        print("  messages per turn, by kind:")
        for kind, n in counts.most_common():
            print(f"  {n / turns:8.2f}  {kind}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.natsops", description=__doc__)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--open", type=int, default=0, help="open-loop conversations")
    parser.add_argument("--think", type=float, default=20.0, help="mean think time (s)")
    args = parser.parse_args(argv)
    progress("starting a stack")
    asyncio.run(run(args.conversations, args.duration, args.open, args.think))
    return 0


if __name__ == "__main__":
    sys.exit(main())
