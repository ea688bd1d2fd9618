"""Reading a JetStream stream without a consumer: gets, batches, and finding a version.

* :meth:`DirectReads.get` — one record (nats-py's ``get_msg``) by a direct get
  (``$JS.API.DIRECT.GET``): any replica answers, so possibly one that lags the leader;
  or from the stream leader (``$JS.API.STREAM.MSG.GET``), which holds every
  acknowledged append;
* :meth:`DirectReads.batch` — up to ``count`` records matching a subject filter from a
  sequence on, in one request (a batched direct get, nats-server 2.11+: the records, then
  an end-of-batch status);
* :func:`locate` — where a session's version ``k`` is. Versions increase with positions
  but the positions are interleaved with other sessions', so it searches: each probe is
  a direct get ``next_by_subj`` (the session's first record at or after a sequence),
  starting from the head (the tail of a session is usually close together), then
  interpolating between the nearest records found, with a bisection every third probe:
  one to three probes near the head, never more than about 3 log2(distance). Its answer
  is only ever a lower bound, so a probe a lagging replica answers (or cannot) costs
  extra records read, never a wrong one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from threadline.base.aio import cancelled_meanwhile
from threadline.base.errors import StoreError, StoreUnavailable
from threadline.events import codec
from threadline.events.store import Stored

#: the most records a read asks for in one batched direct get (a longer read uses a
#: consumer); at least one record comes back, whatever its size
MAX_BATCH: Final = 256
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
_MAX_PROBES: Final = 64
#: records of a session a read may fetch and drop rather than search further for a version
_SLACK: Final = 16


class ApiError(msgspec.Struct, frozen=True):
    """The ``error`` of a JetStream API answer."""

    err_code: int = 0
    description: str = ""


#: a probe: the first record matching the filter at or after a sequence, as
#: ``(position, version)``, or None when the replica that answered has none
Probe = Callable[[int], Awaitable[tuple[int, int] | None]]


class _Batch(NamedTuple):
    """The records of a batched get as they arrive, and its end."""

    items: list[Stored]
    done: asyncio.Future[None]


class DirectReads:
    """Consumer-less reads of one stream over one connection (one reply subscription)."""

    def __init__(self, nc: Client, stream: str, *, timeout_s: float) -> None:
        self._nc = nc
        self._stream = stream
        self._timeout_s = timeout_s
        self._js = nc.jetstream(timeout=timeout_s)
        self._prefix = ""
        self._counter = 0
        self._batches: dict[str, _Batch] = {}

    async def get(
        self,
        seq: int | None = None,
        subject: str | None = None,
        *,
        next_: bool = False,
        leader: bool = False,
    ) -> Stored | None:
        """The record at ``seq``, the last one matching ``subject``, or (``next_``) the
        first matching it at or after ``seq``; None if there is none. A direct get, which
        any replica answers (so possibly one that lags the leader), or (``leader``) a get
        the stream leader answers: it holds every acknowledged append, where a replica
        that has just restarted may not yet (direct gets and R1 consumers can be served
        by such a replica)."""
        try:
            msg = await self._js.get_msg(self._stream, seq, subject, direct=not leader, next=next_)
        except nats.js.errors.NotFoundError:
            return None
        except nats.js.errors.ServiceUnavailableError:
            raise StoreUnavailable(f"no leader of stream {self._stream} answers") from None
        except nats.js.errors.APIError as exc:
            raise StoreError(f"get failed: {exc.description} ({exc.err_code})") from None
        except (nats.errors.Error, OSError) as exc:
            raise StoreUnavailable(f"reading the stream failed: {exc!r}") from None
        cancelled_meanwhile()  # a nats-py request: see base/aio
        assert msg.seq is not None and msg.subject is not None
        return Stored(msg.seq, msg.subject, msg.data or b"")

    async def probe(self, subject_filter: str, position: int) -> tuple[int, int] | None:
        """The first record matching the filter at or after ``position``, as
        ``(position, version)`` (None if the replica that answered has none)."""
        found = await self.get(position, subject_filter, next_=True)
        if found is None:
            return None
        version = codec.claimed_version(found.data, subject_filter.rsplit(".", 2)[-2])
        # a record claiming no version (garbage) is no help in the search
        return None if version is None else (found.position, version)

    async def batch(self, subject_filter: str, after: int, count: int) -> list[Stored]:
        """Up to ``count`` records matching the filter after position ``after``, in order
        (fewer at the end of the stream, or of what the answering replica holds)."""
        if not self._prefix:
            self._prefix = self._nc.new_inbox() + "."
            await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)
        self._counter += 1
        token = str(self._counter)
        batch = self._batches[token] = _Batch([], asyncio.get_running_loop().create_future())
        request = {
            "seq": after + 1,
            "next_by_subj": subject_filter,
            "batch": min(count, MAX_BATCH),
            "max_bytes": MAX_BATCH_BYTES,
        }
        subject = f"$JS.API.DIRECT.GET.{self._stream}"
        try:
            await self._nc.publish(
                subject, msgspec.json.encode(request), reply=self._prefix + token
            )
            async with asyncio.timeout(self._timeout_s):
                await batch.done
        except TimeoutError:
            raise StoreUnavailable(f"no answer to a read within {self._timeout_s} s") from None
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"reading the stream failed: {exc!r}") from None
        finally:
            self._batches.pop(token, None)
        return batch.items

    async def _on_reply(self, msg: Msg) -> None:
        batch = self._batches.get(msg.subject[len(self._prefix) :])
        if batch is None or batch.done.done():
            return
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is None:
            position = int(headers["Nats-Sequence"])
            batch.items.append(Stored(position, headers["Nats-Subject"], msg.data))
        elif status in ("204", "404"):  # end of batch; nothing (more) matches
            batch.done.set_result(None)
        elif status == "503":
            batch.done.set_exception(StoreUnavailable(f"no stream {self._stream} answers"))
        else:
            description = headers.get("Description", "")
            batch.done.set_exception(StoreError(f"batched get failed: {status} {description}"))


async def locate(
    probe: Probe, version: int, head: tuple[int, int], after: int = 0
) -> tuple[int, int]:
    """Where to start reading a session to get ``version`` first: ``(start, extra)``, a
    position ``start >= after`` with no record of ``version`` or later at or before it,
    and how many of the session's records come before ``version`` after it (it stops
    searching once these are few: reading and dropping a few records is cheaper than a
    probe each; 0 when a probe went unanswered and it does not know).

    ``head`` is the session's last ``(position, version)``; ``version`` must be at
    most its version. Every record of the session has its own position, so version
    ``k`` is at least ``head_version - k`` positions before the head, and after a probe
    finds version ``v`` at position ``q`` it is within ``[q + k - v, ...]`` (``v < k``)
    or ``[..., probed - (v - k)]`` (``v > k``).
    """
    head_pos, head_ver = head
    if version <= 1 or after >= head_pos:
        return after, 0
    if version == head_ver:
        return max(after, head_pos - 1), 0
    low, high = after + 1, head_pos - (head_ver - version)  # version's position is in here
    below: tuple[int, int] | None = None  # the nearest (position, version) found before it
    above = head  # the nearest found after it
    target = max(1, version - _SLACK // 2)  # aim a little early: landing there ends it
    nxt = after + 1 if after else high  # the head's neighbourhood first, or just after `after`
    for i in range(_MAX_PROBES):
        if low >= high:
            break
        found = await probe(nxt)
        if found is None:
            break
        position, ver = found
        if ver == version:
            return position - 1, 0
        if ver > version and nxt <= low:  # the versions before it are at or before `after`
            return low - 1, 0
        if version - _SLACK <= ver < version:
            return position, version - 1 - ver
        if ver > version:
            above, high = found, min(high, nxt - (ver - version))
        else:
            below, low = found, max(low, position + (version - ver))
        if i % 3 == 2:  # a bisection now and then: never worse than log2 of the distance
            nxt = (low + high) // 2
        else:
            nxt = min(high, max(low, _estimate(target, below, above, head)))
    return low - 1, 0


def _estimate(
    target: int, below: tuple[int, int] | None, above: tuple[int, int], head: tuple[int, int]
) -> int:
    """Where version ``target`` would be if the session's records were as spread out as
    between the nearest records found around it; with none found before it, as between
    the nearest after it and the head or as on average, whichever is more (overshooting
    brackets it)."""
    if below is not None:
        share = (target - below[1]) / (above[1] - below[1])
        return below[0] + round(share * (above[0] - below[0]))
    spacing = head[0] / head[1]
    if head[1] > above[1]:
        spacing = max(spacing, (head[0] - above[0]) / (head[1] - above[1]))
    return above[0] - round((above[1] - target) * spacing)
