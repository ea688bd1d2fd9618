"""A strict reader of the Prometheus text exposition format, for assertions.

``parse`` checks what a scraper relies on (HELP and TYPE once per family, before its
samples; sample names belonging to their family; histogram buckets cumulative and
ending in ``+Inf`` equal to ``_count``) and returns the samples by name and labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _labels(raw: str | None) -> Labels:
    if not raw:
        return ()
    inner = raw[1:-1]
    pairs = _LABEL.findall(inner)
    rebuilt = ",".join(f'{k}="{v}"' for k, v in pairs)
    assert rebuilt == inner, f"bad label set {raw!r}"
    unescape = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
    return tuple(
        (k, re.sub(r"\\[\\\"n]", lambda m: unescape[m.group(0)], v)) for k, v in sorted(pairs)
    )


def parse(text: str) -> Samples:
    assert text.endswith("\n"), "the exposition ends with a newline"
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"HELP twice for {name}"
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name not in types, f"TYPE twice for {name}"
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}
            types[name] = kind
            continue
        assert line and not line.startswith("#"), f"unexpected line {line!r}"
        match = _SAMPLE.fullmatch(line)
        assert match, f"bad sample line {line!r}"
        name, raw, value = match.groups()
        family = _family(name, types)
        assert family in helps, f"{name} has no HELP"
        key = (name, _labels(raw))
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = float(value.replace("+Inf", "inf"))
    _check_histograms(samples, types)
    return samples


def _family(name: str, types: Mapping[str, str]) -> str:
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and types.get(base) == "histogram":
            return base
    raise AssertionError(f"sample {name} before its TYPE line")


def _check_histograms(samples: Samples, types: Mapping[str, str]) -> None:
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series: dict[Labels, list[tuple[float, float]]] = {}
        for (name, labels), value in samples.items():
            if name == f"{family}_bucket":
                le = dict(labels)["le"]
                rest = tuple(p for p in labels if p[0] != "le")
                series.setdefault(rest, []).append((float(le.replace("+Inf", "inf")), value))
        for rest, buckets in series.items():
            buckets.sort()
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), f"{family}{rest}: buckets not cumulative"
            assert math.isinf(buckets[-1][0]), f"{family}{rest}: no +Inf bucket"
            assert buckets[-1][1] == samples[(f"{family}_count", rest)]
            assert (f"{family}_sum", rest) in samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when absent (a counter not touched yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def has(samples: Samples, name: str, **labels: str) -> bool:
    return (name, tuple(sorted(labels.items()))) in samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))
