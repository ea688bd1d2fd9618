"""``POST /v1/admin/erasures``: crypto-shredding from the API, for admins only
(docs/audit.md#erasure): the same as ``threadline erase``."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import post
from litestar.params import JSONBody
from msgspec import Meta

from threadline.base.errors import InvalidInput
from threadline.events.erasure import erase
from threadline.events.sealing import installed
from threadline.services.gateway.context import GW, Caller
from threadline.services.gateway.errors import Problem, error_responses, unprocessable


class ErasureRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Whose content to erase: an ``owner``'s, every owner's written before the month
    ``before`` (``YYYY-MM``), or an owner's before that month."""

    owner: Annotated[str, Meta(max_length=200)] = ""
    before: Annotated[str, Meta(pattern=r"^([0-9]{4}-[0-9]{2})?$")] = ""


class ErasureDone(msgspec.Struct, frozen=True, kw_only=True):
    """The content keys destroyed (ids: they name no one) and the position of the
    erasure record in the log (wait for it with ``wait_for`` on the session routes)."""

    keys: list[str]
    position: int


@post(
    "/admin/erasures",
    status_code=200,
    summary="Erase content (admins)",
    description="Destroys the content keys of `owner` (a data subject's erasure), or of "
    "every owner for the months before `before` (retention), and appends an erasure record "
    "naming the keys, not the owner. Their content then reads as `[erased]` everywhere; "
    "every session still verifies. Admins only (403 otherwise).",
    responses=error_responses(401, 422, 503, described={403: "Only an admin may erase"}),
)
async def erase_content(principal: Caller, gw: GW, data: JSONBody[ErasureRequest]) -> ErasureDone:
    if not principal.admin:
        raise Problem(403, "forbidden", "only an admin may erase content")
    if not data.owner and not data.before:
        raise unprocessable("owner", "name an owner, a month (before), or both")
    keyring = gw.store.keyring or installed()
    if keyring is None:
        raise Problem(503, "unavailable", "this gateway has no content key store")
    try:
        record, position = await erase(gw.store, keyring, owner=data.owner, before=data.before)
    except InvalidInput as exc:
        raise unprocessable("before", str(exc)) from None
    return ErasureDone(keys=list(record.keys), position=position)
