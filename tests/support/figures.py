"""The figures the hardening tests measure, shown at the end of the run.

A test records a line with the ``figure`` fixture (tests/conftest.py); the
lines are printed in a "hardening figures" section of pytest's summary and, when
``THREADLINE_FIGURES_FILE`` names a file, written to it as JSON (test id -> lines), for
docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FIGURES: dict[str, list[str]] = {}


def record(test: str, line: str) -> None:
    FIGURES.setdefault(test, []).append(line)


def lines() -> list[str]:
    return [f"{test}: {line}" for test, entries in FIGURES.items() for line in entries]


def write_file() -> None:
    target = os.environ.get("THREADLINE_FIGURES_FILE")
    if target and FIGURES:
        path = Path(target)
        existing = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**existing, **FIGURES}, indent=2) + "\n")
