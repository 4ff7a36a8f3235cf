"""After the sale, through the real app, Redis and PostgreSQL (dev provider): orders opened from
their secret link on any device, refunds that put seats straight back on sale (and reopen a
sold-out queue), bulk cancels counted first, order search, resend requests, and check-in at the
door — each ticket admitted exactly once, a refunded one never."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.booking.checkins import ticket_of
from server.core import rules
from server.core.keys import EventKeys
from server.core.tokens import Signer, new_id

from .helpers import (
    ADMIN,
    SECRET,
    Fan,
    admitted_fan,
    call,
    checkin_token,
    create_event,
    eventually,
    visitor,
)

Client = TestClient[Any, Any]


# ---- rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "step"),
    [
        ("paid", "refund"),
        ("refunded", "already_refunded"),
        ("pending", "not_paid"),
        ("expired", "not_paid"),
        ("failed", "not_paid"),
        ("voided", "not_paid"),
    ],
)
def test_refund_step(status: str, step: str) -> None:
    assert rules.refund_step(status) == step


@pytest.mark.parametrize(
    ("sold_out", "closed", "returned", "reopens"),
    [
        (True, False, 1, True),
        (True, False, 0, False),
        (True, True, 3, False),
        (False, False, 2, False),
    ],
)
def test_reopens_after_return(sold_out: bool, closed: bool, returned: int, reopens: bool) -> None:
    assert rules.reopens_after_return(sold_out, closed, returned) is reopens


@pytest.mark.parametrize(
    ("ticket_event", "status", "checked_in", "result"),
    [
        ("ev", "paid", False, "admitted"),
        ("ev", "paid", True, "already_checked_in"),
        ("ev", "refunded", False, "ticket_refunded"),
        ("ev", "refunded", True, "ticket_refunded"),
        ("other", "paid", False, "wrong_event"),
        ("other", "refunded", False, "wrong_event"),
        (None, None, False, "invalid_ticket"),
    ],
)
def test_checkin_result(
    ticket_event: str | None, status: str | None, checked_in: bool, result: str
) -> None:
    assert rules.checkin_result("ev", ticket_event, status, checked_in) == result


def test_every_genuine_code_verifies_and_tampered_ones_do_not() -> None:
    signer = Signer(SECRET)
    other = Signer(SECRET + "-other")
    with_dash = 0
    for _ in range(3000):
        order_id, number = new_id(), 1 + int.from_bytes(new_id().encode()[:2]) % 40
        code = signer.ticket_code(order_id, number)
        with_dash += "-" in code[-16:]
        assert ticket_of(signer, code) == (order_id, number), code
        assert ticket_of(other, code) is None
        flipped = code[:-1] + ("A" if code[-1] != "A" else "B")
        assert ticket_of(signer, flipped) is None
        assert ticket_of(signer, code.replace(f"-{number}-", f"-{number + 1}-", 1)) is None
    assert with_dash > 300  # the codes a '-'-split parser refuses were among them
    for junk in ["", "abc", "-", "--", "x" * 500, "é-1-" + "A" * 16, "a-0-" + "A" * 16]:
        assert ticket_of(signer, junk) is None


# ---- helpers -------------------------------------------------------------------------------------


async def buy(fan: Fan, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return await fan.buy(event_id, body)


async def refund(client: Client, order_id: str, reason: str | None = None) -> tuple[int, Any]:
    body = {"reason": reason} if reason else None
    return await call(client, "POST", f"/api/admin/orders/{order_id}/refund", ADMIN, body)


async def door(client: Client, event_id: str, code: str) -> tuple[int, Any]:
    return await call(client, "POST", f"/api/events/{event_id}/checkins", ADMIN, {"code": code})


async def seat_status(client: Client, event_id: str, seat: str) -> str:
    _, seat_map = await call(client, "GET", f"/api/events/{event_id}/seats", visitor())
    for section in seat_map["sections"]:
        for row in section.get("rows") or []:
            for s in row["seats"]:
                if s["id"] == seat:
                    return str(s["status"])
    raise AssertionError(seat)


async def available(client: Client, event_id: str) -> int:
    _, ev = await call(client, "GET", f"/api/events/{event_id}", visitor())
    return int(ev["available"])


# ---- orders on any device --------------------------------------------------------------------


async def test_paid_order_opens_from_its_link_on_another_client_without_cookies(
    client: Client, fans: Client
) -> None:
    ev = await create_event(client, rate_per_min=60000)
    fan = await admitted_fan(fans, ev["id"])
    paid = await buy(fan, ev["id"], {"seats": ["A-1-1", "A-1-2"]})
    key, url = paid["order_key"], paid["order_url"]
    assert len(key) >= 22 and url == f"/orders/{paid['order_id']}?key={key}"
    path = f"/api/orders/{paid['order_id']}"

    # Another device: a client that sends no cookie at all.
    other = await client.get(f"{path}?key={key}", headers={"Cookie": ""})
    assert other.status == 200
    body = await other.json()
    assert body["status"] == "paid" and body["order_key"] == key
    assert [t["code"] for t in body["tickets"]] == [t["code"] for t in paid["tickets"]]
    svg = await client.get(f"{path}/tickets/2.svg?key={key}")
    assert svg.status == 200 and svg.content_type == "image/svg+xml"

    for wrong in [
        key[:-1] + ("A" if key[-1] != "A" else "B"),
        "",
        "x" * 300,
        "%C3%A9",
        "%ED%A0%80",
    ]:
        status, error = await call(fans, "GET", f"{path}?key={wrong}", visitor())
        assert status == 403 and error["error"] == "wrong_order_key", (wrong, error)
    # A wrong key is refused even to the owner's cookie; no key and no cookie: 403 as before.
    assert (await call(fans, "GET", f"{path}?key=nope", fan.headers))[0] == 403
    assert (await call(fans, "GET", path, visitor()))[0] == 403
    assert (await call(fans, "GET", f"{path}/tickets/1.svg?key=nope", visitor()))[0] == 403
    assert (await call(fans, "GET", f"/api/orders/{new_id()}?key={key}", visitor()))[0] == 404

    # The page itself is served to anyone; it reads the order with the key.
    page = await client.get(url)
    assert page.status == 200 and "order.js" in await page.text()


async def test_pending_order_has_no_key_and_event_page_knows_the_buyer(fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_fan(fans, ev["id"])
    _, held = await fan.hold(ev["id"], {"seats": ["A-2-1"]})
    _, pending = await fan.checkout(held["hold_id"])
    assert pending["order_key"] is None and pending["order_url"] is None
    path = f"/api/orders/{pending['order_id']}?key=anything"
    assert (await call(fans, "GET", path, visitor()))[0] == 403

    mine_url = f"/api/events/{ev['id']}/my-orders"
    assert (await fan.call("GET", mine_url)) == (200, [])
    _, paid = await fan.pay(pending["order_id"])
    status, mine = await fan.call("GET", mine_url)
    assert status == 200 and [o["order_url"] for o in mine] == [paid["order_url"]]
    assert await call(fans, "GET", mine_url, visitor()) == (200, [])
    assert (await call(fans, "GET", "/api/events/no-such-event/my-orders", visitor()))[0] == 404


async def test_resend_answers_202_whatever_the_email_and_records_a_request(
    client: Client, fans: Client, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_fan(fans, ev["id"])
    _, held = await fan.hold(ev["id"], {"seats": ["A-1-5"]})
    _, order = await fan.checkout(held["hold_id"], email="Buyer@Example.com")
    await fan.pay(order["order_id"])

    known = await call(
        fans, "POST", "/api/orders/resend", visitor(), {"email": "buyer@example.com"}
    )
    unknown = await call(
        fans, "POST", "/api/orders/resend", visitor(), {"email": "nobody@example.com"}
    )
    assert known == unknown == (202, {"accepted": True})
    rows = await pg.fetch("SELECT event_id, payload::text AS p FROM outbox WHERE kind = 'resend'")
    assert len(rows) == 1 and rows[0]["event_id"] == ev["id"]
    import json

    assert json.loads(rows[0]["p"]) == {
        "email": "buyer@example.com",
        "order_ids": [order["order_id"]],
    }

    bad = await call(fans, "POST", "/api/orders/resend", visitor(), {"email": "not-an-email"})
    assert bad[0] == 422
    # Per email: the third request in the window is the last one allowed.
    answers = [
        (await fans.post("/api/orders/resend", json={"email": "BUYER@example.com"})).status
        for _ in range(3)
    ]
    assert answers == [202, 202, 429]
    limited = await fans.post("/api/orders/resend", json={"email": "buyer@example.com"})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert (await limited.json())["error"] == "rate_limited"


# ---- refunds -------------------------------------------------------------------------------------


async def test_refund_frees_the_seat_a_second_buyer_gets_it_and_the_door_refuses_the_first(
    client: Client, fans: Client, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    first = await admitted_fan(fans, ev["id"])
    paid = await buy(first, ev["id"], {"seats": ["A-3-3"]})
    before = await available(fans, ev["id"])
    assert await seat_status(fans, ev["id"], "A-3-3") == "sold"

    status, refunded = await refund(fans, paid["order_id"], "fan asked")
    assert status == 200 and refunded["status"] == "refunded"
    assert refunded["status_reason"] == "fan asked"
    assert await seat_status(fans, ev["id"], "A-3-3") == "free"
    assert await available(fans, ev["id"]) == before + 1
    sold = await pg.fetchval("SELECT count(*) FROM sold_seats WHERE event_id = $1", ev["id"])
    assert sold == 0

    # Idempotent: the same order again, nothing more refunded or audited.
    again = await refund(fans, paid["order_id"], "twice")
    assert again[0] == 200 and again[1]["status"] == "refunded"
    assert again[1]["status_reason"] == "fan asked"
    audit = await pg.fetch(
        "SELECT who, action, field, note FROM audit_log WHERE event_id = $1 AND action = 'refund'",
        ev["id"],
    )
    assert [(r["field"], r["note"]) for r in audit] == [(f"order:{paid['order_id']}", "fan asked")]

    second = await admitted_fan(fans, ev["id"])
    bought = await buy(second, ev["id"], {"seats": ["A-3-3"]})
    assert await seat_status(fans, ev["id"], "A-3-3") == "sold"

    refused = await door(fans, ev["id"], paid["tickets"][0]["code"])
    assert refused[0] == 409 and refused[1]["error"] == "ticket_refunded"
    admitted = await door(fans, ev["id"], bought["tickets"][0]["code"])
    assert admitted[0] == 200 and admitted[1]["seat"] == "A-3-3"

    # The refunded order still opens from its link, as refunded.
    status, by_key = await call(
        fans, "GET", f"/api/orders/{paid['order_id']}?key={paid['order_key']}", visitor()
    )
    assert status == 200 and by_key["status"] == "refunded"
    svg = await fans.get(f"/api/orders/{paid['order_id']}/tickets/1.svg?key={paid['order_key']}")
    assert svg.status == 409


async def test_refund_of_standing_places_returns_them(
    client: Client, fans: Client, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_fan(fans, ev["id"])
    paid = await buy(fan, ev["id"], {"section": "GA", "quantity": 3})
    sold = "SELECT sold FROM ga_sales WHERE event_id = $1 AND section_id = 'GA'"
    assert await pg.fetchval(sold, ev["id"]) == 3

    async def ga_left() -> int:
        _, seat_map = await call(fans, "GET", f"/api/events/{ev['id']}/seats", visitor())
        return int(next(s for s in seat_map["sections"] if s["id"] == "GA")["available"])

    assert await eventually(lambda: _eq(ga_left(), 97), "GA sold in Redis")
    assert (await refund(fans, paid["order_id"]))[0] == 200
    assert await pg.fetchval(sold, ev["id"]) == 0
    assert await ga_left() == 100


async def _eq(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def test_refund_errors(client: Client, fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_fan(fans, ev["id"])
    _, held = await fan.hold(ev["id"], {"seats": ["A-4-4"]})
    _, pending = await fan.checkout(held["hold_id"])
    status, body = await refund(fans, pending["order_id"])
    assert status == 409 and body["error"] == "order_not_paid"
    assert (await refund(fans, new_id()))[0] == 404
    assert (await refund(fans, "x" * 100))[0] == 404
    no_admin = await call(client, "POST", f"/api/admin/orders/{pending['order_id']}/refund", {})
    assert no_admin[0] == 401
    bad = await call(
        client, "POST", f"/api/admin/orders/{pending['order_id']}/refund", ADMIN, {"reason": 5}
    )
    assert bad[0] == 422
    extra = await call(
        client, "POST", f"/api/admin/orders/{pending['order_id']}/refund", ADMIN, {"why": "x"}
    )
    assert extra[0] == 422


async def test_sold_out_sale_reopens_after_a_refund_and_a_new_fan_joins_and_buys(
    client: Client, fans: Client, pg: asyncpg.Pool
) -> None:
    sections = [{"id": "A", "name": "Floor", "price": 5000, "rows": 1, "seats_per_row": 2}]
    ev = await create_event(fans, rate_per_min=60000, sections=sections)
    first = await admitted_fan(fans, ev["id"])
    paid = await buy(first, ev["id"], {"seats": ["A-1-1", "A-1-2"]})

    async def state() -> str:
        _, body = await call(fans, "GET", f"/api/events/{ev['id']}", visitor())
        return str(body["state"])

    await eventually(lambda: _eq(state(), "sold_out"), "sold out", within=10)
    status, refused = await call(fans, "POST", f"/api/events/{ev['id']}/queue", visitor())
    assert status == 200 and refused["state"] == "sold_out" and refused["queue_id"] is None

    assert (await refund(fans, paid["order_id"], "bot order"))[0] == 200
    assert await state() == "on_sale"
    reopened = await pg.fetch(
        "SELECT who, field, old_value::text AS old, new_value::text AS new FROM audit_log"
        " WHERE event_id = $1 AND action = 'reopened'",
        ev["id"],
    )
    assert [(r["field"], r["old"], r["new"]) for r in reopened] == [("sold_out", "true", "false")]

    newcomer = await admitted_fan(fans, ev["id"])
    bought = await buy(newcomer, ev["id"], {"seats": ["A-1-2"]})
    assert bought["seats"] == ["A-1-2"]


# ---- bulk cancel and search --------------------------------------------------------------------


async def test_bulk_cancel_counts_first_then_cancels(
    client: Client, fans: Client, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    buyers = [await admitted_fan(fans, ev["id"]) for _ in range(3)]
    orders = [await buy(b, ev["id"], {"seats": [f"A-5-{i + 1}"]}) for i, b in enumerate(buyers)]
    ids = [o["order_id"] for o in orders]
    missing = new_id()
    url = "/api/admin/orders/cancel"
    body = {"order_ids": [*ids, missing, ids[0]], "reason": "bots"}

    status, plan = await call(client, "POST", f"{url}?dry_run=1", ADMIN, body)
    assert status == 200 and plan["count"] == 3
    assert plan["refundable"] == ids and plan["not_found"] == [missing]
    paid = await pg.fetchval("SELECT count(*) FROM orders WHERE status = 'paid'")
    assert paid == 3  # a dry run changes nothing

    stale = await call(client, "POST", url, ADMIN, {**body, "expected_count": 2})
    assert stale[0] == 409 and stale[1]["error"] == "count_changed" and stale[1]["count"] == 3
    status, done = await call(client, "POST", url, ADMIN, {**body, "expected_count": 3})
    assert status == 200 and done["refunded"] == ids and done["not_found"] == [missing]
    assert all(
        [await seat_status(fans, ev["id"], s) == "free" for s in ("A-5-1", "A-5-2", "A-5-3")]
    )
    status, after = await call(client, "POST", f"{url}?dry_run=1", ADMIN, body)
    assert after["count"] == 0 and after["already_refunded"] == ids
    audited = await pg.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'refund' AND note = 'bots'"
    )
    assert audited == 3
    for bad in [{"order_ids": []}, {"order_ids": ["x" * 65]}, {"order_ids": "a"}]:
        assert (await call(client, "POST", url, ADMIN, bad))[0] == 422
    assert (await call(client, "POST", f"{url}?dry_run=maybe", ADMIN, body))[0] == 422
    assert (await call(client, "POST", url, {}, body))[0] == 401


async def test_order_search_by_email_seat_code_event_and_id(client: Client, fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    other = await create_event(fans, rate_per_min=60000, id="other-show")
    a = await admitted_fan(fans, ev["id"])
    _, held = await a.hold(ev["id"], {"seats": ["A-1-7"]})
    _, order = await a.checkout(held["hold_id"], email="Alice@Example.com")
    _, paid = await a.pay(order["order_id"])
    b = await admitted_fan(fans, other["id"])
    elsewhere = await buy(b, other["id"], {"seats": ["A-1-7"]})

    async def search(query: str) -> list[str]:
        status, found = await call(client, "GET", f"/api/admin/orders?{query}", ADMIN)
        assert status == 200, found
        return [o["order_id"] for o in found]

    mine, theirs = paid["order_id"], elsewhere["order_id"]
    assert await search("email=alice@example.COM") == [mine]
    assert sorted(await search("seat=A-1-7")) == sorted([mine, theirs])
    assert await search(f"seat=A-1-7&event_id={other['id']}") == [theirs]
    assert await search(f"code={paid['tickets'][0]['code']}") == [mine]
    assert await search(f"order_id={theirs}") == [theirs]
    assert await search("email=nobody@example.com") == []
    _, found = await call(client, "GET", f"/api/admin/orders?order_id={mine}", ADMIN)
    assert found[0]["order_key"] == paid["order_key"] and found[0]["email"] == "Alice@Example.com"
    assert (await call(client, "GET", "/api/admin/orders?colour=red", ADMIN))[0] == 422
    assert (await call(client, "GET", f"/api/admin/orders?email={'x' * 300}", ADMIN))[0] == 422
    assert (await call(client, "GET", "/api/admin/orders?limit=0", ADMIN))[0] == 422
    assert (await call(client, "GET", "/api/admin/orders", {}))[0] == 401


# ---- check-in ------------------------------------------------------------------------------------


async def test_checkin_outcomes_counts_and_metrics(
    client: Client, fans: Client, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    other = await create_event(fans, rate_per_min=60000, id="other-door")
    fan = await admitted_fan(fans, ev["id"])
    paid = await buy(fan, ev["id"], {"seats": ["A-2-2", "A-2-3"]})
    code = paid["tickets"][0]["code"]

    status, body = await door(fans, ev["id"], code)
    assert status == 200, body
    assert body["result"] == "admitted" and body["seat"] == "A-2-2"
    assert body["order_id"] == paid["order_id"] and body["checked_in_at"]
    status, again = await door(fans, ev["id"], code)
    assert status == 409 and again["error"] == "already_checked_in"
    assert again["checked_in_at"] == body["checked_in_at"] and again["seat"] == "A-2-2"

    status, wrong = await door(fans, other["id"], paid["tickets"][1]["code"])
    assert status == 409 and wrong["error"] == "wrong_event"
    signer = Signer(SECRET)
    forged = [
        Signer(SECRET + "x").ticket_code(paid["order_id"], 1),  # another key's MAC
        signer.ticket_code(new_id(), 1),  # genuine MAC, no such ticket
        code[:-2], "", "hello", "x" * 400, "\u00e9" * 10, code + "-1",
    ]  # fmt: skip
    for bad in forged:
        status, refused = await door(fans, ev["id"], bad)
        assert status == 422 and refused["error"] == "invalid_ticket", (bad, refused)
    assert (await door(fans, ev["id"], "x" * 401))[0] == 422
    assert (await call(client, "POST", f"/api/events/{ev['id']}/checkins", ADMIN, {"code": 5}))[
        0
    ] == 422
    assert (await call(client, "POST", f"/api/events/{ev['id']}/checkins", {}, {"code": code}))[
        0
    ] == 401
    assert (await door(fans, "no-such-event", code))[0] == 404

    status, stats = await call(client, "GET", f"/api/admin/events/{ev['id']}/stats", ADMIN)
    assert stats["checked_in"] == 1 and stats["tickets_expected"] == 2
    logged = await pg.fetch(
        "SELECT result, count(*) AS n FROM checkin_log WHERE event_id = $1 GROUP BY result",
        ev["id"],
    )
    assert {r["result"]: r["n"] for r in logged} == {
        "admitted": 1, "already_checked_in": 1, "invalid_ticket": len(forged)
    }  # fmt: skip
    metrics = await (await fans.get("/metrics")).text()
    assert f'boxoffice_checkins_total{{event="{ev["id"]}",result="admitted"}} 1.0' in metrics
    assert f'boxoffice_checkins_total{{event="{other["id"]}",result="wrong_event"}} 1.0' in metrics


async def test_a_checkin_token_reads_the_door_events_and_counter_and_nothing_more(
    fans: Client,
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    closed = await create_event(fans, rate_per_min=60000, id="closed-door")
    closing = await call(
        fans, "PATCH", f"/api/admin/events/{closed['id']}", ADMIN, {"closed": True}
    )
    assert closing[0] == 200, closing
    fan = await admitted_fan(fans, ev["id"])
    paid = await buy(fan, ev["id"], {"seats": ["A-2-5", "A-2-6"]})
    door = {"Authorization": f"Bearer {await checkin_token(fans, 'door-staff')}"}

    status, events = await call(fans, "GET", "/api/admin/door/events", door)
    assert status == 200, events
    mine = {e["id"]: e for e in events}
    assert set(mine) == {ev["id"], closed["id"]}  # a closed sale's door still opens
    # What the door picks by, nothing of the sale (settings, sections, availability).
    assert mine[ev["id"]] == {
        "id": ev["id"],
        "name": ev["name"],
        "venue": ev["venue"],
        "starts_at": ev["starts_at"],
        "timezone": ev["timezone"],
    }
    counter = f"/api/events/{ev['id']}/checkins"
    assert await call(fans, "GET", counter, door) == (
        200, {"event_id": ev["id"], "checked_in": 0, "tickets_expected": 2}
    )  # fmt: skip
    status, scanned = await call(fans, "POST", counter, door, {"code": paid["tickets"][0]["code"]})
    assert (status, scanned["seat"]) == (200, "A-2-5"), scanned
    assert (await call(fans, "GET", counter, door))[1]["checked_in"] == 1
    assert (await call(fans, "GET", "/api/events/no-such-event/checkins", door))[0] == 404
    assert (await call(fans, "GET", counter, {}))[0] == 401
    assert (await call(fans, "GET", "/api/admin/door/events", {}))[0] == 401

    # Nothing else, read or write (every route and scope: tests/test_operators.py).
    admin_event = f"/api/admin/events/{ev['id']}"
    refused = [
        ("GET", "/api/admin/events", None),
        ("GET", admin_event, None),
        ("GET", f"{admin_event}/stats", None),
        ("GET", f"{admin_event}/audit", None),
        ("GET", f"/api/admin/orders?event_id={ev['id']}", None),
        ("PATCH", admin_event, {"paused": True}),
        ("PATCH", f"{admin_event}/seats", {"seats": ["A-1-1"], "accessible": True}),
        ("POST", f"/api/admin/orders/{paid['order_id']}/refund", None),
    ]
    for method, url, body in refused:
        status, answer = await call(fans, method, url, door, body)
        assert (status, answer["error"]) == (403, "forbidden"), (method, url, answer)
    status, order = await call(fans, "GET", f"/api/admin/orders?order_id={paid['order_id']}", ADMIN)
    assert order[0]["status"] == "paid"


async def test_concurrent_scans_of_one_code_admit_it_exactly_once(
    client: Client, fans: Client
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_fan(fans, ev["id"])
    paid = await buy(fan, ev["id"], {"seats": ["A-1-9"]})
    code = paid["tickets"][0]["code"]
    answers = await asyncio.gather(*(door(client, ev["id"], code) for _ in range(300)))
    statuses = [status for status, _ in answers]
    assert statuses.count(200) == 1
    assert statuses.count(409) == 299
    assert {body["error"] for status, body in answers if status == 409} == {"already_checked_in"}
    stamps = {body["checked_in_at"] for _, body in answers}
    assert len(stamps) == 1  # every refusal names the one admission


async def test_the_stream_consumer_returns_seats_when_the_fast_path_was_lost(
    fans: Client, pg: asyncpg.Pool, redis: Redis
) -> None:
    """The refund's outbox row reaches the `reservations` stream; its consumer frees the seats
    even if the process that refunded died before doing it itself."""
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_fan(fans, ev["id"])
    paid = await buy(fan, ev["id"], {"seats": ["A-4-1"]})
    await eventually(lambda: _eq(seat_status(fans, ev["id"], "A-4-1"), "sold"), "sold in Redis")
    status, _ = await refund(fans, paid["order_id"])
    assert status == 200
    row = await pg.fetchrow(
        "SELECT payload::text AS p, published_at FROM outbox WHERE kind = 'order_refunded'"
    )
    assert row is not None
    # As if the fast path had never run: the seat is sold again in Redis, the order not returned.
    k = EventKeys(ev["id"])
    await redis.hset(k.seats, "A-4-1", "sold")
    await redis.srem(k.returned_orders, paid["order_id"])
    await pg.execute(
        "INSERT INTO outbox (event_id, kind, payload) VALUES ($1, 'order_refunded', $2::jsonb)",
        ev["id"],
        row["p"],
    )
    await eventually(lambda: _eq(seat_status(fans, ev["id"], "A-4-1"), "free"), "consumer")


async def test_openapi_names_the_new_endpoints(fans: Client) -> None:
    doc = await (await fans.get("/api/openapi.json")).json()
    paths = doc["paths"]
    assert "post" in paths["/api/orders/resend"]
    assert "get" in paths["/api/events/{event_id}/my-orders"]
    assert "get" in paths["/api/admin/orders"]
    assert "post" in paths["/api/admin/orders/{order_id}/refund"]
    assert "post" in paths["/api/admin/orders/cancel"]
    assert set(paths["/api/events/{event_id}/checkins"]) >= {"get", "post"}
    assert "get" in paths["/api/admin/door/events"]
    schemas = doc["components"]["schemas"]
    assert {"Checkin", "BulkPlan", "BulkCancelResult", "CancelRequest"} <= set(schemas)
    assert {"DoorEvent", "DoorCount"} <= set(schemas)
    assert "order_url" in schemas["Order"]["properties"]
    assert "checked_in" in schemas["Stats"]["properties"]
