"""Stripe payments end to end: the real app, Redis, PostgreSQL and `stripe` library, with the
in-process fake of Stripe's HTTP API (tests/fakestripe.py) as the only stand-in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.booking import ledger
from server.booking.inventory import Inventory
from server.booking.orders import order_lines
from server.core.keys import EventKeys
from server.core.settings import Settings
from server.core.tokens import new_id
from server.payments import PaymentError
from server.payments.stripe_provider import StripeProvider
from server.runtime.app import create_app

from . import helpers
from .fakestripe import FakeStripe, Recorded
from .helpers import ADMIN, Headers, admitted_headers, create_event, created, eventually

Client = TestClient[Any, Any]

SECRET_KEY = "sk_test_" + "k" * 24
WEBHOOK_SECRET = "whsec_" + "w" * 32
PUBLISHABLE_KEY = "pk_test_" + "p" * 24
AUTHORISED = "payment_intent.amount_capturable_updated"
SUCCEEDED = "payment_intent.succeeded"
CHARGED = "charge.succeeded"  # the Charge: authorised (or captured), with the card that paid
FAILED = "payment_intent.payment_failed"
PRICE = 5000  # section A of helpers.event_body


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    stripe_api = FakeStripe(SECRET_KEY)
    await stripe_api.start()
    yield stripe_api
    await stripe_api.close()


@pytest.fixture
def stripe_settings(settings: Settings, fake: FakeStripe) -> Settings:
    return msgspec.structs.replace(
        settings,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_publishable_key=PUBLISHABLE_KEY,
        stripe_api_base=fake.url,
    )


@pytest.fixture
async def shop(
    fake: FakeStripe,
    stripe_settings: Settings,
    aiohttp_client: Any,
    redis: Redis,
    pg: asyncpg.Pool,
) -> Client:
    """The app configured for Stripe, talking to the fake; keeps no cookies (see visitor())."""
    result: Client = await aiohttp_client(create_app(stripe_settings), cookie_jar=DummyCookieJar())
    return result


# ---- helpers ---------------------------------------------------------------------------------


async def hold(shop: Client, event_id: str, fan: Headers, seats: list[str]) -> dict[str, Any]:
    return created(await helpers.hold(shop, event_id, fan, {"seats": seats}))


async def checkout(shop: Client, hold_id: str, fan: Headers) -> dict[str, Any]:
    return created(await helpers.checkout(shop, hold_id, fan))


class Sale(msgspec.Struct):
    event_id: str
    fan: Headers
    hold: dict[str, Any]
    order: dict[str, Any]
    intent_id: str

    @property
    def order_id(self) -> str:
        return str(self.order["order_id"])


async def start_sale(
    shop: Client, fake: FakeStripe, event_id: str, seats: list[str], fan: Headers | None = None
) -> Sale:
    """A fan holds seats and checks out: a pending order with its PaymentIntent."""
    fan = fan or await admitted_headers(shop, event_id)
    held = await hold(shop, event_id, fan, seats)
    order = await checkout(shop, held["hold_id"], fan)
    assert order["status"] == "pending"
    intent = fake.intent_for_order(order["order_id"])
    return Sale(event_id, fan, held, order, intent["id"])


async def post_webhook(shop: Client, payload: bytes, signature: str | None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    response = await shop.post("/api/webhooks/stripe", data=payload, headers=headers)
    return response.status, await response.json()


async def deliver(shop: Client, fake: FakeStripe, payload: bytes) -> dict[str, Any]:
    """Deliver a correctly signed event; it must be accepted (200)."""
    status, body = await post_webhook(shop, payload, fake.sign(payload, WEBHOOK_SECRET))
    assert status == 200, body
    assert body["received"] is True
    result: dict[str, Any] = body
    return result


async def recorded_events(pg: asyncpg.Pool, *payloads: bytes) -> int:
    """How many of these events' ids PostgreSQL has recorded as received."""
    ids = [msgspec.json.decode(p)["id"] for p in payloads]
    found = await pg.fetchval("SELECT count(*) FROM stripe_events WHERE id = ANY($1)", ids)
    return int(found)


async def order_row(pg: asyncpg.Pool, order_id: str) -> ledger.OrderRow:
    row = await ledger.get_order(pg, order_id)
    assert row is not None
    return row


async def sold_seats(pg: asyncpg.Pool, event_id: str) -> dict[str, str]:
    rows = await pg.fetch("SELECT seat_id, order_id FROM sold_seats WHERE event_id = $1", event_id)
    return {r["seat_id"]: r["order_id"] for r in rows}


async def seat_status(shop: Client, event_id: str, seat: str) -> str:
    seat_map = await (await shop.get(f"/api/events/{event_id}/seats")).json()
    for section in seat_map["sections"]:
        for row in section.get("rows") or []:
            for s in row["seats"]:
                if s["id"] == seat:
                    return str(s["status"])
    raise AssertionError(f"no seat {seat}")


async def expire_hold(redis: Redis, event_id: str, hold_id: str) -> None:
    """Move the hold's expiry into the past (the only expiry is this time comparison)."""
    past = int(time.time() * 1000) - 60_000
    changed = await redis.zadd(EventKeys(event_id).holdexp, {hold_id: past}, xx=True, ch=True)
    assert changed == 1


async def intent_status(fake: FakeStripe, intent_id: str, wanted: str) -> None:
    async def reached() -> bool:
        return bool(fake.intents[intent_id]["status"] == wanted)

    await eventually(reached, f"intent {intent_id} {wanted}", within=5, every=0.025)


async def owed_captures(pg: asyncpg.Pool, *order_ids: str) -> list[tuple[str, bool, int]]:
    """(order id, done, attempts) of these orders' captures."""
    rows = await pg.fetch(
        "SELECT order_id, done_at IS NOT NULL AS done, attempts FROM payment_actions"
        " WHERE action = 'capture' AND order_id = ANY($1) ORDER BY order_id",
        list(order_ids),
    )
    return [(r["order_id"], r["done"], r["attempts"]) for r in rows]


async def captures_recorded(pg: asyncpg.Pool, *order_ids: str) -> None:
    """Wait until the capture turn has run and recorded these orders' captures (the webhook
    answers at the commit, before its capture)."""

    async def done() -> bool:
        owed = await owed_captures(pg, *order_ids)
        return owed == [(order_id, True, 0) for order_id in sorted(order_ids)]

    await eventually(done, f"captures of {order_ids} recorded", within=10, every=0.025)


# ---- checkout ----------------------------------------------------------------------------------


