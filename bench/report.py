"""Write the benchmark report into a hand-written document without losing its text.

A document marks where each section's generated figures go::

    <!-- bench:e2e -->
    ... replaced on every run that includes the section ...
    <!-- /bench:e2e -->

Everything outside the markers is left as it is. A section without markers is appended
at the end under its own heading; a file that does not exist gets the plain report.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def _block(name: str, lines: list[str]) -> str:
    start, end = _markers(name)
    return "\n".join([start, "", *lines, "", end])


def merge(doc: str, blocks: Mapping[str, list[str]], titles: Mapping[str, str]) -> str:
    """``doc`` with each block's marked region replaced (or the block appended)."""
    for name, lines in blocks.items():
        start, end = _markers(name)
        i, j = doc.find(start), doc.find(end)
        if i < 0 or j < i:
            doc = doc.rstrip("\n") + f"\n\n## {titles[name]}\n\n{_block(name, lines)}\n"
        else:
            doc = doc[:i] + _block(name, lines) + doc[j + len(end) :]
    return doc


def write(
    path: str, blocks: Mapping[str, list[str]], titles: Mapping[str, str], plain: str
) -> None:
    target = Path(path)
    if not target.exists():
        target.write_text(plain + "\n")
        return
    target.write_text(merge(target.read_text(), blocks, titles))
