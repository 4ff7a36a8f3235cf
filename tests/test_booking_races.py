"""Booking under real concurrency through the real app, Redis and PostgreSQL: many fans at once
over few seats, standing-section over-subscription, double checkouts, a Redis lost mid-sale,
two orders forced onto one seat, expiry and late payments, and bad input. Each race ends by
checking the ledger's invariants in PostgreSQL. Nothing sleeps for a fixed time: waits are
bounded polling loops."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.booking import relay
from server.core.clock import now_ms
from server.core.keys import EventKeys
from server.core.tokens import new_id

from .helpers import CARD_OK, Fan, call, create_event, crowd, eventually, visitor
from .helpers import admitted_fan as fan

Client = TestClient[Any, Any]

SEATED = {"id": "A", "name": "Floor", "price": 5000, "rows": 5, "seats_per_row": 10}
ALL_SEATS = [f"A-{r}-{n}" for r in range(1, 6) for n in range(1, 11)]


async def seat_statuses(client: Client, event_id: str) -> tuple[dict[str, str], dict[str, int]]:
    status, seat_map = await call(client, "GET", f"/api/events/{event_id}/seats", {})
    assert status == 200, seat_map
    seats: dict[str, str] = {}
    standing: dict[str, int] = {}
    for section in seat_map["sections"]:
        if section.get("rows"):
            for row in section["rows"]:
                seats.update({s["id"]: s["status"] for s in row["seats"]})
        else:
            standing[section["id"]] = section["available"]
    return seats, standing


def txt(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def live_holds(redis: Redis, event_id: str) -> dict[str, dict[str, Any]]:
    """hold_id -> stored record, for holds whose expiry is in the future."""
    k = EventKeys(event_id)
    raw: dict[Any, Any] = await redis.hgetall(k.holds)
    expiries: list[Any] = await redis.zrange(k.holdexp, 0, -1, withscores=True)
    now = now_ms()
    live = {txt(h) for h, e in expiries if e > now}
    return {txt(h): json.loads(r) for h, r in raw.items() if txt(h) in live}


async def hash_text(redis: Redis, key: str) -> dict[str, str]:
    raw: dict[Any, Any] = await redis.hgetall(key)
    return {txt(a): txt(b) for a, b in raw.items()}


async def check_ledger(pg: asyncpg.Pool, event_id: str) -> None:
    """The invariants: every paid order has its seats in sold_seats; no seat is in two paid
    orders; sold_seats holds only paid orders' seats; standing units sold equal the paid
    orders' quantities and never exceed capacity; every paid order has one ticket a unit."""
    paid_lines = await pg.fetch(
        "SELECT o.id, l.section_id, l.seat_id, l.quantity FROM orders o"
        " JOIN order_lines l ON l.order_id = o.id WHERE o.event_id = $1 AND o.status = 'paid'",
        event_id,
    )
    sold = {
        r["seat_id"]: r["order_id"]
        for r in await pg.fetch(
            "SELECT seat_id, order_id FROM sold_seats WHERE event_id = $1", event_id
        )
    }
    seat_lines = [(r["id"], r["seat_id"]) for r in paid_lines if r["seat_id"] is not None]
    twice = [seat for seat, n in Counter(s for _, s in seat_lines).items() if n > 1]
    assert twice == [], f"seats in two paid orders: {twice}"
    for order_id, seat in seat_lines:
        assert sold.get(seat) == order_id, (order_id, seat, sold.get(seat))
    assert set(sold) == {s for _, s in seat_lines}
    ga_paid: Counter[str] = Counter()
    for r in paid_lines:
        if r["seat_id"] is None:
            ga_paid[r["section_id"]] += r["quantity"]
    for r in await pg.fetch(
        "SELECT section_id, capacity, sold FROM ga_sales WHERE event_id = $1", event_id
    ):
        assert r["sold"] == ga_paid[r["section_id"]] <= r["capacity"], dict(r)
    tickets = await pg.fetch(
        "SELECT o.id, count(t.code) AS n, (SELECT sum(quantity) FROM order_lines l"
        " WHERE l.order_id = o.id) AS units FROM orders o LEFT JOIN tickets t ON t.order_id = o.id"
        " WHERE o.event_id = $1 AND o.status = 'paid' GROUP BY o.id",
        event_id,
    )
    for r in tickets:
        assert r["n"] == r["units"], dict(r)
    unpaid_tickets = await pg.fetchval(
        "SELECT count(*) FROM tickets t JOIN orders o ON o.id = t.order_id"
        " WHERE o.event_id = $1 AND o.status <> 'paid'",
        event_id,
    )
    assert unpaid_tickets == 0


