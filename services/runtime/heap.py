"""The garbage collector's settings for a long-running service (agent, gateway, ``up``).

CPython's defaults suit short scripts: a young collection every 700 net allocations, and
every full collection walks every object alive, most of them the modules, the web app
and the clients built at start-up, which never become garbage. A streaming service
allocates a few hundred objects per event, so it collects every few events. Once a
service is up, :func:`settle` moves what start-up built into the permanent generation
(``gc.freeze``: no collection looks at it again) and collects the young generation less
often. Reference counting still frees almost everything at once; only cycles wait longer.
"""

from __future__ import annotations

import gc
from typing import Final

#: net allocations between young collections (CPython's default: 700)
YOUNG_THRESHOLD: Final = 10_000


def settle() -> None:
    """Call once the service is up (before it serves)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
