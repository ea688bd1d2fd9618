"""The peers a user would pick instead of Threadline, measured in the same run against the
same dev model: the LiteLLM proxy, and the AI SDK with ``resumable-stream`` and Redis.

The benchmark installs them itself on first use into a cache directory, ``bench/.peers/``
(``THREADLINE_BENCH_PEERS`` overrides it; gitignored): LiteLLM into its own virtualenv,
so it cannot disturb ours, and the AI SDK server's npm packages from the committed
``bench/peers/aisdk/package-lock.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE = Path(os.environ.get("THREADLINE_BENCH_PEERS", Path(__file__).parent.parent / ".peers"))
