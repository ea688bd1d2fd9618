"""``GET /v1/usage``: the caller's tokens, turns and latency per day, provider and model,
from the projections' usage view (501 on a gateway reading history from the log)."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.params import Parameter

from threadline.base.errors import InvalidInput
from threadline.projections.model import UsageReport
from threadline.services.gateway.context import GW, Caller
from threadline.services.gateway.errors import error_responses, unprocessable
from threadline.services.gateway.routes.params import WaitFor

DAY_PATTERN = r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"


@get(
    "/usage",
    summary="Your usage",
    description="Turns, tokens and time per UTC day (the day a turn started), provider and "
    "model, for one `day` or every day. Served from the projections' usage view; a gateway "
    "reading history from the log answers 501. `wait_for` as for sessions.",
    responses=error_responses(
        401,
        409,
        422,
        described={501: "This gateway reads history from the log; usage needs the projections"},
    ),
)
async def get_usage(
    principal: Caller,
    gw: GW,
    day: Annotated[
        str,
        Parameter(
            pattern=DAY_PATTERN, required=False, description="YYYY-MM-DD (UTC); empty: every day."
        ),
    ] = "",
    wait_for: WaitFor = 0,
) -> UsageReport:
    await gw.caught_up(wait_for)
    try:
        return await gw.history.usage(principal.owner, day=day or None)
    except InvalidInput:
        raise unprocessable("day", f"not a date: {day[:40]!r}") from None
