"""``python -m bench.against REV [--only SECTIONS] [--rounds N] [--quick] [--write FILE]``:
the same benchmark sections run on an earlier commit's code and on this checkout's, in
turns, on one machine in one run, so "nothing got slower" is a comparison made at the
same moment rather than against figures from another day.

REV's tree is exported (``git archive``) into a temporary directory and set up with its
own ``make .venv/.installed``; then each round runs ``python -m bench --only SECTIONS``
once for REV and once for this checkout (the order alternates between rounds, so a
machine that speeds up or slows down during the run favours neither). Every numeric cell
of the sections' tables is reported with each round's value and the median of both.
``--write FILE`` puts that table into FILE between ``<!-- bench:against -->`` markers.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench import report
from bench.common import machine, median, progress

ROOT = Path(__file__).resolve().parent.parent
#: a Markdown table cell holding a figure: "1,234", "0.52", "+0.074 ms", "-3.1"
_NUMBER = re.compile(r"^[+-]?[\d,]*\.?\d+")

#: (section title, row, column header) -> one value per round (:func:`figures` names them)
Figures = dict[tuple[str, str, str], list[float]]


def export(rev: str, into: Path) -> str:
    """REV's tree in ``into`` with its own virtual environment; its short commit."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    (into / "COMMIT").write_text(commit + "\n")
    progress(f"setting up {commit}'s environment in {into} (make .venv/.installed)")
    subprocess.run(["make", ".venv/.installed"], cwd=into, check=True, stdout=sys.stderr)
    return commit


def run_sections(root: Path, python: str, only: str, quick: bool) -> str:
    command = [python, "-m", "bench", "--only", only, *(["--quick"] if quick else [])]
    return subprocess.run(command, cwd=root, stdout=subprocess.PIPE, text=True, check=True).stdout


def figures(text: str) -> dict[tuple[str, str, str], float]:
    """Every numeric cell of the report's tables, by (section, row, column). A row is
    named by its first cell and the cells after it up to its first figure (the peers'
    "50 · Threadline"); a cell of several figures ("32.8 / 49.9") gives each, its
    column's name followed by [1], [2] and so on."""
    found: dict[tuple[str, str, str], float] = {}
    section = ""
    header: list[str] = []
    for line in text.splitlines():
        if line.startswith("### "):
            section, header = line[4:].strip(), []
            continue
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the header's rule
        named = 1
        while named < len(cells) and not _values(cells[named]):
            named += 1
        row = " · ".join(cells[:named])
        for column, cell in zip(header[named:], cells[named:], strict=False):
            values = [] if column == "notes" else _values(cell)
            for k, value in enumerate(values, 1):
                found[(section, row, column if len(values) == 1 else f"{column} [{k}]")] = value
    return found


def _values(cell: str) -> list[float]:
    """The figures of a cell: one, several separated by " / ", or none."""
    values = []
    for part in cell.split(" / "):
        if not (number := _NUMBER.match(part.replace(" ", ""))):
            return []
        values.append(float(number[0].replace(",", "")))
    return values


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(rev: str, old: Figures, new: Figures) -> list[str]:
    lines = [
        f"| section | measure | column | {rev}: median (rounds) | now: median (rounds) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in sorted(old.keys() & new.keys(), key=list(new).index):
        section, row, column = key

        def cell(values: list[float]) -> str:
            each = ", ".join(map(_figure, values))
            return f"{_figure(median(values))} ({each})"

        lines.append(f"| {section} | {row} | {column} | {cell(old[key])} | {cell(new[key])} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.against")
    parser.add_argument("rev", help="the earlier commit to compare with")
    parser.add_argument("--only", default="eventlog,gateway", metavar="SECTIONS")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", help="also write the comparison into this Markdown file")
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.UTC)
    old: Figures = defaultdict(list)
    new: Figures = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="threadline-against-") as tmp:
        commit = export(args.rev, Path(tmp))
        sides = [
            (commit, Path(tmp), str(Path(tmp) / ".venv/bin/python"), old),
            ("now", ROOT, sys.executable, new),
        ]
        for round_ in range(args.rounds):
            for name, root, python, into in sides if round_ % 2 == 0 else sides[::-1]:
                progress(f"round {round_ + 1}/{args.rounds}: {name}, sections {args.only}")
                for key, value in figures(
                    run_sections(root, python, args.only, args.quick)
                ).items():
                    into[key].append(value)
    command = " ".join(["python -m bench.against", *sys.argv[1:]])
    here = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {machine()}, command `{command}`: {args.rounds} "
        f"rounds, {commit} and this checkout (at commit {here or 'unknown'}) in turns.",
        "",
        *table(commit, old, new),
    ]
    print("\n".join(lines))
    if args.write:
        report.write(
            args.write, {"against": lines}, {"against": f"Against {commit}"}, "\n".join(lines)
        )
        progress(f"wrote {args.write}")


if __name__ == "__main__":
    main()