async def paid_count(pg: asyncpg.Pool, event_id: str) -> int:
    n: int = await pg.fetchval(
        "SELECT count(*) FROM orders WHERE event_id = $1 AND status = 'paid'", event_id
    )
    return n


# ---- many fans, few seats ----------------------------------------------------------------------


async def test_500_concurrent_holds_never_share_a_seat_or_hold_partly(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000, max_seats_per_order=4, sections=[SEATED])
    eid = ev["id"]
    people = await crowd(fans, eid, 100)
    rng = random.Random(2024)
    asks = [(people[i % 100], sorted(rng.sample(ALL_SEATS, rng.randint(1, 4)))) for i in range(500)]
    results = await asyncio.gather(*(f.hold(eid, {"seats": s}) for f, s in asks))

    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] > 0 and statuses[409] > 0
    asked_by_hold: dict[str, list[str]] = {}
    winners: dict[str, set[str]] = {}
    for (f, seats), (status, body) in zip(asks, results, strict=True):
        if status == 201:
            assert sorted(body["seats"]) == seats  # exactly what was asked
            assert body["amount"] == 5000 * len(seats)
            asked_by_hold[body["hold_id"]] = seats
            winners.setdefault(f.visitor_id, set()).add(body["hold_id"])
        else:
            assert body["error"] == "seats_unavailable" and body["detail"]
            assert body["seats"] and set(body["seats"]) <= set(seats), (seats, body)

    k = EventKeys(eid)
    live = await live_holds(redis, eid)
    stored = await hash_text(redis, k.holds)
    assert set(stored) == set(live)  # nothing half-written, nothing expired
    # every hold in Redis came from a 201 with exactly the seats it asked for: a 409 left none
    assert set(live) <= set(asked_by_hold)
    for hold_id, record in live.items():
        assert sorted(record["s"]) == asked_by_hold[hold_id]
    # one live hold per visitor who ever won one, and it is one of that visitor's wins
    vhold = await hash_text(redis, k.vhold)
    assert set(vhold) == set(winners)
    for vid, hold_id in vhold.items():
        assert hold_id in winners[vid] and live[hold_id]["v"] == vid
    assert len(live) == len(winners)
    # no seat in two live holds; the seats hash says exactly the same
    held = Counter(seat for record in live.values() for seat in record["s"])
    assert [s for s, n in held.items() if n > 1] == []
    owner = {seat: h for h, record in live.items() for seat in record["s"]}
    assert await hash_text(redis, k.seats) == owner

    async def map_agrees() -> bool:
        seats, _ = await seat_statuses(fans, eid)
        return {s for s, st in seats.items() if st == "held"} == set(owner) and all(
            st != "sold" for st in seats.values()
        )

    await eventually(map_agrees)

    # every fan checks out every hold it won at once: only the surviving ones become orders
    by_fan = {f.visitor_id: f for f in people}
    tries = [(by_fan[vid], h) for vid, hs in winners.items() for h in hs]
    outs = await asyncio.gather(*(f.checkout(h) for f, h in tries))
    orders = []
    for (f, hold_id), (status, body) in zip(tries, outs, strict=True):
        if hold_id in live:
            assert status == 201, body
            orders.append((f, body["order_id"]))
        else:
            assert status == 410 and body["error"] == "hold_expired", body
    paid = await asyncio.gather(*(f.pay(o) for f, o in orders))
    assert all(status == 200 and body["status"] == "paid" for status, body in paid), paid
    sold = {r["seat_id"] for r in await pg.fetch("SELECT seat_id FROM sold_seats")}
    assert sold == set(owner)
    assert await paid_count(pg, eid) == len(live)
    await check_ledger(pg, eid)


