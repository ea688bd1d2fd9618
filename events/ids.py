"""Identifiers: validation of session ids (they become subject tokens) and generation."""

from __future__ import annotations

import os
import re
import time
from typing import Final

from threadline.base.errors import InvalidSessionId

MAX_ID_LENGTH: Final = 64
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def validate_session_id(session: object) -> str:
    """Return ``session`` if it is safe as a NATS subject token, else raise.

    Allowed: 1 to 64 characters from ``A-Z a-z 0-9 _ -``. Everything else (``.``,
    ``*``, ``>``, whitespace, empty, over-long) could change which subjects a
    message lands on or a filter matches, so it is refused.
    """
    if not isinstance(session, str):
        raise InvalidSessionId(f"session id must be a string, not {type(session).__name__}")
    if not session:
        raise InvalidSessionId("session id must not be empty")
    if len(session) > MAX_ID_LENGTH:
        raise InvalidSessionId(
            f"session id is {len(session)} characters long; the limit is {MAX_ID_LENGTH}"
        )
    if not _ID_RE.fullmatch(session):
        bad = sorted({c for c in session if not _ID_RE.fullmatch(c)})
        raise InvalidSessionId(
            f"session id {session[:80]!r} contains {''.join(bad)!r}; "
            "use only letters, digits, '_' and '-'"
        )
    return session


def new_id(prefix: str = "") -> str:
    """A time-ordered, URL- and subject-safe unique id (48-bit ms clock + 80 random bits)."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}{millis:012x}{os.urandom(10).hex()}"
