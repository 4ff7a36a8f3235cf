"""Seat state without scans, through the real app, Redis and PostgreSQL: the counters the hold
scripts keep equal a recount after hundreds of fans race for seats (holds, re-holds, releases,
purchases at once), every figure built on them agrees with the seat map, and the compact seat
map's deltas take a page from any version it saw to the seats as they are now."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core.keys import EventKeys

from .helpers import ADMIN, Fan, call, create_event, crowd

Client = TestClient[Any, Any]

SEATED = {"id": "A", "name": "Floor", "price": 5000, "rows": 6, "seats_per_row": 10}
STANDING = {"id": "GA", "name": "Standing", "price": 3500, "capacity": 40}
ALL_SEATS = [f"A-{r}-{n}" for r in range(1, 7) for n in range(1, 11)]
CODE = {"free": "f", "held": "h", "sold": "s"}


def txt(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def recount(redis: Redis, k: EventKeys) -> tuple[int, int]:
    """(held, sold) counted from the seats hash itself."""
    holders = [txt(h) for h in (await redis.hgetall(k.seats)).values()]
    sold = holders.count("sold")
    return len(holders) - sold, sold


async def counters(redis: Redis, k: EventKeys) -> tuple[int, int]:
    held, sold = await redis.hmget(k.seatcount, ["held", "sold"])
    return int(txt(held)), int(txt(sold))


async def full_map(client: Client, event_id: str) -> dict[str, Any]:
    status, seat_map = await call(client, "GET", f"/api/events/{event_id}/seats", {})
    assert status == 200, seat_map
    result: dict[str, Any] = seat_map
    return result


async def compact(client: Client, event_id: str, since: str | None = None) -> dict[str, Any]:
    query = f"?since={since}" if since is not None else ""
    status, body = await call(client, "GET", f"/api/events/{event_id}/seats/status{query}", {})
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def letters(seat_map: dict[str, Any]) -> dict[str, str]:
    """seat id -> status letter, as the full seat map says."""
    return {
        seat["id"]: CODE[seat["status"]]
        for section in seat_map["sections"]
        for row in section.get("rows") or []
        for seat in row["seats"]
    }


def unpack(answer: dict[str, Any]) -> dict[str, str]:
    """seat id -> status letter, from a full compact answer."""
    out: dict[str, str] = {}
    for section in answer["sections"]:
        if section["kind"] != "seated":
            continue
        assert len(section["status"]) == section["rows"] * section["seats_per_row"]
        for i, letter in enumerate(section["status"]):
            row, n = divmod(i, section["seats_per_row"])
            out[f"{section['id']}-{row + 1}-{n + 1}"] = letter
    return out


async def test_counters_equal_a_recount_after_hundreds_of_fans_race(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(
        fans, rate_per_min=60000, max_seats_per_order=4, sections=[SEATED, STANDING]
    )
    eid, k = ev["id"], EventKeys(ev["id"])
    people = await crowd(fans, eid, 200)

    async def fan(i: int, f: Fan) -> None:
        rng = random.Random(i)
        for _ in range(3):
            if rng.random() < 0.2:
                body: dict[str, Any] = {"section": "GA", "quantity": rng.randint(1, 3)}
            else:
                body = {"seats": rng.sample(ALL_SEATS, rng.randint(1, 3))}
            status, h = await f.hold(eid, body)
            assert status in (201, 409), h
            if status != 201:
                continue
            choice = rng.random()
            if choice < 0.25:
                assert (await f.call("DELETE", f"/api/holds/{h['hold_id']}"))[0] == 204
            elif choice < 0.45:
                status, order = await f.checkout(h["hold_id"])
                assert status == 201, order
                status, paid = await f.pay(order["order_id"])
                assert status == 200 and paid["status"] == "paid", paid
                return

    await asyncio.gather(*(fan(i, f) for i, f in enumerate(people)))

    held, sold = await recount(redis, k)
    assert await counters(redis, k) == (held, sold)
    assert held > 0 and sold > 0
    sold_pg = await pg.fetchval("SELECT count(*) FROM sold_seats WHERE event_id = $1", eid)
    assert sold == sold_pg
    # every figure made from the counters agrees with the seat map built from the seats
    seat_map = await full_map(fans, eid)
    status, listed = await call(fans, "GET", f"/api/events/{eid}", {})
    assert status == 200
    assert listed["available"] == seat_map["available"]
    status, stats = await call(fans, "GET", f"/api/admin/events/{eid}/stats", ADMIN)
    assert status == 200, stats
    statuses = list(letters(seat_map).values())
    ga = next(s for s in seat_map["sections"] if s["id"] == "GA")
    taken = statuses.count("h") + statuses.count("s") + 40 - ga["available"]
    assert stats["seats_held"] + stats["seats_sold"] == taken
    answer = await compact(fans, eid)
    assert unpack(answer) == letters(seat_map)
    assert answer["available"] == seat_map["available"]


async def test_compact_deltas_bring_a_page_up_to_date(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000, sections=[SEATED, STANDING])
    eid = ev["id"]
    first, second = await crowd(fans, eid, 2)

    start = await compact(fans, eid)
    assert start["since"] is None and start["changes"] is None
    assert set(unpack(start).values()) == {"f"}
    assert start["available"] == 60 + 40
    same = await compact(fans, eid, start["version"])
    assert same["since"] == start["version"] and same["changes"] == {}
    assert same["version"] == start["version"]
    assert all("status" not in s for s in same["sections"])

    status, h1 = await first.hold(eid, {"seats": ["A-1-1", "A-1-2"]})
    assert status == 201, h1
    status, h2 = await second.hold(eid, {"seats": ["A-6-10"]})
    assert status == 201, h2
    after = await compact(fans, eid, start["version"])
    assert after["changes"] == {"A-1-1": "held", "A-1-2": "held", "A-6-10": "held"}
    assert after["version"] != start["version"] and after["available"] == 97

    status, order = await first.checkout(h1["hold_id"])
    assert status == 201, order
    status, paid = await first.pay(order["order_id"])
    assert status == 200, paid
    assert (await second.call("DELETE", f"/api/holds/{h2['hold_id']}"))[0] == 204
    later = await compact(fans, eid, after["version"])
    assert later["changes"] == {"A-1-1": "sold", "A-1-2": "sold", "A-6-10": "free"}
    # from the first version straight to now: only what differs between the two
    assert (await compact(fans, eid, start["version"]))["changes"] == {
        "A-1-1": "sold",
        "A-1-2": "sold",
    }
    # applying the deltas to the first full answer gives the full answer of now
    page = unpack(start)
    for delta in (after, later):
        page.update({seat: CODE[s] for seat, s in delta["changes"].items()})
    assert page == unpack(await compact(fans, eid)) == letters(await full_map(fans, eid))

    # a version this process does not know: the full answer
    unknown = await compact(fans, eid, "0123456789abcdef")
    assert unknown["since"] is None and unknown["changes"] is None
    assert unpack(unknown) == page
    for bad in ("xyz", "0123456789ABCDEF", "0" * 17, "%00"):
        status, body = await call(fans, "GET", f"/api/events/{eid}/seats/status?since={bad}", {})
        assert status == 422 and body["error"] == "bad_version", (bad, body)