async def test_standing_oversubscription_never_exceeds_capacity(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    capacity = 20
    section = {"id": "GA", "name": "Standing", "price": 3500, "capacity": capacity}
    ev = await create_event(fans, rate_per_min=60000, max_seats_per_order=4, sections=[section])
    eid = ev["id"]
    people = await crowd(fans, eid, 40)
    rng = random.Random(7)
    asks = [(people[i % 40], rng.randint(1, 4)) for i in range(80)]
    results = await asyncio.gather(
        *(f.hold(eid, {"section": "GA", "quantity": q}) for f, q in asks)
    )
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] > 0 and statuses[409] > 0
    asked: dict[str, int] = {}
    for (_, quantity), (status, body) in zip(asks, results, strict=True):
        if status == 201:
            assert body["quantity"] == quantity and body["amount"] == 3500 * quantity
            asked[body["hold_id"]] = quantity
        else:
            assert body["error"] == "seats_unavailable" and body["section"] == "GA"
            assert 0 <= body["available"] < quantity
    k = EventKeys(eid)
    live = await live_holds(redis, eid)
    held = sum(record["g"]["GA"] for record in live.values())
    assert held <= capacity
    assert all(record["g"]["GA"] == asked[h] for h, record in live.items())
    assert int(await redis.hget(k.gaheld, "GA") or 0) == held

    # every holder checks out and pays at once
    owners = {f.visitor_id: f for f in people}

    async def purchase(hold_id: str, record: dict[str, Any]) -> tuple[int, Any]:
        f = owners[record["v"]]
        status, order = await f.checkout(hold_id)
        assert status == 201, order
        return await f.pay(order["order_id"])

    paid = await asyncio.gather(*(purchase(h, r) for h, r in live.items()))
    assert all(status == 200 and body["status"] == "paid" for status, body in paid), paid
    sold: int = await pg.fetchval("SELECT sold FROM ga_sales WHERE event_id = $1", eid)
    quantities = await pg.fetchval(
        "SELECT coalesce(sum(l.quantity), 0) FROM orders o JOIN order_lines l"
        " ON l.order_id = o.id WHERE o.event_id = $1 AND o.status = 'paid'",
        eid,
    )
    assert sold == quantities == held <= capacity
    await check_ledger(pg, eid)

    async def redis_agrees() -> bool:
        _, standing = await seat_statuses(fans, eid)
        gasold = int(await redis.hget(k.gasold, "GA") or 0)
        return gasold == sold and standing["GA"] == capacity - sold

    await eventually(redis_agrees)


