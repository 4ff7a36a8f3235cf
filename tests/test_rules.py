"""Table tests of the pure rules in server/rules.py."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from server.core import rules

PRE, SALE = 1_000, 5_000


@pytest.mark.parametrize(
    ("now", "closed", "sold_out", "expected"),
    [
        (0, False, False, "scheduled"),
        (PRE - 1, False, False, "scheduled"),
        (PRE, False, False, "prequeue"),
        (SALE - 1, False, False, "prequeue"),
        (SALE, False, False, "on_sale"),
        (SALE + 10**9, False, False, "on_sale"),
        # closed wins over everything, sold out over the clock
        (0, True, False, "closed"),
        (PRE, True, False, "closed"),
        (SALE, True, True, "closed"),
        (0, False, True, "sold_out"),
        (PRE, False, True, "sold_out"),
        (SALE, False, True, "sold_out"),
    ],
)
def test_event_state(now: int, closed: bool, sold_out: bool, expected: str) -> None:
    assert rules.event_state(now, PRE, SALE, closed=closed, sold_out=sold_out) == expected


def test_event_state_prequeue_opening_with_the_sale() -> None:
    # No pre-queue period at all: straight from scheduled to on sale.
    assert rules.event_state(SALE - 1, SALE, SALE, closed=False, sold_out=False) == "scheduled"
    assert rules.event_state(SALE, SALE, SALE, closed=False, sold_out=False) == "on_sale"


@pytest.mark.parametrize(
    ("admitted", "window_ms", "expected"),
    [
        (0, 0, None),
        (100, 0, None),
        (100, rules.MIN_RATE_WINDOW_MS - 1, None),
        (0, rules.MIN_RATE_WINDOW_MS, 0.0),
        (10, 2_000, 300.0),
        (600, 60_000, 600.0),
        (1, 60_000, 1.0),
        (1, 7_000, 8.6),  # 8.571… rounded to one decimal
        (2, 3_000, 40.0),
        (5, 45_000, 6.7),  # 6.666…
    ],
)
def test_measured_rate_per_min(admitted: int, window_ms: int, expected: float | None) -> None:
    assert rules.measured_rate_per_min(admitted, window_ms) == expected


@pytest.mark.parametrize(
    ("position", "rate", "paused", "expected"),
    [
        (None, 600.0, False, None),
        (1, None, False, None),
        (1, 0.0, False, None),
        (1, -5.0, False, None),
        (1, 600.0, True, None),
        (1, 600.0, False, 1),  # 0.1 s rounds up to a whole second
        (10, 600.0, False, 1),
        (11, 600.0, False, 2),
        (600, 600.0, False, 60),
        (1, 1.0, False, 60),
        (3, 7.5, False, 24),
        (100, 0.5, False, 12_000),
    ],
)
def test_eta_seconds(
    position: int | None, rate: float | None, paused: bool, expected: int | None
) -> None:
    assert rules.eta_seconds(position, rate, paused) == expected


def test_eta_seconds_defaults_to_not_paused() -> None:
    assert rules.eta_seconds(60, 60.0) == 60


@pytest.mark.parametrize(
    ("configured", "measured", "window_ms", "expected"),
    [
        (10, None, 0, 10.0),  # nothing measured yet: the configured rate
        (10, 40.0, 0, 10.0),  # no history: the measurement weighs nothing
        (10, 40.0, 15_000, 17.5),  # a quarter of a minute: a quarter of the weight
        (10, 40.0, 30_000, 25.0),
        (10, 4.0, 60_000, 4.0),  # a full minute: the measurement alone
        (10, 4.0, 600_000, 4.0),
        (1, 3.0, 6_000, 1.2),  # 1/min: an early burst of 3 barely moves it
        (0, 40.0, 60_000, None),  # rate 0 admits nobody
        (-1, None, 0, None),
    ],
)
def test_blended_rate(
    configured: int, measured: float | None, window_ms: int, expected: float | None
) -> None:
    got = rules.blended_rate(configured, measured, window_ms)
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("previous", "target", "elapsed_ms", "expected"),
    [
        (None, 10.0, 200, 10.0),  # first estimate: the target
        (10.0, None, 200, None),  # halted: no estimate
        (10.0, 10.0, 200, 10.0),
        (10.0, 12.0, 1000, 10.0 + 2 * (1 - math.exp(-0.1))),  # smoothing, within the bound
        (10.0, 100.0, 200, 10.1),  # far target: 5%/s of 10 over 0.2 s
        (10.0, 1.0, 200, 9.9),
        (10.0, 100.0, 0, 10.0),  # no time, no change
        (10.0, 100.0, -500, 10.0),  # clocks of two processes: never backwards
        (0.0, 5.0, 200, 5.0),
    ],
)
def test_smoothed_rate(
    previous: float | None, target: float | None, elapsed_ms: int, expected: float | None
) -> None:
    got = rules.smoothed_rate(previous, target, elapsed_ms)
    assert got == (None if expected is None else pytest.approx(expected))


def test_smoothed_estimate_never_swings() -> None:
    """A measured rate swinging 2x every second moves the estimate by at most 5%/s, and one
    direction change never undoes more than the evidence gave."""
    rate: float | None = 10.0
    seen = []
    for second in range(60):
        target = 20.0 if second % 2 else 5.0
        for _ in range(5):  # 200 ms ticks
            rate = rules.smoothed_rate(rate, target, 200)
        assert rate is not None
        seen.append(rate)
    steps = [abs(b - a) / a for a, b in itertools.pairwise(seen)]
    assert max(steps) <= 1.01**5 - 1 + 1e-9  # 1% of itself per 200 ms tick
    assert min(seen) > 5.0 and max(seen) < 20.0


@pytest.mark.parametrize(
    ("rank", "expected"),
    [(-1, None), (-7, None), (0, 1), (1, 2), (41, 42)],
)
def test_position_from_rank(rank: int, expected: int | None) -> None:
    assert rules.position_from_rank(rank) == expected


@pytest.mark.parametrize(
    ("position", "then", "now", "expected"),
    [
        (10, 0, 0, 10),
        (10, 0, 3, 7),
        (10, 100, 109, 1),
        (10, 100, 110, 1),  # never below 1
        (10, 100, 500, 1),
        (10, 100, 90, 10),  # a counter that went backwards changes nothing
        (1, 5, 5, 1),
    ],
)
def test_estimated_position(position: int, then: int, now: int, expected: int) -> None:
    assert rules.estimated_position(position, then, now) == expected


@pytest.mark.parametrize(
    ("rate", "tick_ms", "expected"),
    [
        (0, 200, 0.0),  # rate 0 admits nobody, not even a starting burst
        (-1, 200, 0.0),
        (1, 60_000, 2.0),
        (300, 200, 2.0),
        (600, 200, 3.0),
        (600, 50, 1.5),
        (1200, 200, 5.0),
        (100, 200, 1 + 100 * 200 / 60000),
        (700, 200, 1 + 700 * 200 / 60000),
        (60_000, 1_000, 1001.0),
    ],
)
def test_bucket_capacity(rate: int, tick_ms: int, expected: float) -> None:
    assert rules.bucket_capacity(rate, tick_ms) == expected


@pytest.mark.parametrize(
    ("rate", "tick_ms", "elapsed", "expected"),
    [
        (600, 200, 0, 3),
        (600, 200, 99, 3),
        (600, 200, 100, 4),
        (600, 200, 60_000, 603),
        (600, 200, 600_000, 6003),
        (0, 200, 0, 0),
        (0, 200, 600_000, 0),
        (60, 200, 59_999, 61),  # 1.2 + 59.999
        (60, 200, 60_000, 61),  # 1.2 + 60
        (60, 200, 60_800, 62),
        (700, 200, 300, 3 + 3),  # 3.333 + 3.5 = 6.833
        (1000, 50, 60_000, 1 + 1000),  # 1.833 + 1000
        (100, 200, 1_000, 2 + 1),  # 1.333 + 1.667 = 3 exactly
    ],
)
def test_admission_ceiling(rate: int, tick_ms: int, elapsed: int, expected: int) -> None:
    assert rules.admission_ceiling(rate, tick_ms, elapsed) == expected


@pytest.mark.parametrize("rate", [0, 1, 7, 60, 100, 333, 600, 700, 1000, 1234, 6000])
@pytest.mark.parametrize("tick_ms", [50, 200, 250, 1000])
def test_admission_ceiling_matches_exact_arithmetic(rate: int, tick_ms: int) -> None:
    capacity = Fraction(rate * tick_ms, 60000) + 1 if rate > 0 else Fraction(0)
    for elapsed in range(0, 120_001, 37):
        exact = int(Fraction(rate * elapsed, 60000) + capacity)  # floor, all positive
        assert rules.admission_ceiling(rate, tick_ms, elapsed) == exact, elapsed


@pytest.mark.parametrize(
    ("waiting", "seconds", "expected"),
    [
        (0, 60, 0),
        (-3, 60, 0),
        (1, 60, 1),
        (60, 60, 60),
        (61, 60, 61),
        (100, 30, 200),
        (7, 120, 4),  # 3.5 per minute rounds up
        (10, 0, 600),  # at least one second
        (10, -5, 600),
        (1, 3600, 1),
    ],
)
def test_rate_to_clear(waiting: int, seconds: int, expected: int) -> None:
    assert rules.rate_to_clear(waiting, seconds) == expected


# ---- seats, prices and orders ----------------------------------------------------------------

ALL_STATUSES = ["pending", "paid", "expired", "failed", "voided", "refunded"]
ALLOWED = {
    ("pending", "paid"),
    ("pending", "expired"),
    ("pending", "failed"),
    ("pending", "voided"),
    ("paid", "refunded"),
}


@pytest.mark.parametrize("current", [*ALL_STATUSES, "unknown", ""])
@pytest.mark.parametrize("target", [*ALL_STATUSES, "unknown"])
def test_can_transition(current: str, target: str) -> None:
    assert rules.can_transition(current, target) == ((current, target) in ALLOWED)


def test_order_transitions_cover_every_status() -> None:
    assert sorted(rules.ORDER_TRANSITIONS) == sorted(ALL_STATUSES)
    for targets in rules.ORDER_TRANSITIONS.values():
        assert targets <= set(ALL_STATUSES)


@pytest.mark.parametrize(
    ("section", "row", "seat", "expected"),
    [("A", 3, 17, "A-3-17"), ("GA", 1, 1, "GA-1-1"), ("floor", 10, 200, "floor-10-200")],
)
def test_seat_id(section: str, row: int, seat: int, expected: str) -> None:
    assert rules.seat_id(section, row, seat) == expected
    assert rules.parse_seat_id(expected) == (section, row, seat)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("A-3-17", ("A", 3, 17)),
        ("VIP-1-1", ("VIP", 1, 1)),
        ("A-0-0", ("A", 0, 0)),
        ("S" * 36 + "-1-1", ("S" * 36, 1, 1)),  # 40 characters
        ("S" * 37 + "-1-1", None),  # 41
        ("A-3", None),
        ("A-3-17-1", None),
        ("-3-17", None),
        ("A--17", None),
        ("A-3-", None),
        ("A-x-1", None),
        ("A-+3-1", None),
        ("A- 3-1", None),
        ("A-3-1\n", None),
        ("A-03-1", None),  # a second spelling of A-3-1
        ("A-3-007", None),
        ("A-²-1", None),  # str.isdigit() says yes, int() says no
        ("A-٣-1", None),  # Arabic-Indic three: another spelling of A-3-1
        ("", None),
    ],
)
def test_parse_seat_id(value: str, expected: tuple[str, int, int] | None) -> None:
    assert rules.parse_seat_id(value) == expected
    if expected is not None:
        assert rules.seat_id(*expected) == value  # one spelling per seat


PRICES = {"A": 5000, "B": 3000, "GA": 3500}


@pytest.mark.parametrize(
    ("sections", "ga", "quantity", "expected"),
    [
        ([], None, 0, 0),
        (["A"], None, 0, 5000),
        (["A", "A", "B"], None, 0, 13000),
        ([], "GA", 4, 14000),
        ([], "GA", 0, 0),
        (["B"], "GA", 2, 10000),
    ],
)
def test_hold_amount(sections: list[str], ga: str | None, quantity: int, expected: int) -> None:
    assert rules.hold_amount(sections, ga, quantity, PRICES) == expected


def test_hold_amount_unknown_section_is_an_error() -> None:
    with pytest.raises(KeyError):
        rules.hold_amount(["Z"], None, 0, PRICES)


@pytest.mark.parametrize(
    ("expires", "now", "checkout", "expected"),
    [
        (10_000, 0, 5_000, 10_000),  # plenty left: unchanged
        (10_000, 8_000, 5_000, 13_000),  # extended to checkout_ms from now
        (10_000, 5_000, 5_000, 10_000),  # exactly enough
        (10_000, 20_000, 5_000, 25_000),  # already past: from now
    ],
)
def test_payment_window_ms(expires: int, now: int, checkout: int, expected: int) -> None:
    assert rules.payment_window_ms(expires, now, checkout) == expected
