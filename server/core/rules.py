"""Pure business rules: no I/O, table-tested in tests/test_rules.py."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

EventState = Literal["scheduled", "prequeue", "on_sale", "sold_out", "closed"]

MIN_RATE_WINDOW_MS = 2000


def event_state(
    now_ms: int,
    prequeue_opens_ms: int,
    sale_starts_ms: int,
    *,
    closed: bool,
    sold_out: bool,
) -> EventState:
    if closed:
        return "closed"
    if sold_out:
        return "sold_out"
    if now_ms >= sale_starts_ms:
        return "on_sale"
    if now_ms >= prequeue_opens_ms:
        return "prequeue"
    return "scheduled"


def measured_rate_per_min(admitted_in_window: int, window_ms: int) -> float | None:
    """Admissions per minute actually achieved; None while too little time has passed to say."""
    if window_ms < MIN_RATE_WINDOW_MS:
        return None
    return round(admitted_in_window * 60000 / window_ms, 1)


def eta_seconds(
    position: int | None, rate_per_min: float | None, paused: bool = False
) -> int | None:
    """Seconds until a visitor at `position` (1 = next) is admitted, at the estimated rate
    (blended_rate, smoothed_rate).

    Unknown (None) when paused, when there is no rate, or when the rate is zero.
    """
    if position is None or paused or not rate_per_min or rate_per_min <= 0:
        return None
    return math.ceil(position * 60 / rate_per_min)


RATE_HISTORY_MS = 60_000  # the measured rate is trusted alone once it spans this long
RATE_SMOOTHING_MS = 10_000  # time constant of the estimate's exponential smoothing
RATE_MAX_CHANGE_PER_S = 0.05  # the estimate moves by at most 5% of itself per second


def blended_rate(
    configured_per_min: float, measured_per_min: float | None, window_ms: int
) -> float | None:
    """The admission rate a fan's estimate should use: the configured rate, weighed against
    the measured one in proportion to the measurement's history (its window over
    RATE_HISTORY_MS), so a few seconds of noisy measurement never swing it. None when nobody
    is being admitted (configured rate 0)."""
    if configured_per_min <= 0:
        return None
    if measured_per_min is None:
        return float(configured_per_min)
    weight = min(1.0, max(0, window_ms) / RATE_HISTORY_MS)
    return weight * measured_per_min + (1 - weight) * configured_per_min


def smoothed_rate(previous: float | None, target: float | None, elapsed_ms: int) -> float | None:
    """One update of the estimate toward `target`: exponential smoothing over
    RATE_SMOOTHING_MS, and never more than RATE_MAX_CHANGE_PER_S of itself per second, so an
    estimate cannot jump back and forth. No previous estimate, or no target (admission halted
    or stopped): the target itself."""
    if previous is None or target is None or previous <= 0:
        return target
    elapsed = max(0, elapsed_ms)
    step = (target - previous) * (1 - math.exp(-elapsed / RATE_SMOOTHING_MS))
    bound = previous * RATE_MAX_CHANGE_PER_S * elapsed / 1000
    return previous + max(-bound, min(bound, step))


def position_from_rank(rank: int) -> int | None:
    """Redis ranks are 0-based; positions start at 1 (next to be admitted). -1 means no rank."""
    return rank + 1 if rank >= 0 else None


def estimated_position(rank_position: int, admitted_then: int, admitted_now: int) -> int:
    """Position now, from an exact position looked up when `admitted_then` visitors had been
    admitted. Admission is strictly in line order, so every admission since then was someone
    ahead. Departures ahead make this an overestimate until the next exact lookup."""
    return max(1, rank_position - max(0, admitted_now - admitted_then))


def bucket_capacity(rate_per_min: int, tick_ms: int) -> float:
    """The token bucket holds one tick's worth of admissions plus one (so the fraction of a token
    carried between ticks is never clipped away); rate 0 admits nobody (queue/admit.lua)."""
    if rate_per_min <= 0:
        return 0.0
    return rate_per_min * tick_ms / 60000 + 1


def admission_ceiling(rate_per_min: int, tick_ms: int, elapsed_ms: int) -> int:
    """Most admissions the bucket allows over `elapsed_ms`, starting full."""
    return math.floor(rate_per_min * elapsed_ms / 60000 + bucket_capacity(rate_per_min, tick_ms))


def rate_to_clear(waiting: int, seconds: int) -> int:
    """Admissions per minute needed to admit `waiting` visitors within `seconds`."""
    if waiting <= 0:
        return 0
    return math.ceil(waiting * 60 / max(1, seconds))


# ---- seats, prices and orders ------------------------------------------------------------------

OrderStatus = Literal["pending", "paid", "expired", "failed", "voided", "refunded"]

ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"paid", "expired", "failed", "voided"}),
    "paid": frozenset({"refunded"}),
    "expired": frozenset(),
    "failed": frozenset(),
    "voided": frozenset(),
    "refunded": frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in ORDER_TRANSITIONS.get(current, frozenset())


def seat_id(section: str, row: int, seat: int) -> str:
    return f"{section}-{row}-{seat}"


SEAT_ID = re.compile(r"([^-]+)-(0|[1-9][0-9]*)-(0|[1-9][0-9]*)")


def parse_seat_id(value: str) -> tuple[str, int, int] | None:
    """("A", 3, 17) from "A-3-17"; None if the text is not a seat id in its one spelling (ASCII
    digits, no leading zeros): "A-03-17" must not name a second key for the same seat, and "²"
    passes str.isdigit() but breaks int()."""
    if len(value) > 40:
        return None
    match = SEAT_ID.fullmatch(value)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3))


def hold_amount(
    seat_sections: list[str], ga_section: str | None, quantity: int, prices: dict[str, int]
) -> int:
    """Total in minor units: each assigned seat at its section's price, plus standing units."""
    total = sum(prices[s] for s in seat_sections)
    if ga_section is not None:
        total += prices[ga_section] * quantity
    return total


