"""Shortening text for one-line displays: logs, error messages, summaries, timelines."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the last one ``…`` when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int) -> str:
    """``text`` on a single line (every run of whitespace one space), clipped to ``limit``."""
    return clip(" ".join(text.split()), limit)


def comma_list(spec: str) -> tuple[str, ...]:
    """The items of ``"a, b,c"``, stripped, empty ones left out."""
    return tuple(item for part in spec.split(",") if (item := part.strip()))
