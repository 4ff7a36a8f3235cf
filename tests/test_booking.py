"""Seats, holds, checkout and the dev provider through the real app, Redis and PostgreSQL."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from .helpers import admitted_headers, create_event, visitor

Client = TestClient[Any, Any]


async def test_journey_hold_checkout_pay_tickets(fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_headers(fans, ev["id"])
    seat_map = await (await fans.get(f"/api/events/{ev['id']}/seats")).json()
    assert seat_map["sections"][0]["rows"][0]["seats"][0]["status"] == "free"
    held = await fans.post(
        f"/api/events/{ev['id']}/holds", json={"seats": ["A-1-1", "A-1-2"]}, headers=fan
    )
    assert held.status == 201, await held.text()
    hold = await held.json()
    assert hold["amount"] == 10000 and hold["currency"] == "EUR"
    seat_map = await (await fans.get(f"/api/events/{ev['id']}/seats")).json()
    statuses = {s["id"]: s["status"] for s in seat_map["sections"][0]["rows"][0]["seats"]}
    assert statuses["A-1-1"] == "held" and statuses["A-1-3"] == "free"
    checkout = await fans.post(
        f"/api/holds/{hold['hold_id']}/checkout", json={"email": "fan@example.com"}, headers=fan
    )
    assert checkout.status == 201, await checkout.text()
    order = await checkout.json()
    assert order["status"] == "pending" and order["payment"]["provider"] == "dev"
    again = await (
        await fans.post(
            f"/api/holds/{hold['hold_id']}/checkout", json={"email": "fan@example.com"}, headers=fan
        )
    ).json()
    assert again["order_id"] == order["order_id"]
    paid = await fans.post(
        f"/api/orders/{order['order_id']}/pay", json={"card": "4242424242424242"}, headers=fan
    )
    assert paid.status == 200, await paid.text()
    body = await paid.json()
    assert body["status"] == "paid"
    assert sorted(t["seat_id"] for t in body["tickets"]) == ["A-1-1", "A-1-2"]
    seat_map = await (await fans.get(f"/api/events/{ev['id']}/seats")).json()
    statuses = {s["id"]: s["status"] for s in seat_map["sections"][0]["rows"][0]["seats"]}
    assert statuses["A-1-1"] == "sold" and statuses["A-1-2"] == "sold"


async def test_second_fan_finds_seats_taken(fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    first, second = await admitted_headers(fans, ev["id"]), await admitted_headers(fans, ev["id"])
    ok = await fans.post(f"/api/events/{ev['id']}/holds", json={"seats": ["A-2-5"]}, headers=first)
    assert ok.status == 201
    taken = await fans.post(
        f"/api/events/{ev['id']}/holds", json={"seats": ["A-2-5", "A-2-6"]}, headers=second
    )
    assert taken.status == 409
    body = await taken.json()
    assert body["error"] == "seats_unavailable" and body["seats"] == ["A-2-5"]
    free = await fans.post(
        f"/api/events/{ev['id']}/holds", json={"seats": ["A-2-6"]}, headers=second
    )
    assert free.status == 201


async def test_declined_card_fails_order_and_frees_seats(fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_headers(fans, ev["id"])
    hold = await (
        await fans.post(
            f"/api/events/{ev['id']}/holds", json={"section": "GA", "quantity": 3}, headers=fan
        )
    ).json()
    assert hold["amount"] == 3 * 3500
    order = await (
        await fans.post(
            f"/api/holds/{hold['hold_id']}/checkout", json={"email": "a@b.co"}, headers=fan
        )
    ).json()
    declined = await fans.post(
        f"/api/orders/{order['order_id']}/pay", json={"card": "4000000000000002"}, headers=fan
    )
    assert declined.status == 402
    status = await (await fans.get(f"/api/orders/{order['order_id']}", headers=fan)).json()
    assert status["status"] == "failed"
    seat_map = await (await fans.get(f"/api/events/{ev['id']}/seats")).json()
    ga = next(s for s in seat_map["sections"] if s["id"] == "GA")
    assert ga["available"] == 100


async def test_holds_need_a_valid_token(fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    other = await create_event(fans, rate_per_min=60000)
    fan = await admitted_headers(fans, ev["id"])
    url = f"/api/events/{ev['id']}/holds"
    body = {"seats": ["A-1-1"]}
    assert (await fans.post(url, json=body, headers=visitor())).status == 403
    garbage = {**fan, "Authorization": "Bearer garbage"}
    assert (await fans.post(url, json=body, headers=garbage)).status == 403
    stolen = {**visitor(), "Authorization": fan["Authorization"]}
    assert (await fans.post(url, json=body, headers=stolen)).status == 403
    wrong_event = await fans.post(f"/api/events/{other['id']}/holds", json=body, headers=fan)
    assert wrong_event.status == 403
    seat_map = await (await fans.get(f"/api/events/{ev['id']}/seats")).json()
    assert seat_map["sections"][0]["available"] == 50