async def test_same_hold_checked_out_and_paid_twice_at_once(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    eid = ev["id"]
    f = await fan(fans, eid)
    status, h = await f.hold(eid, {"seats": ["A-3-3", "A-3-4"]})
    assert status == 201
    outs = await asyncio.gather(*(f.checkout(h["hold_id"]) for _ in range(6)))
    assert all(status == 201 for status, _ in outs), outs
    assert len({body["order_id"] for _, body in outs}) == 1
    n = await pg.fetchval("SELECT count(*) FROM orders WHERE hold_id = $1", h["hold_id"])
    assert n == 1
    order_id = outs[0][1]["order_id"]
    paid = await asyncio.gather(*(f.pay(order_id) for _ in range(4)))
    assert all(status == 200 and body["status"] == "paid" for status, body in paid), paid
    assert all(sorted(t["seat_id"] for t in b["tickets"]) == ["A-3-3", "A-3-4"] for _, b in paid)
    assert await pg.fetchval("SELECT count(*) FROM tickets WHERE order_id = $1", order_id) == 2
    assert await pg.fetchval("SELECT count(*) FROM sold_seats WHERE event_id = $1", eid) == 2
    await check_ledger(pg, eid)


# ---- PostgreSQL is the final arbiter -----------------------------------------------------------


async def test_redis_flushed_mid_sale_is_rebuilt_from_postgres(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    eid = ev["id"]
    people = await crowd(fans, eid, 6)
    await asyncio.gather(
        people[0].buy(eid, {"seats": ["A-1-1", "A-1-2"]}),
        people[1].buy(eid, {"seats": ["A-1-3"]}),
        people[2].buy(eid, {"section": "GA", "quantity": 3}),
    )
    status, pending_hold = await people[3].hold(eid, {"seats": ["A-2-1"]})
    assert status == 201
    status, pending = await people[3].checkout(pending_hold["hold_id"])
    assert status == 201 and pending["status"] == "pending"
    status, _ = await people[4].hold(eid, {"seats": ["A-3-1"]})
    assert status == 201

    # the outbox relay has published and consumed the three sales before Redis is lost
    k = EventKeys(eid)

    async def three_consumed() -> bool:
        return await relay_caught_up(redis, pg, k, 3)

    await eventually(three_consumed)
    await redis.flushall()

    async def rebuilt() -> bool:
        seats, standing = await seat_statuses(fans, eid)
        return [seats[s] for s in ("A-1-1", "A-1-2", "A-1-3", "A-2-1", "A-3-1")] == [
            "sold",
            "sold",
            "sold",
            "held",
            "free",
        ] and standing["GA"] == 97

    await eventually(rebuilt)
    # a visitor admitted before the flush lost the session with it
    status, body = await people[5].hold(eid, {"seats": ["A-4-1"]})
    assert status == 410 and body["error"] == "session_over", body
    # a fan admitted afterwards cannot hold what PostgreSQL sold or a pending order owns
    late = await fan(fans, eid)
    for seats in (["A-1-1"], ["A-1-2", "A-4-4"], ["A-1-3"], ["A-2-1"]):
        status, body = await late.hold(eid, {"seats": seats})
        assert status == 409 and body["error"] == "seats_unavailable", body
        assert body["seats"] == [s for s in seats if s != "A-4-4"]
    status, body = await late.hold(eid, {"section": "GA", "quantity": 4})
    assert status == 201, body
    status, body = await late.hold(eid, {"seats": ["A-3-1"]})  # the lost hold's seat
    assert status == 201, body
    # the pending order's restored hold is honoured when it is paid
    status, paid = await people[3].pay(pending["order_id"])
    assert status == 200 and paid["status"] == "paid", paid
    sold = [r["seat_id"] for r in await pg.fetch("SELECT seat_id FROM sold_seats")]
    assert sorted(sold) == ["A-1-1", "A-1-2", "A-1-3", "A-2-1"]
    assert await paid_count(pg, eid) == 4
    await check_ledger(pg, eid)

    # the outbox relay keeps working on the rebuilt Redis: the new reservation is consumed

    async def one_consumed() -> bool:
        return await relay_caught_up(redis, pg, k, 1)

    await eventually(one_consumed)
    assert await redis.xlen(k.reservations) == 1


async def test_two_orders_forced_onto_one_seat_postgres_refuses_the_second(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    capacity = 4
    sections = [SEATED, {"id": "GA", "name": "Standing", "price": 3500, "capacity": capacity}]
    ev = await create_event(fans, rate_per_min=60000, sections=sections)
    eid = ev["id"]
    k = EventKeys(eid)
    first, second = await crowd(fans, eid, 2)
    paid_seat = await first.buy(eid, {"seats": ["A-1-1", "A-1-2"]})
    status, h = await second.hold(eid, {"section": "GA", "quantity": capacity})
    assert status == 201
    status, order = await second.checkout(h["hold_id"])
    paid_ga = (await second.pay(order["order_id"]))[1]
    assert paid_ga["status"] == "paid"
    # The relay re-applies each paid order to Redis from the outbox; let it finish first, or
    # it could put the sales back after the loss below

    async def relayed() -> bool:
        return await relay_caught_up(redis, pg, k, 2)

    await eventually(relayed, "the relay applied both orders")

    # Redis is lost and comes back wrong: seat state marked built, but nothing sold in it
    async with redis.pipeline(transaction=True) as pipe:
        pipe.flushall()
        pipe.hset(k.inventory, "built_ms", now_ms())
        pipe.hset(k.gacap, "GA", capacity)
        await pipe.execute()
    third, fourth = await crowd(fans, eid, 2)
    status, h3 = await third.hold(eid, {"seats": ["A-1-2", "A-1-3"]})
    assert status == 201, h3  # Redis is wrong and lets it through
    status, o3 = await third.checkout(h3["hold_id"])
    assert status == 201
    status, h4 = await fourth.hold(eid, {"section": "GA", "quantity": 2})
    assert status == 201, h4
    status, o4 = await fourth.checkout(h4["hold_id"])
    assert status == 201
    results = await asyncio.gather(third.pay(o3["order_id"]), fourth.pay(o4["order_id"]))
    for status, body in results:
        assert status == 200, body
        assert body["status"] == "voided" and body["status_reason"] == "seats_taken", body
        assert body["tickets"] == []
    for f, o in ((third, o3), (fourth, o4)):
        status, body = await call(fans, "GET", f"/api/orders/{o['order_id']}", f)
        assert status == 200 and body["status"] == "voided"
    # the first orders stay paid and keep their seats
    for f, o in ((first, paid_seat), (second, paid_ga)):
        status, body = await call(fans, "GET", f"/api/orders/{o['order_id']}", f)
        assert status == 200 and body["status"] == "paid" and body["tickets"]
    sold = dict(
        (r["seat_id"], r["order_id"])
        for r in await pg.fetch("SELECT seat_id, order_id FROM sold_seats WHERE event_id = $1", eid)
    )
    assert sold == {"A-1-1": paid_seat["order_id"], "A-1-2": paid_seat["order_id"]}
    assert await pg.fetchval("SELECT sold FROM ga_sales WHERE event_id = $1", eid) == capacity
    assert await paid_count(pg, eid) == 2
    await check_ledger(pg, eid)


# ---- expiry and late payments ------------------------------------------------------------------


async def expire(redis: Redis, event_id: str, hold_id: str) -> None:
    """Move a hold's expiry into the past, as if its minutes had run out."""
    await redis.zadd(EventKeys(event_id).holdexp, {hold_id: now_ms() - 1000})


async def test_expired_hold_frees_its_seats_for_others(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    eid = ev["id"]
    first, second = await crowd(fans, eid, 2)
    status, _ = await first.hold(eid, {"seats": ["A-1-5", "A-1-6"]})
    assert status == 201
    status, body = await second.hold(eid, {"seats": ["A-1-5"]})
    assert status == 409 and body["seats"] == ["A-1-5"]
    status, g1 = await first.hold(eid, {"seats": ["A-1-5", "A-1-6"]})
    assert status == 201  # re-holding the same seats replaces the first hold
    await expire(redis, eid, g1["hold_id"])
    status, h2 = await second.hold(eid, {"seats": ["A-1-5"]})
    assert status == 201, h2
    status, body = await first.checkout(g1["hold_id"])
    assert status == 410 and body["error"] == "hold_expired", body
    assert await pg.fetchval("SELECT count(*) FROM orders WHERE event_id = $1", eid) == 0

    async def shown() -> bool:
        seats, _ = await seat_statuses(fans, eid)
        return seats["A-1-5"] == "held" and seats["A-1-6"] == "free"

    await eventually(shown)
    await first.buy(eid, {"seats": ["A-1-6"]})
    await check_ledger(pg, eid)


async def test_late_payment_honoured_if_seats_free_voided_if_taken(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    eid = ev["id"]
    first, second, third = await crowd(fans, eid, 3)

    # honoured: the hold expired but nobody took the seat
    status, h = await first.hold(eid, {"seats": ["A-2-5"]})
    assert status == 201
    status, order = await first.checkout(h["hold_id"])
    assert status == 201
    await expire(redis, eid, h["hold_id"])
    status, paid = await first.pay(order["order_id"])
    assert status == 200 and paid["status"] == "paid", paid
    assert [t["seat_id"] for t in paid["tickets"]] == ["A-2-5"]

    # voided: the hold expired and someone else holds the seat now
    status, h = await second.hold(eid, {"seats": ["A-2-6", "A-2-7"]})
    assert status == 201
    status, order = await second.checkout(h["hold_id"])
    assert status == 201
    await expire(redis, eid, h["hold_id"])
    status, other = await third.hold(eid, {"seats": ["A-2-7"]})
    assert status == 201, other
    status, voided = await second.pay(order["order_id"])
    assert status == 200, voided
    assert voided["status"] == "voided" and voided["status_reason"] == "seats_taken"
    # the newcomer's hold is untouched and can be bought; the free seat A-2-6 stayed free
    status, o3 = await third.checkout(other["hold_id"])
    assert status == 201
    status, p3 = await third.pay(o3["order_id"])
    assert status == 200 and p3["status"] == "paid"
    k = EventKeys(eid)
    assert await redis.hget(k.seats, "A-2-6") is None
    sold = {r["seat_id"] for r in await pg.fetch("SELECT seat_id FROM sold_seats")}
    assert sold == {"A-2-5", "A-2-7"}
    await check_ledger(pg, eid)


# ---- bad input ---------------------------------------------------------------------------------


async def relay_caught_up(redis: Redis, pg: asyncpg.Pool, k: EventKeys, sales: int) -> bool:
    """The outbox relay published every row, and the event's stream holds `sales` sales, each
    delivered to the seat-sync group and acknowledged (the mailer reads the same stream in a
    group of its own)."""
    if await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
        return False
    if await redis.xlen(k.reservations) != sales:
        return False
    groups: list[dict[Any, Any]] = await redis.xinfo_groups(k.reservations)
    stream: dict[Any, Any] = await redis.xinfo_stream(k.reservations)
    seat_sync = [g for g in groups if txt(g["name"]) == relay.GROUP]
    return (
        len(seat_sync) == 1
        and seat_sync[0]["pending"] == 0
        and txt(seat_sync[0]["last-delivered-id"]) == txt(stream["last-generated-id"])
    )


async def state_of(redis: Redis, pg: asyncpg.Pool, event_ids: list[str]) -> dict[str, Any]:
    """Everything booking writes, in Redis and PostgreSQL."""
    out: dict[str, Any] = {}
    for eid in event_ids:
        k = EventKeys(eid)
        for key in [*k.hold_keys(), k.sold_orders, k.inventory]:
            kind = txt(await redis.type(key))
            if kind == "hash":
                out[key] = await hash_text(redis, key)
            elif kind == "zset":
                out[key] = await redis.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                out[key] = sorted(await redis.smembers(key))
            else:
                out[key] = kind
    for table in ("orders", "order_lines", "sold_seats", "tickets", "ga_sales", "payment_actions"):
        rows = await pg.fetch(f"SELECT * FROM {table}")
        out[table] = sorted(json.dumps(dict(r), default=str, sort_keys=True) for r in rows)
    return out


async def test_bad_input_is_refused_and_changes_nothing(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000, max_seats_per_order=4)
    other = await create_event(fans, rate_per_min=60000)
    eid = ev["id"]
    owner, stranger = await crowd(fans, eid, 2)
    status, h = await owner.hold(eid, {"seats": ["A-1-1"]})
    assert status == 201
    status, order = await owner.checkout(h["hold_id"])
    assert status == 201
    status, spare = await stranger.hold(eid, {"seats": ["A-5-5"]})
    assert status == 201
    # The availability loop builds each live event's seat state within a second: wait for the
    # other event's, so that the snapshot below does not race it
    other_keys = EventKeys(other["id"])

    async def built() -> bool:
        return bool(await redis.exists(other_keys.inventory))

    await eventually(built, "the other event's seat state built")
    before = await state_of(redis, pg, [eid, other["id"]])

    holds = f"/api/events/{eid}/holds"
    no_token = visitor(owner.visitor_id)
    garbage = {**no_token, "Authorization": "Bearer garbage"}
    borrowed = {**visitor(), "Authorization": owner.headers["Authorization"]}
    hid, oid = h["hold_id"], order["order_id"]
    cases: list[tuple[str, str, Fan | dict[str, str], Any, int, str | None]] = [
        ("POST", holds, owner, {"seats": ["Z-1-1"]}, 422, "unknown_seats"),
        ("POST", holds, owner, {"seats": ["A-9-1"]}, 422, "unknown_seats"),
        ("POST", holds, owner, {"seats": ["A-1-11"]}, 422, "unknown_seats"),
        ("POST", holds, owner, {"seats": ["GA-1-1"]}, 422, "unknown_seats"),
        ("POST", holds, owner, {"seats": ["A-1-2", "nonsense"]}, 422, "unknown_seats"),
        ("POST", holds, owner, {"seats": ["A-1-2", "A-1-2"]}, 422, "duplicate_seats"),
        ("POST", holds, owner, {"seats": ALL_SEATS[10:15]}, 422, "too_many_seats"),
        ("POST", holds, owner, {"seats": ALL_SEATS[10:61]}, 422, None),
        ("POST", holds, owner, {"seats": []}, 422, "bad_hold"),
        ("POST", holds, owner, {"section": "GA", "quantity": 0}, 422, "bad_quantity"),
        ("POST", holds, owner, {"section": "GA", "quantity": -3}, 422, "bad_quantity"),
        ("POST", holds, owner, {"section": "GA"}, 422, "bad_quantity"),
        ("POST", holds, owner, {"section": "GA", "quantity": 5}, 422, "too_many_seats"),
        ("POST", holds, owner, {"section": "GA", "quantity": "2"}, 422, None),
        ("POST", holds, owner, {"section": "A", "quantity": 1}, 422, "unknown_section"),
        ("POST", holds, owner, {"section": "ZZ", "quantity": 1}, 422, "unknown_section"),
        ("POST", holds, owner, {"quantity": 2}, 422, "bad_hold"),
        ("POST", holds, owner, {"seats": ["A-1-2"], "section": "GA", "quantity": 1}, 422, "bad_hold"),
        ("POST", holds, owner, {"seats": "A-1-2"}, 422, None),
        ("POST", holds, owner, {"seat": ["A-1-2"]}, 422, None),
        ("POST", holds, owner, [1, 2], 422, None),
        ("POST", holds, owner, {}, 422, "bad_hold"),
        ("POST", holds, no_token, {"seats": ["A-1-2"]}, 403, "no_access"),
        ("POST", holds, garbage, {"seats": ["A-1-2"]}, 403, "bad_access"),
        ("POST", holds, borrowed, {"seats": ["A-1-2"]}, 403, "bad_access"),
        ("POST", f"/api/events/{other['id']}/holds", owner, {"seats": ["A-1-2"]}, 403, "bad_access"),
        ("POST", "/api/events/no-such-event/holds", owner, {"seats": ["A-1-2"]}, 404, None),
        ("POST", f"/api/holds/{spare['hold_id']}/checkout", owner, {"email": "a@b.co"}, 403, None),
        ("DELETE", f"/api/holds/{spare['hold_id']}", owner, None, 403, None),
        ("DELETE", f"/api/holds/{hid}", stranger, None, 403, None),
        ("POST", f"/api/holds/{hid}/checkout", owner, {"email": "not-an-email"}, 422, None),
        ("POST", f"/api/holds/{hid}/checkout", owner, {}, 422, None),
        ("POST", "/api/holds/garbage/checkout", owner, {"email": "a@b.co"}, 422, "bad_hold_id"),
        ("POST", "/api/holds/a.b.c/checkout", owner, {"email": "a@b.co"}, 422, "bad_hold_id"),
        ("DELETE", "/api/holds/garbage", owner, None, 422, "bad_hold_id"),
        ("DELETE", f"/api/holds/{eid}.{new_id()}", owner, None, 404, "hold_not_found"),
        ("POST", f"/api/holds/{eid}.{new_id()}/checkout", owner, {"email": "a@b.co"}, 410, None),
        ("GET", f"/api/orders/{oid}", stranger, None, 403, None),
        ("POST", f"/api/orders/{oid}/pay", stranger, {"card": CARD_OK}, 403, None),
        ("POST", f"/api/orders/{oid}/pay", owner, {"card": "1234"}, 422, "unknown_card"),
        ("POST", f"/api/orders/{oid}/pay", owner, {"card": 4242424242424242}, 422, None),
        ("GET", "/api/orders/garbage", owner, None, 404, "order_not_found"),
        ("GET", "/api/orders/" + "x" * 200, owner, None, 404, "order_not_found"),
        ("POST", "/api/orders/garbage/pay", owner, {"card": CARD_OK}, 404, "order_not_found"),
    ]  # fmt: skip
    for method, url, who, body, expected, code in cases:
        status, answer = await call(fans, method, url, who, body)
        assert status == expected, (method, url, body, status, answer)
        assert isinstance(answer, dict) and set(answer) >= {"error", "detail"}, answer
        assert isinstance(answer["detail"], str) and answer["detail"]
        if code is not None:
            assert answer["error"] == code, (url, body, answer)
    # raw bodies: not JSON, and no body at all
    for raw, expected in ((b"{not json", 400), (b"", 422)):
        response = await fans.post(
            holds, data=raw, headers={**owner.headers, "Content-Type": "application/json"}
        )
        answer = await response.json()
        assert response.status == expected and set(answer) >= {"error", "detail"}, answer
    assert await state_of(redis, pg, [eid, other["id"]]) == before
    await check_ledger(pg, eid)
