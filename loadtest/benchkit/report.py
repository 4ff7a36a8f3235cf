"""Printing: totals over load results and the lines every benchmark report shares."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from loadtest.benchkit.common import LoadResult
from loadtest.benchkit.measure import loadavg


class Totals(NamedTuple):
    wall: float
    ok: int
    errors: int
    latencies: list[float]  # sorted
    rate: float  # good answers per second


def totals(results: Sequence[LoadResult]) -> Totals:
    wall = max(r.ended for r in results) - min(r.started for r in results)
    ok = sum(r.ok for r in results)
    latencies = sorted(x for r in results for x in r.latencies_ms)
    rate = ok / wall if wall > 0 else 0.0
    return Totals(wall, ok, sum(r.errors for r in results), latencies, rate)


def status_note(results: Sequence[LoadResult]) -> str:
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r.statuses)
    first = next((r.first_error for r in results if r.first_error), "")
    return f"statuses {dict(statuses)} {first}".strip()


# ---- orchestrator: report pieces and the run around it ------------------------------------------


def table(header: str, indent: int = 4) -> list[str]:
    """A table's header line and the rule under it."""
    return [header, " " * indent + "-" * (len(header) - indent)]


def load_line(load_start: str) -> str:
    return f"Load average (1/5/15 min) at start: {load_start}; at end: {loadavg()}"


def error_lines(errors: Sequence[str]) -> list[str]:
    return ["", "Errors:"] + [f"  {e}" for e in errors] if errors else []