def payment_window_ms(hold_expires_ms: int, now_ms: int, checkout_ms: int) -> int:
    """Starting checkout extends a hold once, to at least `checkout_ms` from now
    (queue/extend_hold.lua applies this atomically, on Redis time)."""
    return max(hold_expires_ms, now_ms + checkout_ms)


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """How long seats stay held, in one place: a new hold, the checkout extension and the grace
    a late payment gets. The scripts apply it atomically; this decides the numbers."""

    hold_ms: int  # a new hold lasts this long (the event's hold_minutes)
    checkout_ms: int  # starting checkout extends the hold once, to at least this from now
    late_payment_ms: int  # a pending order is still honoured this long after its window

    @classmethod
    def from_minutes(cls, hold: int, checkout: int, late_payment: int) -> HoldPolicy:
        return cls(hold * 60_000, checkout * 60_000, late_payment * 60_000)

    def payment_window_ms(self, hold_expires_ms: int, now_ms: int) -> int:
        return payment_window_ms(hold_expires_ms, now_ms, self.checkout_ms)

    @property
    def late_claim_ms(self) -> int:
        """A late payment takes its seats again for this long: past the order's own expiry."""
        return self.late_payment_ms + 60_000

    @property
    def order_grace(self) -> timedelta:
        """A pending order expires this long after its payment window."""
        return timedelta(milliseconds=self.late_payment_ms)


# ---- after the sale ---------------------------------------------------------------------------

RefundStep = Literal["refund", "already_refunded", "not_paid"]


def refund_step(status: str) -> RefundStep:
    """What a refund request does to an order in this status: only a paid order is refunded;
    a refunded one answers as it is (refunds are idempotent)."""
    if status == "refunded":
        return "already_refunded"
    return "refund" if can_transition(status, "refunded") else "not_paid"


def reopens_after_return(sold_out: bool, closed: bool, returned: int) -> bool:
    """Seats came back to a sold-out sale that ops have not closed: its queue opens again."""
    return sold_out and not closed and returned > 0


CheckinResult = Literal[
    "admitted", "already_checked_in", "ticket_refunded", "wrong_event", "invalid_ticket"
]


def checkin_result(
    door_event: str, ticket_event: str | None, order_status: str | None, checked_in: bool
) -> CheckinResult:
    """The door's answer for a genuine code (its signature verified), before the guarded write:
    no such ticket, another event, a refunded order, admitted before, or admit now."""
    if ticket_event is None or order_status is None:
        return "invalid_ticket"
    if ticket_event != door_event:
        return "wrong_event"
    if order_status != "paid":
        return "ticket_refunded"
    if checked_in:
        return "already_checked_in"
    return "admitted"


# ---- one buyer, one limit across orders -------------------------------------------------------

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def buyer_email(email: str) -> str:
    """The buyer an email names, for the per-buyer ticket limit: trimmed and lower-cased, a
    "+tag" dropped from the local part (providers deliver name+tag@ to name@, so tags would
    mint buyers for free), and for Gmail the dots too (Gmail ignores them) with googlemail.com
    read as gmail.com. Two people sharing one mailbox count as one buyer."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at or not local:
        return email.strip().lower()
    local = local.split("+", 1)[0] or local
    if domain in GMAIL_DOMAINS:
        local, domain = local.replace(".", "") or local, "gmail.com"
    return f"{local}@{domain}"


def buyer_limit(max_tickets_per_buyer: int | None, max_seats_per_order: int) -> int:
    """Tickets one buyer may have across an event's paid orders: the event's setting, or by
    default one order's worth."""
    return max_seats_per_order if max_tickets_per_buyer is None else max_tickets_per_buyer


def over_buyer_limit(bought: int, wanted: int, limit: int) -> bool:
    """Whether `wanted` more tickets would take a buyer who has `bought` past `limit`."""
    return bought + wanted > limit


BuyerCount = Literal["email", "card"]


def buyer_limit_passed_by(
    wanted: int, limit: int, by_email: int, by_card: int | None
) -> BuyerCount | None:
    """Which count a payment for `wanted` tickets takes past the per-buyer limit, when it is
    confirmed: the paid tickets of the order's buyer (its normalised email), else those paid
    with the same card (the provider's card fingerprint; None when the provider gave none,
    e.g. the dev provider, so the email alone counts). None: within the limit on both."""
    if over_buyer_limit(by_email, wanted, limit):
        return "email"
    if by_card is not None and over_buyer_limit(by_card, wanted, limit):
        return "card"
    return None
