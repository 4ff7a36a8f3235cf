"""The load test's ETA error (loadtest/eta.py, loadtest/run.py check_eta_error), without a
load: the locust user's estimate moves as the waiting page's does, the prediction at half the
wait is the last one shown by then, and the error, its median and p90 are what they say."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.eta import Estimate, Predictions, half_way_error, percentile, summarize
from loadtest.run import check_eta_error

Step = tuple[str, tuple[Any, ...]]


@pytest.mark.parametrize(
    ("steps", "eta"),
    [
        # HTTP status (no admitted_total): the first tick anchors it, later ticks move it
        ([("status", ("waiting", 44, None, 10.0)), ("tick", (5, 10.0, False))], 264),
        (
            [
                ("status", ("waiting", 44, None, 10.0)),
                ("tick", (5, 10.0, False)),
                ("tick", (9, 10.0, False)),
            ],
            240,
        ),
        # websocket status carries admitted_total: three admitted since → three places on
        ([("status", ("waiting", 10, 100, 60.0)), ("tick", (103, 60.0, False))], 7),
        # the rate of the latest message counts
        ([("status", ("waiting", 10, 100, 60.0)), ("tick", (100, 30.0, False))], 20),
        # never past the head of the line
        ([("status", ("waiting", 2, 0, 60.0)), ("tick", (50, 60.0, False))], 1),
        # unknown: paused, no rate, a rate of 0, the pre-queue
        ([("status", ("waiting", 5, 0, 60.0)), ("tick", (0, 60.0, True))], None),
        ([("status", ("waiting", 5, 0, None))], None),
        ([("status", ("waiting", 5, 0, 0.0))], None),
        ([("status", ("prequeue", None, None, 60.0)), ("tick", (3, 60.0, False))], None),
        # the pre-queue's end: the exact place asked for when the sale opens
        ([("status", ("prequeue", None, None, 60.0)), ("status", ("waiting", 30, None, 60.0))], 30),
    ],
)
def test_estimate_moves_as_the_page_does(steps: list[Step], eta: int | None) -> None:
    estimate = Estimate()
    for kind, args in steps:
        getattr(estimate, kind)(*args)
    assert estimate.eta_s() == eta


@pytest.mark.parametrize(
    ("said", "admitted_at", "half"),
    [
        ([(0.0, 100), (10.0, 90), (30.0, 70), (50.0, 50)], 100.0, (50.0, 50)),  # half = 50
        ([(0.0, 100), (10.0, 90), (30.0, 70), (51.0, 49)], 100.0, (30.0, 70)),
        ([(20.0, 80), (40.0, 60), (70.0, 30)], 100.0, (40.0, 60)),  # line from 20: half = 60
        ([(0.0, 10)], 0.0, None),  # admitted as it joined: no wait
        ([], 50.0, None),  # never shown an ETA (admitted from the pre-queue at once)
    ],
)
def test_prediction_at_half_way(
    said: list[tuple[float, int]], admitted_at: float, half: tuple[float, int] | None
) -> None:
    predictions = Predictions()
    for at, eta in said:
        predictions.add(at, eta)
    predictions.add(99.0, None)  # an unknown ETA is not a prediction
    assert predictions.at_half_way(admitted_at) == half


@pytest.mark.parametrize(
    ("line_from", "at", "eta", "admitted", "error"),
    [
        (0.0, 30.0, 30.0, 60.0, 0.0),  # right on time
        (0.0, 30.0, 36.0, 60.0, 0.2),  # said 6 s later than it came, 30 s before it
        (0.0, 30.0, 24.0, 60.0, -0.2),  # earlier
        (10.0, 40.0, 45.0, 70.0, 0.5),
        (0.0, 5.0, 5.0, 10.0, None),  # a wait shorter than MIN_WAIT_S
        (0.0, 60.0, 5.0, 60.0, None),  # no wait left at the prediction
    ],
)
def test_half_way_error(
    line_from: float, at: float, eta: float, admitted: float, error: float | None
) -> None:
    got = half_way_error(line_from, at, eta, admitted)
    assert got == (None if error is None else pytest.approx(error))


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([float(i) for i in range(1, 11)], 90, 9.1),
        ([5.0], 90, 5.0),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def record(error: float, wait: float = 60.0) -> dict[str, Any]:
    """An admission whose half-way ETA was off by `error` of the wait left."""
    half = wait / 2
    return {
        "queue_id": "q",
        "line_from_s": 0.0,
        "half_at_s": half,
        "half_eta_s": half * (1 + error),
        "admitted_at_s": wait,
    }


@pytest.mark.parametrize(
    ("records", "figures"),
    [
        (
            [record(e) for e in (0.0, 0.05, -0.05, 0.1, 0.2)],
            "median 5.0%, p90 16.0% over 5 fans who waited >= 20 s (aim <= 10% median: met)",
        ),
        (
            [record(e) for e in (0.3, -0.3, 0.2, 0.1, 0.0)],
            "median 20.0%, p90 30.0% over 5 fans who waited >= 20 s (aim <= 10% median: missed)",
        ),
        # short waits and fans without a half-way prediction do not count
        ([record(0.5), record(0.0, wait=10), {"queue_id": "q"}], "over 1 fans"),
        ([{"queue_id": "q"}], "no fan waited 20 s or more"),
    ],
)
def test_eta_error_check(records: list[dict[str, Any]], figures: str) -> None:
    check = check_eta_error(records)
    assert check.ok is None  # a figure of quality: it never fails the run
    assert figures in check.figures


def test_summary_reports_the_bias() -> None:
    summary = summarize([record(e) for e in (0.1, 0.2, 0.3)])
    assert summary is not None
    assert summary.fans == 3
    assert summary.median == pytest.approx(0.2)
    assert summary.bias == pytest.approx(0.2)  # every prediction late: the bias says so
