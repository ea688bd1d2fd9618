"""A session's events: live Server-Sent Events, the raw log as JSON lines for audit, and the
check of its hash chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import Stream

from threadline.events.store import EventStore, Quarantined, Recorded
from threadline.events.verify import Problem, verify_entries
from threadline.services.gateway.context import GW, Caller, Slot
from threadline.services.gateway.errors import error_responses
from threadline.services.gateway.history import view_of
from threadline.services.gateway.routes.params import LastEventId, SessionId, position_query
from threadline.services.gateway.sse import EventKind, EventStream, SSEResponse

Kinds = Annotated[
    list[EventKind] | None,
    Parameter(required=False, description="Send only these kinds (repeat the parameter)."),
]
Exclude = Annotated[
    list[EventKind] | None,
    Parameter(required=False, description="Leave these kinds out, e.g. `text_delta`."),
]


class SSEEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One Server-Sent Event (the stream also carries ``retry:`` hints and ``: ping`` comments)."""

    #: the event's position in the log; send it back as ``Last-Event-ID`` to resume
    id: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+$")] | None = None
    #: the event's kind, e.g. ``text_delta``
    event: str | None = None
    #: the stored envelope, JSON
    data: str | None = None
    #: reconnection delay hint in milliseconds
    retry: int | None = None


class ExportLine(msgspec.Struct, frozen=True, omit_defaults=True):
    """One stored event: its position, the SHA-256 of its bytes, and the record itself;
    for a record that cannot be read (quarantined), why, and its bytes in base64."""

    position: int
    hash: str
    record: dict[str, Any] | None = None
    quarantined: str | None = None
    raw: bytes | None = None


@get(
    "/sessions/{session_id:str}/events",
    summary="Follow a session's events (SSE)",
    description="Stored events after `Last-Event-ID` (else `after`, else from the start), "
    "then live. `id:` is the event's position, `event:` its kind, `data:` the stored "
    "envelope. `: ping` comments keep idle streams open; a client too slow to keep up "
    "gets a `retry:` hint and the stream ends (reconnect with `Last-Event-ID`).",
    responses={
        200: ResponseSpec(
            data_container=SSEEvent,
            media_type="text/event-stream",
            description="An endless Server-Sent Events stream",
            generate_examples=False,
        ),
        **error_responses(401, 404, 422, 429),
    },
)
async def stream_events(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    after: Annotated[int, position_query()] = 0,
    kinds: Kinds = None,
    exclude: Exclude = None,
    last_event_id: LastEventId = "",
) -> SSEResponse:
    session = await gw.owners.readable(principal, session_id)
    after = int(last_event_id) if last_event_id else after
    with Slot(gw, principal, session).held() as slot:
        sub, live_from = await slot.join(after)  # (after, live_from] is read from the store
    stream = EventStream(
        gw.store, session, sub, after=after,
        live_from=live_from, kinds=kinds, exclude=exclude, options=gw.options,
        lifetime_s=slot.lifetime_s, on_relay=gw.metrics.events_relayed.inc,
    )  # fmt: skip
    return slot.respond(stream.chunks())


#: the export is sent in chunks of about this many bytes (one chunk per line made each
#: line a write of its own: 12,601 lines took 2-4 s more than reading them)
EXPORT_CHUNK_BYTES = 64 * 1024


def _export_line(rec: Recorded | Quarantined) -> bytes:
    if isinstance(rec, Quarantined):
        line = ExportLine(rec.position, rec.hash, quarantined=rec.reason, raw=rec.raw)
        return msgspec.json.encode(line) + b"\n"
    return b'{"position":%d,"hash":"%s","record":%s}\n' % (
        rec.position,
        rec.hash.encode(),
        rec.raw,
    )


async def _export_lines(store: EventStore, session: str) -> AsyncIterator[bytes]:
    chunk = bytearray()
    async for rec in store.entries(session):
        chunk += _export_line(rec)
        if len(chunk) >= EXPORT_CHUNK_BYTES:
            yield bytes(chunk)
            chunk.clear()
    if chunk:
        yield bytes(chunk)


@get(
    "/sessions/{session_id:str}/export",
    summary="Export a session's raw event log",
    description="JSON lines, one per stored event: position, SHA-256 of the stored bytes, "
    "and the stored record (its `prev` chains it to the one before).",
    responses={
        200: ResponseSpec(
            data_container=ExportLine,
            media_type="application/x-ndjson",
            description="One JSON object per line",
            generate_examples=False,
        ),
        **error_responses(401, 404),
    },
)
async def export_session(principal: Caller, gw: GW, session_id: SessionId) -> Stream:
    session = await gw.owners.readable(principal, session_id)
    return Stream(
        _export_lines(gw.store, session),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{session}.jsonl"'},
    )


class ChainCheck(msgspec.Struct, frozen=True, kw_only=True):
    """The session's hash chain and version sequence as stored now (``threadline verify``)."""

    session: str
    #: no problem found
    ok: bool
    #: records checked, readable or not
    events: int
    #: SHA-256 of the last record's stored bytes: keep it elsewhere, pass it back as
    #: ``expect_head`` later to detect a truncated tail
    head: str
    last_version: int
    #: position of the first record that breaks the chain (null when ``ok``)
    first_broken: int | None
    problems: list[Problem]


@get(
    "/sessions/{session_id:str}/verify",
    summary="Check a session's hash chain",
    description="Walks the session's stored records: each record's `prev` must be the "
    "SHA-256 of the one before and versions must run 1, 2, 3... Answers `ok`, the head "
    "hash and, when something was deleted, rewritten, reordered or altered, the first "
    "broken position and every problem. `expect_head` (a head from an earlier check) "
    "also detects a removed tail.",
    responses=error_responses(401, 404, 422),
)
async def verify_chain(
    principal: Caller,
    gw: GW,
    session_id: SessionId,
    expect_head: Annotated[
        str,
        Parameter(
            pattern=r"^[0-9a-f]*$",
            max_length=64,
            required=False,
            description="The head hash (64 hex digits) an earlier check answered; a head "
            "other than this one is a problem.",
        ),
    ] = "",
) -> ChainCheck:
    session = await gw.owners.readable(principal, session_id)
    report = await verify_entries(
        session, gw.store.entries(session), expect_head=expect_head or None
    )
    problems = list(report.problems)
    first_broken = problems[0].position if problems else None
    return view_of(
        ChainCheck, report, head=report.head_hash, first_broken=first_broken, problems=problems
    )