async def test_checkout_creates_one_intent_with_idempotency_key(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1", "A-1-2"])
    creates = fake.creates()
    assert len(creates) == 1 and len(fake.intents) == 1
    sent = creates[0]
    assert sent.idempotency_key == f"boxoffice-order-{sale.order_id}"
    assert sent.params["amount"] == str(2 * PRICE) == str(sale.order["amount"])
    assert sent.params["currency"] == "eur"
    assert sent.params["capture_method"] == "manual"
    assert sent.params["metadata[order_id]"] == sale.order_id
    assert sent.params["metadata[hold_id]"] == sale.hold["hold_id"]
    assert sent.params["metadata[event_id]"] == ev["id"]
    intent = fake.intents[sale.intent_id]
    payment = sale.order["payment"]
    assert payment == {
        "provider": "stripe",
        "client_secret": intent["client_secret"],
        "publishable_key": PUBLISHABLE_KEY,
    }
    assert (await order_row(pg, sale.order_id)).payment_id == sale.intent_id
    again = await checkout(shop, sale.hold["hold_id"], sale.fan)
    assert again["order_id"] == sale.order_id
    assert again["payment"]["client_secret"] == intent["client_secret"]
    assert len(fake.creates()) == 1, "a second checkout of the same hold reuses the intent"


async def test_concurrent_checkouts_make_one_order_and_one_intent(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    fan = await admitted_headers(shop, ev["id"])
    held = await hold(shop, ev["id"], fan, ["A-2-1"])
    orders = await asyncio.gather(*(checkout(shop, held["hold_id"], fan) for _ in range(6)))
    assert len({o["order_id"] for o in orders}) == 1
    count = await pg.fetchval("SELECT count(*) FROM orders WHERE hold_id = $1", held["hold_id"])
    assert count == 1
    assert len(fake.intents) == 1
    assert {r.idempotency_key for r in fake.creates()} == {
        f"boxoffice-order-{orders[0]['order_id']}"
    }
    intent = next(iter(fake.intents.values()))
    assert {o["payment"]["client_secret"] for o in orders} == {intent["client_secret"]}
    assert (await order_row(pg, orders[0]["order_id"])).payment_id == intent["id"]


# ---- webhooks: the happy path ------------------------------------------------------------------


async def test_authorised_payment_is_confirmed_then_captured(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1", "A-1-2"])
    at_capture: list[tuple[str, int, int]] = []

    async def look(request: Recorded) -> None:
        if request.path.endswith("/capture"):
            row = await order_row(pg, sale.order_id)
            sold = len(await sold_seats(pg, ev["id"]))
            at_capture.append((row.status, len(row.tickets), sold))

    fake.on_request = look
    fake.authorize(sale.intent_id)
    result = await deliver(shop, fake, fake.event(AUTHORISED, sale.intent_id))
    assert result["result"] == "paid"
    order = await (await shop.get(f"/api/orders/{sale.order_id}", headers=sale.fan)).json()
    assert order["status"] == "paid"
    assert order["payment"]["client_secret"] is None
    assert sorted(t["seat_id"] for t in order["tickets"]) == ["A-1-1", "A-1-2"]
    await captures_recorded(pg, sale.order_id)  # the capture turn ran after the answer
    assert fake.intents[sale.intent_id]["status"] == "succeeded"
    captures = fake.captures(sale.intent_id)
    assert {c.idempotency_key for c in captures} == {f"boxoffice-capture-{sale.order_id}"}
    assert captures[0].seq > fake.creates()[0].seq
    # Every capture saw the sale already committed: paid, two tickets, two sold seats.
    assert at_capture and set(at_capture) == {("paid", 2, 2)}
    assert await seat_status(shop, ev["id"], "A-1-1") == "sold"

    # Stripe then reports the capture: nothing more happens.
    succeeded = await deliver(shop, fake, fake.event(SUCCEEDED, sale.intent_id))
    assert succeeded["result"] == "already_paid"
    row = await order_row(pg, sale.order_id)
    assert row.status == "paid" and len(row.tickets) == 2
    assert not fake.cancels() and not fake.refunds
    assert {c.idempotency_key for c in fake.captures()} == {f"boxoffice-capture-{sale.order_id}"}


async def test_webhook_racing_checkout_is_matched_by_metadata(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    """Stripe's webhook may arrive before checkout has stored the intent id on the order."""
    ev = await create_event(shop, rate_per_min=60000)
    fan = await admitted_headers(shop, ev["id"])
    held = await hold(shop, ev["id"], fan, ["A-3-3"])
    created, release = asyncio.Event(), asyncio.Event()

    async def stall_create(request: Recorded) -> None:
        if request.path == "/v1/payment_intents":
            created.set()
            await release.wait()

    fake.on_request = stall_create
    pending = asyncio.create_task(checkout(shop, held["hold_id"], fan))
    await asyncio.wait_for(created.wait(), 30)
    intent_id = str(fake.creates()[0].response["id"])
    order_id = fake.creates()[0].params["metadata[order_id]"]
    assert (await order_row(pg, order_id)).payment_id is None
    fake.authorize(intent_id)
    result = await deliver(shop, fake, fake.event(AUTHORISED, intent_id))
    assert result["result"] == "paid"
    release.set()
    order = await pending
    assert order["order_id"] == order_id and order["status"] == "paid"
    row = await order_row(pg, order_id)
    assert row.payment_id == intent_id and len(row.tickets) == 1
    await intent_status(fake, intent_id, "succeeded")


# ---- webhooks: signatures ----------------------------------------------------------------------


def _tampered(payload: bytes) -> tuple[bytes, str | None]:
    signature = FakeStripe.sign(payload, WEBHOOK_SECRET)
    changed = payload.replace(b'"amount": 5000', b'"amount": 1', 1)
    assert changed != payload
    return changed, signature


SIGNATURE_CASES: dict[str, Callable[[bytes], tuple[bytes, str | None]]] = {
    "tampered_body": _tampered,
    "wrong_secret": lambda p: (p, FakeStripe.sign(p, "whsec_" + "x" * 32)),
    "stale_timestamp": lambda p: (p, FakeStripe.sign(p, WEBHOOK_SECRET, int(time.time()) - 600)),
    # Correctly signed, but dated an hour ahead: a replay window the library does not close.
    "future_timestamp": lambda p: (p, FakeStripe.sign(p, WEBHOOK_SECRET, int(time.time()) + 3600)),
    # Non-ASCII in the header made the library's compare_digest raise TypeError (a 500).
    "non_ascii_signature": lambda p: (p, f"t={int(time.time())},v1=\u00e9\u00e9"),
    "missing_header": lambda p: (p, None),
    "garbage_header": lambda p: (p, "t=yesterday,v1=nothing"),
    "no_v1_signature": lambda p: (p, f"t={int(time.time())}"),
}


@pytest.mark.parametrize("case", sorted(SIGNATURE_CASES))
async def test_bad_signatures_are_refused_and_change_nothing(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool, case: str
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1"])
    fake.authorize(sale.intent_id)
    payload = fake.event(AUTHORISED, sale.intent_id)
    body, signature = SIGNATURE_CASES[case](payload)
    status, error = await post_webhook(shop, body, signature)
    assert status == 400
    assert error["error"] == "bad_signature" and error["detail"]
    row = await order_row(pg, sale.order_id)
    assert row.status == "pending" and not row.tickets
    assert await recorded_events(pg, payload) == 0
    assert await sold_seats(pg, ev["id"]) == {}
    assert not fake.captures() and not fake.cancels()
    # The genuine delivery of the same event is still applied afterwards.
    assert (await deliver(shop, fake, payload))["result"] == "paid"


async def test_duplicate_event_is_applied_once(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1", "A-1-2", "A-1-3"])
    fake.authorize(sale.intent_id)
    payload = fake.event(AUTHORISED, sale.intent_id)
    signature = fake.sign(payload, WEBHOOK_SECRET)
    answers = await asyncio.gather(*(post_webhook(shop, payload, signature) for _ in range(4)))
    assert [status for status, _ in answers] == [200] * 4
    again = await deliver(shop, fake, payload)
    assert again["result"] == "duplicate"
    row = await order_row(pg, sale.order_id)
    assert row.status == "paid" and len(row.tickets) == 3
    assert await pg.fetchval("SELECT count(*) FROM tickets") == 3
    assert len(await sold_seats(pg, ev["id"])) == 3
    assert await recorded_events(pg, payload) == 1
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM outbox WHERE kind = 'order_paid' AND event_id = $1", ev["id"]
        )
        == 1
    )
    await intent_status(fake, sale.intent_id, "succeeded")
    assert {c.idempotency_key for c in fake.captures()} == {f"boxoffice-capture-{sale.order_id}"}
    assert not fake.cancels()


async def test_succeeded_before_authorised_still_one_paid_order(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-4-1", "A-4-2"])
    authorised = fake.event(AUTHORISED, sale.intent_id, status="requires_capture")
    fake.capture_elsewhere(sale.intent_id)
    first = await deliver(shop, fake, fake.event(SUCCEEDED, sale.intent_id))
    assert first["result"] == "paid"
    late = await deliver(shop, fake, authorised)
    assert late["result"] == "already_paid"
    row = await order_row(pg, sale.order_id)
    assert row.status == "paid" and sorted(t.seat_id or "" for t in row.tickets) == [
        "A-4-1",
        "A-4-2",
    ]
    assert await pg.fetchval("SELECT count(*) FROM tickets") == 2
    # Already captured: no capture to do, and nothing voided or refunded.
    assert not fake.captures() and not fake.cancels() and not fake.refunds


async def test_webhook_for_an_order_not_committed_yet_is_retried(
    shop: Client,
    fake: FakeStripe,
    stripe_settings: Settings,
    redis: Redis,
    pg: asyncpg.Pool,
) -> None:
    """Another process made the intent but its order row is not visible yet: 503 + Retry-After,
    nothing recorded, and Stripe's retry of the same event succeeds once the order exists."""
    ev = await create_event(shop, rate_per_min=60000)
    fan = await admitted_headers(shop, ev["id"])
    held = await hold(shop, ev["id"], fan, ["A-5-5"])
    order_id = new_id()
    provider = StripeProvider(stripe_settings)
    try:
        intent = await provider.create(
            order_id=order_id,
            hold_id=held["hold_id"],
            event_id=ev["id"],
            amount=PRICE,
            currency="EUR",
        )
    finally:
        await provider.close()
    assert intent is not None
    fake.authorize(intent.id)
    payload = fake.event(AUTHORISED, intent.id)
    status, body = await post_webhook(shop, payload, fake.sign(payload, WEBHOOK_SECRET))
    assert status == 503 and body["error"] == "order_not_ready"
    response = await shop.post(
        "/api/webhooks/stripe",
        data=payload,
        headers={
            "Stripe-Signature": fake.sign(payload, WEBHOOK_SECRET),
            "Content-Type": "application/json; charset=utf-8",  # as Stripe sends it
        },
    )
    assert response.status == 503 and int(response.headers["Retry-After"]) > 0
    assert await recorded_events(pg, payload) == 0
    assert not fake.captures() and not fake.cancels()

    # The other process's commit lands: the order for that hold, with that id.
    record = await Inventory(redis).read_hold(EventKeys(ev["id"]), held["hold_id"])
    assert record is not None
    await ledger.create_order(
        pg,
        order_id=order_id,
        event_id=ev["id"],
        hold_id=held["hold_id"],
        visitor_id=record.visitor_id,
        queue_id=record.queue_id,
        email="fan@example.com",
        amount=PRICE,
        currency="EUR",
        provider="stripe",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
        lines=order_lines(record, {"A": PRICE}),
    )
    retried = await deliver(shop, fake, payload)  # Stripe re-signs each retry
    assert retried["result"] == "paid"
    row = await order_row(pg, order_id)
    assert row.status == "paid" and row.payment_id == intent.id and len(row.tickets) == 1
    await intent_status(fake, intent.id, "succeeded")
    assert {c.idempotency_key for c in fake.captures()} == {f"boxoffice-capture-{order_id}"}


# ---- webhooks: failures and mismatches ---------------------------------------------------------


async def test_payment_failed_fails_order_and_frees_seats(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-2-2", "A-2-3"])
    assert await seat_status(shop, ev["id"], "A-2-2") == "held"
    fake.decline(sale.intent_id)
    result = await deliver(shop, fake, fake.event(FAILED, sale.intent_id))
    assert result["result"] == "failed"
    order = await (await shop.get(f"/api/orders/{sale.order_id}", headers=sale.fan)).json()
    assert order["status"] == "failed" and order["tickets"] == []
    assert await seat_status(shop, ev["id"], "A-2-2") == "free"
    assert await seat_status(shop, ev["id"], "A-2-3") == "free"
    other = await admitted_headers(shop, ev["id"])
    await hold(shop, ev["id"], other, ["A-2-2", "A-2-3"])
    # The intent is cancelled, so the fan cannot later authorise money for an order that
    # will never be paid (Stripe lets a customer retry an intent after a decline).
    await intent_status(fake, sale.intent_id, "canceled")
    assert {c.idempotency_key for c in fake.cancels()} == {f"boxoffice-void-{sale.order_id}"}
    assert not fake.captures()
    assert await sold_seats(pg, ev["id"]) == {}


@pytest.mark.parametrize(
    "override",
    [
        {"amount": PRICE - 1},
        {"amount": PRICE + 1},
        {"currency": "usd"},
        {"id": "pi_not_this_order"},
        {"livemode": True},  # the PaymentIntent's own livemode; the event's says test mode
    ],
    ids=str,
)
async def test_amount_or_currency_mismatch_is_not_paid(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool, override: dict[str, Any]
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-9"])
    fake.authorize(sale.intent_id)
    result = await deliver(shop, fake, fake.event(AUTHORISED, sale.intent_id, **override))
    assert result["result"] == "mismatch"
    row = await order_row(pg, sale.order_id)
    assert row.status == "pending" and not row.tickets
    assert await sold_seats(pg, ev["id"]) == {}
    assert not fake.captures()
    assert fake.intents[sale.intent_id]["status"] == "requires_capture"


# ---- PostgreSQL is the arbiter -----------------------------------------------------------------


async def test_postgres_refuses_a_seat_sold_twice_and_voids_the_loser(
    shop: Client, fake: FakeStripe, redis: Redis, pg: asyncpg.Pool
) -> None:
    """Redis loses the record that A-1-1 is held (a lost write), so a second fan holds it too.
    Both pay; PostgreSQL's primary key refuses the second sale, which is voided at Stripe."""
    ev = await create_event(shop, rate_per_min=60000)
    first = await start_sale(shop, fake, ev["id"], ["A-1-1"])
    assert await redis.hdel(EventKeys(ev["id"]).seats, "A-1-1") == 1
    second = await start_sale(shop, fake, ev["id"], ["A-1-1", "A-1-2"])
    assert first.intent_id != second.intent_id
    fake.authorize(first.intent_id)
    fake.authorize(second.intent_id)

    assert (await deliver(shop, fake, fake.event(AUTHORISED, first.intent_id)))["result"] == "paid"
    lost = await deliver(shop, fake, fake.event(AUTHORISED, second.intent_id))
    assert lost["result"] == "voided"

    loser = await order_row(pg, second.order_id)
    assert loser.status == "voided" and loser.status_reason == "seats_taken"
    assert not loser.tickets
    assert await sold_seats(pg, ev["id"]) == {"A-1-1": first.order_id}
    assert await pg.fetchval("SELECT count(*) FROM tickets") == 1
    await intent_status(fake, second.intent_id, "canceled")
    assert {c.idempotency_key for c in fake.cancels()} == {f"boxoffice-void-{second.order_id}"}
    assert not fake.captures(second.intent_id) and not fake.refunds
    await intent_status(fake, first.intent_id, "succeeded")
    # The loser's other seat went back on sale.
    assert await seat_status(shop, ev["id"], "A-1-2") == "free"


# ---- payments after the hold expired -----------------------------------------------------------


async def test_postgres_refuses_standing_places_past_capacity_and_voids_the_loser(
    shop: Client, fake: FakeStripe, redis: Redis, pg: asyncpg.Pool
) -> None:
    """Redis loses the count of standing places held, so two fans hold 3 of 4 each. Both pay;
    the confirming statement takes no place past the capacity: the second order is voided at
    Stripe, nothing of it stays taken, and the first keeps its 3."""
    standing = {"id": "GA", "name": "Standing", "price": 3500, "capacity": 4}
    ev = await create_event(shop, rate_per_min=60000, sections=[standing])
    sales = []
    for _ in range(2):
        fan = await admitted_headers(shop, ev["id"])
        held = created(await helpers.hold(shop, ev["id"], fan, {"section": "GA", "quantity": 3}))
        order = await checkout(shop, held["hold_id"], fan)
        intent = fake.intent_for_order(order["order_id"])["id"]
        sales.append(Sale(ev["id"], fan, held, order, intent))
        assert await redis.hdel(EventKeys(ev["id"]).gaheld, "GA") == 1  # the lost count
    first, second = sales
    fake.authorize(first.intent_id, CARD)
    fake.authorize(second.intent_id, OTHER_CARD)  # two buyers: the buyer limit plays no part
    paid = await deliver(shop, fake, fake.charge_event(CHARGED, first.intent_id))
    assert paid["result"] == "paid"
    lost = await deliver(shop, fake, fake.charge_event(CHARGED, second.intent_id))
    assert lost["result"] == "voided"
    loser = await order_row(pg, second.order_id)
    assert (loser.status, loser.status_reason, loser.tickets) == ("voided", "seats_taken", [])
    assert await pg.fetchval("SELECT sold FROM ga_sales WHERE event_id = $1", ev["id"]) == 3
    assert await pg.fetchval("SELECT count(*) FROM tickets WHERE event_id = $1", ev["id"]) == 3
    await intent_status(fake, second.intent_id, "canceled")
    assert not fake.captures(second.intent_id)
    await captures_recorded(pg, first.order_id)


async def test_late_payment_with_seats_still_free_is_honoured(
    shop: Client, fake: FakeStripe, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-3-1", "A-3-2"])
    await expire_hold(redis, ev["id"], sale.hold["hold_id"])
    assert await seat_status(shop, ev["id"], "A-3-1") == "free"
    fake.authorize(sale.intent_id)
    result = await deliver(shop, fake, fake.event(AUTHORISED, sale.intent_id))
    assert result["result"] == "paid"
    row = await order_row(pg, sale.order_id)
    assert row.status == "paid" and len(row.tickets) == 2
    assert set(await sold_seats(pg, ev["id"])) == {"A-3-1", "A-3-2"}
    await intent_status(fake, sale.intent_id, "succeeded")
    assert not fake.cancels()
    assert await seat_status(shop, ev["id"], "A-3-2") == "sold"


@pytest.mark.parametrize("meanwhile", ["held", "bought"])
async def test_late_payment_with_seats_taken_is_voided(
    shop: Client, fake: FakeStripe, redis: Redis, pg: asyncpg.Pool, meanwhile: str
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    late = await start_sale(shop, fake, ev["id"], ["A-3-5", "A-3-6"])
    await expire_hold(redis, ev["id"], late.hold["hold_id"])
    rival = await start_sale(shop, fake, ev["id"], ["A-3-6"])
    if meanwhile == "bought":
        fake.authorize(rival.intent_id)
        bought = await deliver(shop, fake, fake.event(AUTHORISED, rival.intent_id))
        assert bought["result"] == "paid"

    fake.authorize(late.intent_id)
    result = await deliver(shop, fake, fake.event(AUTHORISED, late.intent_id))
    assert result["result"] == "voided"
    row = await order_row(pg, late.order_id)
    assert row.status == "voided" and row.status_reason == "seats_taken" and not row.tickets
    await intent_status(fake, late.intent_id, "canceled")
    assert {c.idempotency_key for c in fake.cancels()} == {f"boxoffice-void-{late.order_id}"}
    assert not fake.captures(late.intent_id)
    rival_row = await order_row(pg, rival.order_id)
    if meanwhile == "bought":
        assert rival_row.status == "paid"
        assert await sold_seats(pg, ev["id"]) == {"A-3-6": rival.order_id}
        assert await seat_status(shop, ev["id"], "A-3-6") == "sold"
    else:
        assert rival_row.status == "pending"
        assert await sold_seats(pg, ev["id"]) == {}
        assert await seat_status(shop, ev["id"], "A-3-6") == "held"
    assert await seat_status(shop, ev["id"], "A-3-5") == "free"


async def test_late_captured_payment_with_seats_sold_is_refunded(
    shop: Client, fake: FakeStripe, redis: Redis, pg: asyncpg.Pool
) -> None:
    """Money already captured (succeeded) for an order that lost its seats: refunded, so every
    captured payment ends with either an order that has its seats or its money back."""
    ev = await create_event(shop, rate_per_min=60000)
    late = await start_sale(shop, fake, ev["id"], ["A-5-1"])
    await expire_hold(redis, ev["id"], late.hold["hold_id"])
    rival = await start_sale(shop, fake, ev["id"], ["A-5-1"])
    fake.authorize(rival.intent_id)
    assert (await deliver(shop, fake, fake.event(AUTHORISED, rival.intent_id)))["result"] == "paid"

    fake.capture_elsewhere(late.intent_id)
    result = await deliver(shop, fake, fake.event(SUCCEEDED, late.intent_id))
    assert result["result"] == "voided"
    row = await order_row(pg, late.order_id)
    assert row.status == "voided" and not row.tickets

    async def refunded() -> bool:
        return any(r["payment_intent"] == late.intent_id for r in fake.refunds.values())

    await eventually(refunded, "refund of the late payment", within=5, every=0.025)
    refunds = fake.calls("/v1/refunds")
    assert {r.idempotency_key for r in refunds} == {f"boxoffice-refund-{late.order_id}"}
    assert refunds[0].params["metadata[order_id]"] == late.order_id
    assert len(fake.refunds) == 1
    assert not fake.cancels(late.intent_id) and not fake.captures(late.intent_id)
    assert await sold_seats(pg, ev["id"]) == {"A-5-1": rival.order_id}


async def test_redis_flushed_mid_sale_rebuilds_and_sells_each_seat_once(
    shop: Client, fake: FakeStripe, redis: Redis, pg: asyncpg.Pool
) -> None:
    """FLUSHALL while one order is pending and another paid: rebuilding seat state from
    PostgreSQL restores the pending hold and the sale, so a newcomer cannot take either seat,
    and the pending payment still completes."""
    ev = await create_event(shop, rate_per_min=60000)
    paid = await start_sale(shop, fake, ev["id"], ["A-1-1"])
    fake.authorize(paid.intent_id)
    assert (await deliver(shop, fake, fake.event(AUTHORISED, paid.intent_id)))["result"] == "paid"
    pending = await start_sale(shop, fake, ev["id"], ["A-1-2"])

    await redis.flushall()
    rebuilt = await shop.post(f"/api/admin/events/{ev['id']}/rebuild-inventory", headers=ADMIN)
    assert rebuilt.status == 200, await rebuilt.text()
    assert (await rebuilt.json())["holds_restored"] == 1

    newcomer = await admitted_headers(shop, ev["id"])
    for seat in ("A-1-1", "A-1-2"):
        refused = await shop.post(
            f"/api/events/{ev['id']}/holds", json={"seats": [seat]}, headers=newcomer
        )
        assert refused.status == 409, await refused.text()
    await hold(shop, ev["id"], newcomer, ["A-1-3"])

    fake.authorize(pending.intent_id)
    result = await deliver(shop, fake, fake.event(AUTHORISED, pending.intent_id))
    assert result["result"] == "paid"
    assert await sold_seats(pg, ev["id"]) == {
        "A-1-1": paid.order_id,
        "A-1-2": pending.order_id,
    }
    assert not fake.cancels() and not fake.refunds


@pytest.mark.parametrize(
    "override",
    [
        # The intent is not known by id, so the order is looked up by metadata (used to be a 500).
        lambda order_id: {"id": "pi_not_known_yet", "metadata": {"order_id": order_id + "\x00"}},
        lambda order_id: {"metadata": {"order_id": order_id, "note": "a\x00b"}},
        lambda order_id: {"id": "pi_\x00"},
    ],
    ids=["order_id", "other_field", "intent_id"],
)
async def test_signed_webhook_with_a_nul_is_400_logged_and_changes_nothing(
    shop: Client,
    fake: FakeStripe,
    pg: asyncpg.Pool,
    caplog: pytest.LogCaptureFixture,
    override: Callable[[str], dict[str, Any]],
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-7"])
    fake.authorize(sale.intent_id)
    payload = fake.event(AUTHORISED, sale.intent_id, **override(sale.order_id))
    status, error = await post_webhook(shop, payload, fake.sign(payload, WEBHOOK_SECRET))
    assert status == 400, error
    assert error == {"error": "malformed_webhook", "detail": "webhook event holds a NUL character"}
    assert any(r.getMessage() == "signed webhook holds a NUL character" for r in caplog.records)
    row = await order_row(pg, sale.order_id)
    assert row.status == "pending" and not row.tickets
    assert await recorded_events(pg, payload) == 0
    assert await sold_seats(pg, ev["id"]) == {}
    assert not fake.captures() and not fake.cancels()
    # The genuine event is still applied afterwards.
    assert (await deliver(shop, fake, fake.event(AUTHORISED, sale.intent_id)))["result"] == "paid"


# ---- refunds (after the sale) ----------------------------------------------------------------

REFUNDED = "charge.refunded"


async def paid_sale(shop: Client, fake: FakeStripe, seats: list[str]) -> tuple[str, str, str]:
    """A Stripe order paid and captured: (event id, order id, intent id)."""
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], seats)
    fake.authorize(sale.intent_id)
    assert (await deliver(shop, fake, fake.event(AUTHORISED, sale.intent_id)))["result"] == "paid"
    await intent_status(fake, sale.intent_id, "succeeded")
    return ev["id"], sale.order_id, sale.intent_id


async def admin_refund(shop: Client, order_id: str) -> tuple[int, Any]:
    return await helpers.call(
        shop, "POST", f"/api/admin/orders/{order_id}/refund", ADMIN, {"reason": "r"}
    )


async def test_refund_goes_through_stripe_once_with_its_idempotency_key(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    event_id, order_id, intent_id = await paid_sale(shop, fake, ["A-1-1"])
    status, order = await admin_refund(shop, order_id)
    assert status == 200 and order["status"] == "refunded"
    assert await seat_status(shop, event_id, "A-1-1") == "free"
    again = await admin_refund(shop, order_id)
    assert again[0] == 200 and again[1]["status"] == "refunded"
    calls = fake.calls("/v1/refunds")
    assert [c.idempotency_key for c in calls] == [f"boxoffice-refund-{order_id}"]
    assert calls[0].params["payment_intent"] == intent_id
    assert len(fake.refunds) == 1

    # Stripe then reports the refund: recorded already, nothing more happens.
    reported = await deliver(shop, fake, fake.charge_event(REFUNDED, intent_id))
    assert reported["result"] == "already_refunded"
    audits = await pg.fetchval("SELECT count(*) FROM audit_log WHERE action = 'refund'")
    assert audits == 1


async def test_refund_stripe_refuses_leaves_the_order_paid_and_says_why(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    event_id, order_id, _ = await paid_sale(shop, fake, ["A-2-1"])
    fake.refund_refusal = ("balance_insufficient", "Your balance is too low to refund this.")
    status, body = await admin_refund(shop, order_id)
    assert status == 409 and body["error"] == "refund_refused"
    assert "balance is too low" in body["detail"]
    row = await order_row(pg, order_id)
    assert row.status == "paid" and len(row.tickets) == 1
    assert await seat_status(shop, event_id, "A-2-1") == "sold"
    sold = await pg.fetchval("SELECT count(*) FROM sold_seats WHERE order_id = $1", order_id)
    assert sold == 1
    refused = await pg.fetchval("SELECT note FROM audit_log WHERE action = 'refund_refused'")
    assert "balance is too low" in refused
    assert not fake.refunds

    fake.refund_refusal = None  # the same key again, the refund now goes through
    status, order = await admin_refund(shop, order_id)
    assert status == 200 and order["status"] == "refunded" and len(fake.refunds) == 1
    keys = [c.idempotency_key for c in fake.calls("/v1/refunds")]
    assert keys == [f"boxoffice-refund-{order_id}", f"boxoffice-refund-{order_id}-1"]


async def test_refund_made_in_stripes_dashboard_frees_the_seats_once(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    event_id, order_id, intent_id = await paid_sale(shop, fake, ["A-3-1"])
    partial = fake.charge_event(REFUNDED, intent_id, refunded=False, amount_refunded=100)
    assert (await deliver(shop, fake, partial))["result"] == "ignored_partial_refund"
    assert (await order_row(pg, order_id)).status == "paid"

    fake.intents[intent_id]["refunded"] = True  # refunded outside the app
    payload = fake.charge_event(REFUNDED, intent_id)
    assert (await deliver(shop, fake, payload))["result"] == "refunded"
    assert (await deliver(shop, fake, payload))["result"] == "duplicate"
    row = await order_row(pg, order_id)
    assert row.status == "refunded" and row.status_reason == "refunded at the payment provider"
    assert await seat_status(shop, event_id, "A-3-1") == "free"
    who = await pg.fetchval("SELECT who FROM audit_log WHERE action = 'refund'")
    assert who.startswith("stripe:evt_")
    assert not fake.calls("/v1/refunds")  # nothing refunded by us


# ---- the per-buyer limit by card ------------------------------------------------------------

CARD = "4242424242424242"
OTHER_CARD = "5555555555554444"


async def card_audits(pg: asyncpg.Pool, event_id: str) -> list[asyncpg.Record]:
    return list(
        await pg.fetch(
            "SELECT who, field, old_value, new_value, note FROM audit_log"
            " WHERE event_id = $1 AND action = 'buyer_limit' ORDER BY id",
            event_id,
        )
    )


def report_of(fake: FakeStripe, report: str, intent_id: str) -> bytes:
    """Stripe's report about the intent as it is now: a PaymentIntent event, or the event about
    its Charge (charge.succeeded, which carries the card that paid)."""
    if report == CHARGED:
        return fake.charge_event(CHARGED, intent_id)
    return fake.event(report, intent_id)


def card_reads(fake: FakeStripe, intent_id: str) -> list[tuple[str, dict[str, str]]]:
    """The reads of this intent (with its PaymentMethod) settlement made for the card."""
    return [(r.method, r.params) for r in fake.calls(f"/v1/payment_intents/{intent_id}")]


async def paid_with(
    shop: Client,
    fake: FakeStripe,
    event_id: str,
    seats: list[str],
    card: str,
    report: str = AUTHORISED,
) -> Sale:
    """A new fan (its own email) holds, checks out and pays with this card, reported by this
    kind of Stripe event: paid."""
    sale = await start_sale(shop, fake, event_id, seats)
    fake.authorize(sale.intent_id, card)
    paid = await deliver(shop, fake, report_of(fake, report, sale.intent_id))
    assert paid["result"] == "paid"
    return sale


@pytest.mark.parametrize(
    ("report", "captured"),
    [(AUTHORISED, False), (SUCCEEDED, True), (CHARGED, False), (CHARGED, True)],
)
async def test_one_card_cannot_buy_past_the_limit_under_many_emails(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool, report: str, captured: bool
) -> None:
    """Limit 4. One card pays 3 tickets for one email; 2 more with the same card under another
    email are refused when the payment is confirmed: the order is voided with buyer_limit, its
    authorisation cancelled (or, if Stripe had already captured it, refunded), its seats freed,
    the refusal audited, and the fan's order says why. 1 more with that card is within it.
    A PaymentIntent's report names the PaymentMethod only, so the card is read from Stripe; a
    Charge's report carries the card's fingerprint, and nothing is read."""
    ev = await create_event(shop, rate_per_min=60000, max_seats_per_order=4)
    paying = CHARGED if report == CHARGED else AUTHORISED  # how the orders within it are paid
    first = await paid_with(shop, fake, ev["id"], ["A-1-1", "A-1-2", "A-1-3"], CARD, paying)
    assert (await order_row(pg, first.order_id)).card_fingerprint == fake.fingerprint(CARD)
    read = [("GET", {"expand[0]": "payment_method"})]
    assert card_reads(fake, first.intent_id) == ([] if report == CHARGED else read)

    second = await start_sale(shop, fake, ev["id"], ["A-2-1", "A-2-2"])
    assert second.order["email"] != first.order["email"]
    if not captured:
        fake.authorize(second.intent_id, CARD)
    else:
        fake.capture_elsewhere(second.intent_id, CARD)
    result = await deliver(shop, fake, report_of(fake, report, second.intent_id))
    assert result["result"] == "voided"
    assert card_reads(fake, second.intent_id) == ([] if report == CHARGED else read)
    row = await order_row(pg, second.order_id)
    assert (row.status, row.status_reason, row.tickets) == ("voided", "buyer_limit", [])
    assert row.card_fingerprint == fake.fingerprint(CARD)
    if not captured:  # the money was only held: the hold is cancelled, nothing taken
        await intent_status(fake, second.intent_id, "canceled")
        assert {c.idempotency_key for c in fake.cancels()} == {f"boxoffice-void-{second.order_id}"}
        assert not fake.refunds
    else:  # the money was taken already: all of it goes back

        async def refunded() -> bool:
            return any(r["payment_intent"] == second.intent_id for r in fake.refunds.values())

        await eventually(refunded, "refund of the over-limit payment", within=5, every=0.025)
        assert len(fake.refunds) == 1 and not fake.cancels()
    assert not fake.captures(second.intent_id)
    assert set((await sold_seats(pg, ev["id"])).values()) == {first.order_id}
    assert await seat_status(shop, ev["id"], "A-2-1") == "free"
    [audited] = await card_audits(pg, ev["id"])
    assert audited["who"].startswith("stripe:evt_")
    assert audited["field"] == f"order:{second.order_id}"
    assert (audited["old_value"], audited["new_value"]) == ('"pending"', '"voided"')
    assert audited["note"] == (
        "per-buyer limit 4 passed by card: 0 already bought by this email, 3 with this card"
    )
    # The fan's own view of the order says why (the page shows it in words).
    order = await (await shop.get(f"/api/orders/{second.order_id}", headers=second.fan)).json()
    assert (order["status"], order["status_reason"]) == ("voided", "buyer_limit")

    # Up to the limit the same card still buys, under yet another email.
    third = await paid_with(shop, fake, ev["id"], ["A-3-1"], CARD, paying)
    assert (await order_row(pg, third.order_id)).status == "paid"
    assert len(await card_audits(pg, ev["id"])) == 1


async def test_different_cards_under_different_emails_each_buy_up_to_the_limit(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    ev = await create_event(shop, rate_per_min=60000, max_seats_per_order=4)
    first = await paid_with(shop, fake, ev["id"], ["A-1-1", "A-1-2", "A-1-3", "A-1-4"], CARD)
    second = await paid_with(shop, fake, ev["id"], ["A-2-1", "A-2-2", "A-2-3"], OTHER_CARD)
    rows = [await order_row(pg, s.order_id) for s in (first, second)]
    assert [(r.status, r.card_fingerprint) for r in rows] == [
        ("paid", fake.fingerprint(CARD)),
        ("paid", fake.fingerprint(OTHER_CARD)),
    ]
    assert len(await sold_seats(pg, ev["id"])) == 7
    assert await card_audits(pg, ev["id"]) == []
    await intent_status(fake, second.intent_id, "succeeded")


async def test_one_card_paying_two_orders_at_once_pays_one(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    """Two fans (two emails) with one card, both within the limit alone, together past it;
    their confirmations race: exactly one is paid, the other voided and cancelled."""
    ev = await create_event(shop, rate_per_min=60000, max_seats_per_order=4)
    sales = [
        await start_sale(shop, fake, ev["id"], ["A-1-1", "A-1-2", "A-1-3"]),
        await start_sale(shop, fake, ev["id"], ["A-2-1", "A-2-2", "A-2-3"]),
    ]
    for sale in sales:
        fake.authorize(sale.intent_id, CARD)
    payloads = [fake.event(AUTHORISED, s.intent_id) for s in sales]
    answers = await asyncio.gather(*(deliver(shop, fake, p) for p in payloads))
    assert sorted(a["result"] for a in answers) == ["paid", "voided"]
    rows = [await order_row(pg, s.order_id) for s in sales]
    assert sorted((r.status, r.status_reason) for r in rows) == [
        ("paid", None),
        ("voided", "buyer_limit"),
    ]
    paid = next(r for r in rows if r.status == "paid")
    assert set((await sold_seats(pg, ev["id"])).values()) == {paid.id}
    voided = next(s for s, r in zip(sales, rows, strict=True) if r.status == "voided")
    await intent_status(fake, voided.intent_id, "canceled")
    assert not fake.captures(voided.intent_id)
    assert len(await card_audits(pg, ev["id"])) == 1


async def test_card_unknown_while_stripe_cannot_say_is_retried_not_decided(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    """Stripe fails to answer the intent's read: nothing is decided (503 with Retry-After, the
    report not recorded), and its redelivery once Stripe answers is confirmed."""
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1"])
    fake.authorize(sale.intent_id, CARD)
    payload = fake.event(AUTHORISED, sale.intent_id)
    fake.outage["retrieve"] = 500
    response = await shop.post(
        "/api/webhooks/stripe",
        data=payload,
        headers={
            "Stripe-Signature": fake.sign(payload, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    body = await response.json()
    assert (response.status, body["error"]) == (503, "provider_unavailable"), body
    assert int(response.headers["Retry-After"]) > 0
    row = await order_row(pg, sale.order_id)
    assert (row.status, row.card_fingerprint) == ("pending", None)
    assert await recorded_events(pg, payload) == 0
    assert await sold_seats(pg, ev["id"]) == {}
    assert not fake.captures() and not fake.cancels()
    fake.outage.clear()
    assert (await deliver(shop, fake, payload))["result"] == "paid"
    assert (await order_row(pg, sale.order_id)).card_fingerprint == fake.fingerprint(CARD)


@pytest.mark.parametrize("order", ["charge_first", "intent_first", "together"])
async def test_both_reports_of_one_authorisation_pay_once_reading_the_card_only_if_unsaid(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool, order: str
) -> None:
    """Stripe reports one authorisation twice, in no set order: charge.succeeded (the Charge,
    with the card's fingerprint) and payment_intent.amount_capturable_updated (the intent,
    naming its PaymentMethod only). Whichever is applied first confirms — reading the card
    from Stripe only if it is the intent's —, the other finds the order paid: one sale with
    its card, one capture, both reports recorded."""
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1", "A-1-2"])
    fake.authorize(sale.intent_id, CARD)
    charge = report_of(fake, CHARGED, sale.intent_id)
    intent = report_of(fake, AUTHORISED, sale.intent_id)
    if order == "together":
        both = await asyncio.gather(deliver(shop, fake, charge), deliver(shop, fake, intent))
        # Both may find it pending; the confirming transaction pays it once either way.
        assert {a["result"] for a in both} <= {"paid", "already_paid"}
        assert len(card_reads(fake, sale.intent_id)) <= 1
    else:
        first, then = (charge, intent) if order == "charge_first" else (intent, charge)
        answers = [await deliver(shop, fake, first), await deliver(shop, fake, then)]
        assert [a["result"] for a in answers] == ["paid", "already_paid"]
        reads = card_reads(fake, sale.intent_id)
        assert len(reads) == (0 if order == "charge_first" else 1)
    row = await order_row(pg, sale.order_id)
    assert (row.status, len(row.tickets)) == ("paid", 2)
    assert row.card_fingerprint == fake.fingerprint(CARD)
    assert set((await sold_seats(pg, ev["id"])).values()) == {sale.order_id}
    assert await recorded_events(pg, charge, intent) == 2
    await captures_recorded(pg, sale.order_id)
    assert [c.idempotency_key for c in fake.captures(sale.intent_id) if not c.replayed] == [
        f"boxoffice-capture-{sale.order_id}"
    ]
    assert fake.intents[sale.intent_id]["amount_received"] == PRICE * 2


async def test_charge_paid_by_no_card_counts_the_email_alone_and_reads_nothing(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool
) -> None:
    """A Charge whose payment method is not a card: paid with no fingerprint (the email alone
    counts, as for a PaymentMethod without a card), and Stripe is not asked."""
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1"])
    fake.authorize(sale.intent_id)
    other = {"type": "paypal", "paypal": {"payer_id": "PAYER1"}}
    payload = fake.charge_event(CHARGED, sale.intent_id, payment_method_details=other)
    assert (await deliver(shop, fake, payload))["result"] == "paid"
    row = await order_row(pg, sale.order_id)
    assert (row.status, row.card_fingerprint) == ("paid", None)
    assert card_reads(fake, sale.intent_id) == []


@pytest.mark.parametrize(
    "details",
    [
        {"type": "card", "card": {"fingerprint": "../../x"}},
        {"type": "card", "card": {"fingerprint": "f" * 65}},
        {"type": "card", "card": {"fingerprint": ""}},
    ],
)
async def test_charge_with_a_fingerprint_of_unknown_shape_is_400_and_changes_nothing(
    shop: Client, fake: FakeStripe, pg: asyncpg.Pool, details: dict[str, Any]
) -> None:
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1"])
    fake.authorize(sale.intent_id, CARD)
    payload = fake.charge_event(CHARGED, sale.intent_id, payment_method_details=details)
    status, error = await post_webhook(shop, payload, fake.sign(payload, WEBHOOK_SECRET))
    assert (status, error["error"]) == (400, "malformed_webhook"), error
    row = await order_row(pg, sale.order_id)
    assert (row.status, row.card_fingerprint) == ("pending", None)
    assert await recorded_events(pg, payload) == 0
    assert not fake.captures() and not fake.cancels()
    # The genuine report is applied afterwards.
    paid = await deliver(shop, fake, fake.charge_event(CHARGED, sale.intent_id))
    assert paid["result"] == "paid"
    assert (await order_row(pg, sale.order_id)).card_fingerprint == fake.fingerprint(CARD)


# ---- the capture queue -------------------------------------------------------------------------


async def test_two_processes_capture_every_sale_once_and_only_after_its_commit(
    shop: Client,
    fake: FakeStripe,
    pg: asyncpg.Pool,
    stripe_settings: Settings,
    aiohttp_client: Any,
) -> None:
    """Both processes confirm sales at once; each one's capture turn claims every capture owed
    (its own and the other's): the row lock makes each run exactly once, after its commit."""
    other: Client = await aiohttp_client(create_app(stripe_settings), cookie_jar=DummyCookieJar())
    ev = await create_event(shop, rate_per_min=60000)
    sales = [await start_sale(shop, fake, ev["id"], [f"A-{n // 10 + 1}-{n % 10 + 1}"])
             for n in range(16)]  # fmt: skip
    at_capture: list[str] = []

    async def look(request: Recorded) -> None:
        if request.path.endswith("/capture"):
            at_capture.append(await pg.fetchval(
                "SELECT status FROM orders WHERE payment_id = $1", request.path.split("/")[3]
            ))  # fmt: skip

    fake.on_request = look
    for sale in sales:
        fake.authorize(sale.intent_id)
    answers = await asyncio.gather(*(
        deliver((shop, other)[n % 2], fake, fake.event(AUTHORISED, sale.intent_id))
        for n, sale in enumerate(sales)
    ))  # fmt: skip
    assert [a["result"] for a in answers] == ["paid"] * len(sales)
    await captures_recorded(pg, *(sale.order_id for sale in sales))
    for sale in sales:
        assert fake.intents[sale.intent_id]["status"] == "succeeded"
        keys = [c.idempotency_key for c in fake.captures(sale.intent_id)]
        assert keys == [f"boxoffice-capture-{sale.order_id}"]
    assert at_capture == ["paid"] * len(sales)


async def test_a_capture_cut_off_by_a_crash_runs_again_after_restart_once_at_stripe(
    shop: Client,
    fake: FakeStripe,
    pg: asyncpg.Pool,
    stripe_settings: Settings,
    aiohttp_client: Any,
) -> None:
    """The sale is committed and its capture reaches Stripe, but the process stops before the
    answer comes back: the capture stays owed, and the restarted process runs it again under
    the same idempotency key, so Stripe captures the money once."""
    ev = await create_event(shop, rate_per_min=60000)
    sale = await start_sale(shop, fake, ev["id"], ["A-1-1", "A-1-2"])
    cut = asyncio.Event()

    async def hang(request: Recorded) -> None:
        if request.path.endswith("/capture") and not cut.is_set():
            await cut.wait()  # the answer never comes back to the first process

    fake.on_request = hang
    fake.authorize(sale.intent_id)
    paid = await deliver(shop, fake, fake.event(AUTHORISED, sale.intent_id))
    assert paid["result"] == "paid"  # answered at the commit; the capture turn runs after

    async def in_flight() -> bool:
        return len(fake.captures(sale.intent_id)) == 1

    await eventually(in_flight, "the capture turn reached Stripe")
    await shop.close()  # the process stops with its capture in flight
    cut.set()
    assert await owed_captures(pg, sale.order_id) == [(sale.order_id, False, 0)]
    assert (await order_row(pg, sale.order_id)).status == "paid"

    await aiohttp_client(create_app(stripe_settings))  # the restart

    async def captured() -> bool:
        return await owed_captures(pg, sale.order_id) == [(sale.order_id, True, 0)]

    await eventually(captured, "the restarted process ran the capture owed")
    captures = fake.captures(sale.intent_id)
    assert [c.replayed for c in captures] == [False, True]
    assert {c.idempotency_key for c in captures} == {f"boxoffice-capture-{sale.order_id}"}
    assert fake.intents[sale.intent_id]["amount_received"] == PRICE * 2


async def test_provider_reads_the_card_and_captures_the_intent_it_names_only(
    fake: FakeStripe, stripe_settings: Settings
) -> None:
    """The provider's raw requests (no StripeObject tree) read the confirming card's fingerprint
    and capture with the order's idempotency key; a payment id is one path segment, so an id
    with `/../` in it reaches no other intent (unquoted, the URL would normalise to the real
    intent's capture)."""
    provider = StripeProvider(stripe_settings)
    try:
        intent = await provider.create(
            order_id="o1", hold_id="h1", event_id="e1", amount=PRICE, currency="EUR"
        )
        assert intent is not None
        fake.authorize(intent.id, CARD)
        hostile = f"{intent.id}/../{intent.id}"
        with pytest.raises(PaymentError):
            await provider.capture(hostile, "o0")
        with pytest.raises(PaymentError):
            await provider.card_fingerprint(f"{intent.id}/capture")
        assert {r.status for r in fake.captures()} == {404}  # "No such payment_intent"
        assert fake.intents[intent.id]["status"] == "requires_capture"
        assert await provider.card_fingerprint(intent.id) == fake.fingerprint(CARD)
        await provider.capture(intent.id, "o1")
    finally:
        await provider.close()
    capture = fake.captures()[-1]
    assert (capture.idempotency_key, capture.status) == ("boxoffice-capture-o1", 200)
    assert fake.intents[intent.id]["status"] == "succeeded"
