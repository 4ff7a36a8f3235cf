"""One buyer, one limit across orders: the normalised email, the event's setting (default one
order's worth), 409 buyer_limit at hold (the visitor's paid orders) and at checkout (the email's
paid orders), and PostgreSQL deciding at confirmation when two orders of one buyer pay at once.
The card's fingerprint counts too where the provider gives one (Stripe: tests/test_stripe.py);
the dev provider gives none, so the email alone counts."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from server.core.rules import (
    BuyerCount,
    buyer_email,
    buyer_limit,
    buyer_limit_passed_by,
    over_buyer_limit,
)

from .helpers import ADMIN, Client, Fan, admitted, admitted_fan, bearer, call, create_event, visitor


@pytest.mark.parametrize(
    ("email", "buyer"),
    [
        ("fan@example.com", "fan@example.com"),
        ("  Fan@Example.COM ", "fan@example.com"),
        ("fan+presale@example.com", "fan@example.com"),  # tags mint no buyers
        ("fan+a+b@example.com", "fan@example.com"),
        ("f.a.n@example.com", "f.a.n@example.com"),  # dots matter outside Gmail
        ("F.a.N+x@gmail.com", "fan@gmail.com"),
        ("fan@googlemail.com", "fan@gmail.com"),
        ("+tag@example.com", "+tag@example.com"),  # nothing left before the tag: kept
        ("...@gmail.com", "...@gmail.com"),
        ("no-at-sign", "no-at-sign"),
        ("a@b@example.com", "a@b@example.com"),  # the last @ splits
    ],
)
def test_buyer_email(email: str, buyer: str) -> None:
    assert buyer_email(email) == buyer


@pytest.mark.parametrize(
    ("setting", "per_order", "bought", "wanted", "over"),
    [
        (None, 6, 0, 6, False),  # default: one order's worth
        (None, 6, 1, 6, True),
        (None, 4, 3, 1, False),
        (10, 4, 6, 4, False),  # more than one order allowed
        (10, 4, 7, 4, True),
        (1, 6, 0, 2, True),
    ],
)
def test_buyer_limit(
    setting: int | None, per_order: int, bought: int, wanted: int, over: bool
) -> None:
    assert over_buyer_limit(bought, wanted, buyer_limit(setting, per_order)) is over


@pytest.mark.parametrize(
    ("wanted", "limit", "by_email", "by_card", "passed_by"),
    [
        (4, 4, 0, None, None),  # no fingerprint (dev): the email alone
        (1, 4, 4, None, "email"),
        (2, 4, 0, 3, "card"),  # a fresh email, a card that bought 3 already
        (1, 4, 0, 3, None),  # up to the limit exactly
        (2, 4, 3, 3, "email"),  # both past it: the email is named first
        (2, 4, 2, 0, None),
        (5, 4, 0, 0, "email"),  # one order past the limit alone
    ],
)
def test_buyer_limit_passed_by(
    wanted: int, limit: int, by_email: int, by_card: int | None, passed_by: BuyerCount | None
) -> None:
    assert buyer_limit_passed_by(wanted, limit, by_email, by_card) == passed_by


async def test_dev_payments_have_no_card_so_the_email_alone_counts(
    fans: Client, pg: asyncpg.Pool
) -> None:
    """Every dev payment uses the same test card number, yet two emails each buy their limit:
    the dev provider gives no fingerprint, and a card number is not one."""
    ev = await create_event(fans, max_seats_per_order=4)
    for row_no, email in ((1, "first@example.com"), (2, "second@example.com")):
        fan = await admitted_fan(fans, ev["id"])
        seats = [f"A-{row_no}-{n}" for n in range(1, 5)]
        paid = await buy(fan, ev["id"], seats, email)
        assert len(paid["tickets"]) == 4
    rows = await pg.fetch(
        "SELECT status, card_fingerprint FROM orders WHERE event_id = $1", ev["id"]
    )
    assert [(r["status"], r["card_fingerprint"]) for r in rows] == [("paid", None)] * 2


async def again(fan: Fan, event_id: str) -> Fan:
    """The same visitor, back through the queue after its session ended with a purchase."""
    headers = visitor(fan.visitor_id)
    _, token = await admitted(fan.client, event_id, headers)
    return Fan(fan.client, fan.visitor_id, bearer(headers, token))


async def buy(fan: Any, event_id: str, seats: list[str], email: str) -> dict[str, Any]:
    status, h = await fan.hold(event_id, {"seats": seats})
    assert status == 201, h
    status, order = await fan.checkout(h["hold_id"], email)
    assert status == 201, order
    status, paid = await fan.pay(order["order_id"])
    assert status == 200 and paid["status"] == "paid", paid
    result: dict[str, Any] = paid
    return result


async def test_hold_and_checkout_answer_buyer_limit(fans: Client) -> None:
    ev = await create_event(fans, max_seats_per_order=4)
    assert ev["settings"]["max_tickets_per_buyer"] is None
    fan = await admitted_fan(fans, ev["id"])
    await buy(fan, ev["id"], ["A-1-1", "A-1-2", "A-1-3"], "fan.name@gmail.com")

    # The same visitor, back through the queue: its paid orders count at hold.
    fan = await again(fan, ev["id"])
    status, body = await fan.hold(ev["id"], {"seats": ["A-2-1", "A-2-2"]})
    assert (status, body["error"], body["limit"], body["bought"]) == (409, "buyer_limit", 4, 3)
    status, body = await fan.hold(ev["id"], {"section": "GA", "quantity": 2})
    assert (status, body["error"]) == (409, "buyer_limit")
    status, last = await fan.hold(ev["id"], {"seats": ["A-2-1"]})
    assert status == 201, last
    await fan.call("DELETE", f"/api/holds/{last['hold_id']}")

    # Another visitor (another device, no shared cookie): the email's orders count at checkout.
    other = await admitted_fan(fans, ev["id"])
    status, h = await other.hold(ev["id"], {"seats": ["A-3-1", "A-3-2"]})
    assert status == 201, h
    status, body = await other.checkout(h["hold_id"], "FanName+again@GoogleMail.com")
    assert (status, body.get("error"), body.get("bought")) == (409, "buyer_limit", 3), body
    assert body["detail"]
    status, order = await other.checkout(h["hold_id"], "someone.else@example.com")
    assert status == 201, order


async def test_two_orders_of_one_buyer_paid_at_once(fans: Client, pg: asyncpg.Pool) -> None:
    """Both pass checkout (nothing paid yet); PostgreSQL lets exactly one be paid."""
    ev = await create_event(fans, max_seats_per_order=4)
    a, b = await admitted_fan(fans, ev["id"]), await admitted_fan(fans, ev["id"])
    orders = []
    for fan, seats in ((a, ["A-1-1", "A-1-2", "A-1-3"]), (b, ["A-2-1", "A-2-2", "A-2-3"])):
        status, h = await fan.hold(ev["id"], {"seats": seats})
        assert status == 201, h
        status, order = await fan.checkout(h["hold_id"], "twin@example.com")
        assert status == 201, order
        orders.append(order["order_id"])
    answers = await asyncio.gather(a.pay(orders[0]), b.pay(orders[1]))
    assert sorted(status for status, _ in answers) == [200, 409], answers
    refused = next(body for status, body in answers if status == 409)
    assert refused["error"] == "buyer_limit"
    rows = await pg.fetch(
        "SELECT status, status_reason FROM orders WHERE event_id = $1 ORDER BY status", ev["id"]
    )
    assert [(r["status"], r["status_reason"]) for r in rows] == [
        ("paid", None),
        ("voided", "buyer_limit"),
    ]
    voided = orders[1] if answers[0][0] == 200 else orders[0]
    seats = await pg.fetchval("SELECT count(*) FROM sold_seats WHERE order_id = $1", voided)
    assert seats == 0
    status, seat_map = await call(fans, "GET", f"/api/events/{ev['id']}/seats", {})
    lost = ["A-2-1", "A-2-2", "A-2-3"] if voided == orders[1] else ["A-1-1", "A-1-2", "A-1-3"]
    states = {
        seat["id"]: seat["status"]
        for section in seat_map["sections"]
        for row in section.get("rows") or []
        for seat in row["seats"]
    }
    assert {states[s] for s in lost} == {"free"}, {s: states[s] for s in lost}


async def test_limit_setting_create_patch_audit(fans: Client, pg: asyncpg.Pool) -> None:
    ev = await create_event(fans, max_seats_per_order=2, max_tickets_per_buyer=3)
    assert ev["settings"]["max_tickets_per_buyer"] == 3
    url = f"/api/admin/events/{ev['id']}"
    status, body = await call(fans, "PATCH", url, ADMIN, {"max_tickets_per_buyer": None})
    assert status == 200 and body["settings"]["max_tickets_per_buyer"] is None, body
    row = await pg.fetchrow(
        "SELECT old_value, new_value FROM audit_log WHERE field = 'max_tickets_per_buyer'"
    )
    assert row is not None and (row["old_value"], row["new_value"]) == ("3", "null")
    for bad in (0, 201, "many", 2.5):
        status, body = await call(fans, "PATCH", url, ADMIN, {"max_tickets_per_buyer": bad})
        assert (status, body["error"]) == (422, "invalid"), (bad, body)

    # With a limit above one order, a buyer may place several orders up to it.
    await call(fans, "PATCH", url, ADMIN, {"max_tickets_per_buyer": 3})
    fan = await admitted_fan(fans, ev["id"])
    await buy(fan, ev["id"], ["A-1-1", "A-1-2"], "multi@example.com")
    fan = await again(fan, ev["id"])
    await buy(fan, ev["id"], ["A-1-3"], "multi@example.com")
    fan = await again(fan, ev["id"])
    status, body = await fan.hold(ev["id"], {"seats": ["A-1-4"]})
    assert (status, body["error"], body["bought"]) == (409, "buyer_limit", 3)
