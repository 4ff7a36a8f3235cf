"""How true the fan's estimate is: the waiting page's ETA, kept by each locust user as the page
keeps it, and its error at the fan's half-way point, summed up for the load test's report.

The estimate is static/js/waiting.js's: an exact position from a `status` (websocket or HTTP),
moved on by every `tick`'s admitted_total, at the rate the server last sent; ETA =
ceil(position * 60 / rate), unknown while paused or without a rate. A fan's wait in line starts
when its page first shows an ETA (joining after the sale opened: at once; in the pre-queue: when
the sale opens) and ends at admission. At half that wait we take the ETA the page showed last,
and compare the admission it predicted with the real one, relative to the wait left then:
    error = (predicted_at + eta - admitted_at) / (admitted_at - predicted_at)
(positive: the page said later than it came)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_WAIT_S = 20.0  # shorter waits are dominated by the 1 s ticks and the ETA's whole seconds


@dataclass
class Estimate:
    """One page's estimate (waiting.js applyStatus / onTick / renderWaiting)."""

    base_position: int | None = None
    base_admitted: int | None = None
    position: int | None = None
    rate: float | None = None
    paused: bool = False

    def status(
        self,
        state: str,
        position: int | None,
        admitted_total: int | None,
        rate: float | None,
        paused: bool | None = None,
    ) -> None:
        """An exact status: from the websocket (with admitted_total) or HTTP (without)."""
        self.rate = rate
        if paused is not None:
            self.paused = paused
        if state != "waiting" or position is None:
            self.base_position = self.base_admitted = self.position = None
            return
        self.base_position, self.base_admitted = position, admitted_total
        self.position = position

    def tick(self, admitted_total: int, rate: float | None, paused: bool) -> None:
        self.rate, self.paused = rate, paused
        if self.base_position is None:
            return
        if self.base_admitted is None:
            self.base_admitted = admitted_total
        moved = max(0, admitted_total - self.base_admitted)
        self.position = max(1, self.base_position - moved)

    def eta_s(self) -> int | None:
        if self.position is None or self.paused or not self.rate or self.rate <= 0:
            return None
        return math.ceil(self.position * 60 / self.rate)


@dataclass
class Predictions:
    """What one fan's page said over its wait: (seconds since joining, ETA in seconds), one
    entry per render (every status and tick), as the page's clock time is redrawn each time."""

    said: list[tuple[float, int]] = field(default_factory=list)

    def add(self, at_s: float, eta_s: int | None) -> None:
        if eta_s is not None:
            self.said.append((at_s, eta_s))

    def at_half_way(self, admitted_at_s: float) -> tuple[float, int] | None:
        """The last ETA shown at or before half the wait in line; None without a wait."""
        if not self.said or admitted_at_s <= self.said[0][0]:
            return None
        half = self.said[0][0] + (admitted_at_s - self.said[0][0]) / 2
        return [p for p in self.said if p[0] <= half][-1]


def half_way_error(
    line_from_s: float, predicted_at_s: float, eta_s: float, admitted_at_s: float
) -> float | None:
    """The relative error of the ETA shown at the half-way point (module docstring); None for
    a wait in line shorter than MIN_WAIT_S, or a prediction not before the admission."""
    if admitted_at_s - line_from_s < MIN_WAIT_S or admitted_at_s <= predicted_at_s:
        return None
    return (predicted_at_s + eta_s - admitted_at_s) / (admitted_at_s - predicted_at_s)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0 to 100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass(frozen=True)
class ErrorSummary:
    fans: int  # fans with a half-way prediction and a wait of at least MIN_WAIT_S
    median: float  # of |error|
    p90: float  # of |error|
    bias: float  # median signed error (positive: predicted later than it came)


def summarize(records: list[dict[str, float]]) -> ErrorSummary | None:
    """Summary over the admissions log's records that carry a half-way prediction
    (`line_from_s`, `half_at_s`, `half_eta_s`, `admitted_at_s`); None if no fan counts."""
    errors = []
    for r in records:
        if "half_at_s" not in r:
            continue
        e = half_way_error(r["line_from_s"], r["half_at_s"], r["half_eta_s"], r["admitted_at_s"])
        if e is not None:
            errors.append(e)
    if not errors:
        return None
    absolute = [abs(e) for e in errors]
    return ErrorSummary(
        len(errors), percentile(absolute, 50), percentile(absolute, 90), percentile(errors, 50)
    )
