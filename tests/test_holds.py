"""The hold Lua scripts (hold, release_hold, extend_hold, sell, reap_holds, rebuild_inventory)
through server.inventory.Inventory on a real Redis. Time is driven through each script's now_ms
argument: nothing here sleeps, and minutes pass in a single call."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from server.booking.inventory import HoldResult, Inventory
from server.core import rules
from server.core.keys import EventKeys
from server.core.messages import EventCreate
from server.store import db

from .helpers import event_body

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: real-sized epoch milliseconds
HOLD_MS = 600_000  # ten minutes
SESSION_MS = 3_600_000
FAR = 4_102_444_800_000  # 2100-01-01: later than any real clock in these tests


@pytest.fixture
async def inv(redis: Redis) -> AsyncIterator[Inventory]:
    yield Inventory(redis)


async def ready(
    redis: Redis, event_id: str, gacap: dict[str, int] | None = None, sessions: int = 0
) -> EventKeys:
    """An event whose seat state was built (marker present) with these standing capacities,
    and admitted sessions v0..v<sessions-1> alive until FAR."""
    k = EventKeys(event_id)
    await redis.hset(k.inventory, "built_ms", T0)
    if gacap:
        await redis.hset(k.gacap, mapping=gacap)  # type: ignore[arg-type]
    for i in range(sessions):
        await redis.zadd(k.active, {qid(k, f"v{i}"): FAR})
    return k


def qid(k: EventKeys, visitor: str) -> str:
    return f"{k.event_id}.q-{visitor}"


async def hold(
    inv: Inventory,
    k: EventKeys,
    hold_id: str,
    visitor: str,
    seats: list[str],
    now: int = T0,
    section: str = "",
    quantity: int = 0,
    hold_ms: int = HOLD_MS,
    claim: bool = False,
) -> HoldResult:
    return await inv.hold(
        k, hold_id, visitor, qid(k, visitor), hold_ms, seats, section, quantity, claim, now_ms=now
    )


def txt(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def hash_text(redis: Redis, key: str) -> dict[str, str]:
    raw: dict[Any, Any] = await redis.hgetall(key)
    return {txt(a): txt(b) for a, b in raw.items()}


async def hold_state(redis: Redis, k: EventKeys) -> dict[str, Any]:
    """Everything the hold scripts write, for before/after comparisons."""
    expiries: list[Any] = await redis.zrange(k.holdexp, 0, -1, withscores=True)
    return {
        "seats": await hash_text(redis, k.seats),
        "holds": await hash_text(redis, k.holds),
        "holdexp": {txt(m): s for m, s in expiries},
        "vhold": await hash_text(redis, k.vhold),
        "gaheld": await hash_text(redis, k.gaheld),
        "gasold": await hash_text(redis, k.gasold),
        "sold_orders": sorted(txt(m) for m in await redis.smembers(k.sold_orders)),
        "active": sorted(txt(m) for m in await redis.zrange(k.active, 0, -1)),
    }


def seat_list(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(1, n + 1)]


# ---- all or nothing --------------------------------------------------------------------------


async def test_hold_is_all_or_nothing(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "aon", {"GA": 5}, sessions=3)
    first = await hold(inv, k, "h1", "v0", ["A-1-2"])
    assert first.status == "ok" and first.expires_ms == T0 + HOLD_MS and first.replaced == ""
    before = await hold_state(redis, k)

    # one seat of three is taken: none of the three is held
    taken = await hold(inv, k, "h2", "v1", ["A-1-1", "A-1-2", "A-1-3"], now=T0 + 1)
    assert taken.status == "unavailable" and taken.taken == ("A-1-2",)
    assert await hold_state(redis, k) == before

    # free assigned seats plus too many standing units: nothing either
    short = await hold(inv, k, "h3", "v1", ["A-1-1"], now=T0 + 2, section="GA", quantity=6)
    assert short.status == "ga_unavailable" and short.available == 5
    assert await hold_state(redis, k) == before

    # a sold seat is as taken as a held one, however late it is
    assert await inv.sell(k, "o1", "h1", qid(k, "v0"), ["A-1-2"])
    sold_before = await hold_state(redis, k)
    late = await hold(inv, k, "h4", "v2", ["A-1-2", "A-1-4"], now=FAR - 1)
    assert late.status == "unavailable" and late.taken == ("A-1-2",)
    assert await hold_state(redis, k) == sold_before

    # with every seat free the whole request is held, seats and standing units together
    ok = await hold(inv, k, "h5", "v1", ["A-1-1", "A-1-3"], now=T0 + 3, section="GA", quantity=5)
    assert ok.status == "ok"
    seats = await hash_text(redis, k.seats)
    assert seats == {"A-1-1": "h5", "A-1-3": "h5", "A-1-2": "sold"}
    assert await hash_text(redis, k.gaheld) == {"GA": "5"}
    record = json.loads((await hash_text(redis, k.holds))["h5"])
    assert record["v"] == "v1" and record["s"] == ["A-1-1", "A-1-3"] and record["g"] == {"GA": 5}
    assert record["q"] == qid(k, "v1") and record["x"] == 0


async def test_several_taken_seats_are_all_named(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "named", sessions=3)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1", "A-1-3"])).status == "ok"
    assert (await hold(inv, k, "h2", "v1", ["A-1-5"])).status == "ok"
    r = await hold(inv, k, "h3", "v2", ["A-1-1", "A-1-2", "A-1-3", "A-1-4", "A-1-5"])
    assert r.status == "unavailable" and r.taken == ("A-1-1", "A-1-3", "A-1-5")
    assert await redis.hget(k.vhold, "v2") is None


# ---- one live hold per visitor -----------------------------------------------------------------


async def test_rehold_replaces_the_old_hold_atomically(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "one", {"GA": 10}, sessions=2)
    first = await hold(inv, k, "h1", "v0", ["A-1-1", "A-1-2"], section="GA", quantity=3)
    assert first.status == "ok"
    r = await hold(inv, k, "h2", "v0", ["A-1-2", "A-1-3"], now=T0 + 1000)
    assert r.status == "ok" and r.replaced == "h1"
    state = await hold_state(redis, k)
    # A-1-1 freed, A-1-2 kept (now by h2), A-1-3 taken, standing units given back
    assert state["seats"] == {"A-1-2": "h2", "A-1-3": "h2"}
    assert set(state["holds"]) == {"h2"} and set(state["holdexp"]) == {"h2"}
    assert state["vhold"] == {"v0": "h2"}
    assert state["gaheld"] == {"GA": "0"}
    # the freed seat is holdable by someone else at once
    assert (await hold(inv, k, "h3", "v1", ["A-1-1"], now=T0 + 1001)).status == "ok"

    # a replacement that fails leaves the old hold exactly as it was
    before = await hold_state(redis, k)
    failed = await hold(inv, k, "h4", "v0", ["A-1-1", "A-1-4"], now=T0 + 1002)
    assert failed.status == "unavailable" and failed.taken == ("A-1-1",)
    assert await hold_state(redis, k) == before


async def test_visitor_never_has_two_live_holds(redis: Redis, inv: Inventory) -> None:
    """A random walk of re-holds by a few visitors over a few seats, time creeping forward."""
    rng = random.Random(11)
    k = await ready(redis, "walk", {"GA": 8}, sessions=4)
    pool = seat_list("A-1", 8)
    now = T0
    for step in range(300):
        now += rng.randrange(0, 40_000)
        visitor = f"v{rng.randrange(4)}"
        seats = rng.sample(pool, rng.randint(0, 3))
        quantity = rng.randint(0 if seats else 1, 3)
        await hold(inv, k, f"h{step}", visitor, seats, now=now, section="GA", quantity=quantity)
        state = await hold_state(redis, k)
        live = {h for h, e in state["holdexp"].items() if e > now}
        records = {h: json.loads(state["holds"][h]) for h in live}
        owners = [r["v"] for r in records.values()]
        assert len(owners) == len(set(owners)), (step, records)
        holders: dict[str, str] = {}
        for h, r in records.items():
            for seat in r["s"]:
                assert seat not in holders, (step, seat)
                holders[seat] = h
                assert state["seats"][seat] == h
        assert sum(r["g"].get("GA", 0) for r in records.values()) <= 8


# ---- expiry is a time comparison ---------------------------------------------------------------


async def test_expired_hold_is_free_without_any_reaper(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "exp", {"GA": 4}, sessions=2)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"], section="GA", quantity=4)).status == "ok"
    # one millisecond before expiry it still holds
    early = await hold(inv, k, "h2", "v1", ["A-1-1"], now=T0 + HOLD_MS - 1)
    assert early.status == "unavailable"
    early_ga = await hold(inv, k, "h2", "v1", [], now=T0 + HOLD_MS - 1, section="GA", quantity=1)
    assert early_ga.status == "ga_unavailable" and early_ga.available == 0
    # at the expiry instant it is over (live means expires_at > now); nothing was reaped
    assert await redis.zscore(k.holdexp, "h1") == T0 + HOLD_MS
    r = await hold(inv, k, "h2", "v1", ["A-1-1"], now=T0 + HOLD_MS, section="GA", quantity=4)
    assert r.status == "ok"
    assert await hash_text(redis, k.seats) == {"A-1-1": "h2"}
    assert await hash_text(redis, k.gaheld) == {"GA": "4"}
    assert await inv.extend(k, "h1", 60_000, now_ms=T0 + HOLD_MS) == 0
    # the expired owner's next hold replaces nothing live
    again = await hold(inv, k, "h3", "v0", ["A-1-2"], now=T0 + HOLD_MS + 1)
    assert again.status == "ok" and again.replaced == ""


async def test_expiry_needs_no_tidying_beyond_the_purge_limit(redis: Redis, inv: Inventory) -> None:
    """More expired holds than one call tidies (100): the last one's seat is still free to
    others by comparing its expiry, while its record has not been tidied yet."""
    k = await ready(redis, "many", sessions=151)
    for i in range(150):
        r = await hold(inv, k, f"h{i}", f"v{i}", [f"A-1-{i}"], now=T0 + i)
        assert r.status == "ok"
    now = T0 + HOLD_MS + 1000
    r = await hold(inv, k, "late", "v150", ["A-1-149", "A-1-0"], now=now)
    assert r.status == "ok", r
    seats = await hash_text(redis, k.seats)
    assert seats["A-1-149"] == "late" and seats["A-1-0"] == "late"
    # only the first 100 expired holds were tidied by that call; correctness did not need more
    assert await redis.zcard(k.holdexp) == 50 + 1  # h100..h149 untidied, and the new hold
    assert await redis.hget(k.holds, "h149") is not None
    # tidying h149 later leaves the seat with its new holder
    assert await inv.reap(k, now_ms=now) == 50
    assert (await hash_text(redis, k.seats))["A-1-149"] == "late"
    assert set(await hash_text(redis, k.holds)) == {"late"}


async def test_reap_holds_tidies_only_the_expired(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "reap", {"GA": 10}, sessions=5)
    for i in range(5):
        r = await hold(
            inv, k, f"h{i}", f"v{i}", [f"A-1-{i}"], now=T0 + i * 1000, section="GA", quantity=2
        )
        assert r.status == "ok"
    assert await inv.reap(k, now_ms=T0 + HOLD_MS - 1) == 0
    assert len(await hash_text(redis, k.holds)) == 5
    # h0, h1, h2 expire at T0+HOLD_MS, +1000, +2000; limit 2 tidies the two oldest
    assert await inv.reap(k, limit=2, now_ms=T0 + HOLD_MS + 2000) == 2
    state = await hold_state(redis, k)
    assert set(state["holds"]) == {"h2", "h3", "h4"}
    assert state["seats"] == {"A-1-2": "h2", "A-1-3": "h3", "A-1-4": "h4"}
    assert state["gaheld"] == {"GA": "6"}
    assert await inv.reap(k, now_ms=FAR) == 3
    state = await hold_state(redis, k)
    assert state["seats"] == {} and state["holds"] == {} and state["holdexp"] == {}
    assert state["vhold"] == {} and state["gaheld"] == {"GA": "0"}
    assert await inv.reap(k, now_ms=FAR) == 0


async def test_reaper_leaves_reheld_seats_alone(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "reheld", sessions=2)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"])).status == "ok"
    # v1 takes the seat after h1 expired; h1's record is tidied by the hold itself
    assert (await hold(inv, k, "h2", "v1", ["A-1-1"], now=T0 + HOLD_MS)).status == "ok"
    assert await inv.reap(k, now_ms=T0 + HOLD_MS + 1) == 0
    assert await hash_text(redis, k.seats) == {"A-1-1": "h2"}


# ---- standing sections -------------------------------------------------------------------------


async def test_ga_capacity_counts_sold_and_held(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "ga", {"GA": 10, "GB": 3}, sessions=4)
    assert (await hold(inv, k, "h1", "v0", [], section="GA", quantity=4)).status == "ok"
    assert (await hold(inv, k, "h2", "v1", [], section="GA", quantity=4)).status == "ok"
    r = await hold(inv, k, "h3", "v2", [], section="GA", quantity=3)
    assert r.status == "ga_unavailable" and r.available == 2
    # the owner's own previous hold counts as available: 10 - 8 + 4 = 6
    grow = await hold(inv, k, "h4", "v0", [], now=T0 + 1, section="GA", quantity=6)
    assert grow.status == "ok" and grow.replaced == "h1"
    assert await hash_text(redis, k.gaheld) == {"GA": "10"}
    too_many = await hold(inv, k, "h5", "v0", [], now=T0 + 2, section="GA", quantity=7)
    assert too_many.status == "ga_unavailable" and too_many.available == 6
    # a failed re-hold kept h4 whole
    assert await redis.hget(k.vhold, "v0") == b"h4"
    assert await hash_text(redis, k.gaheld) == {"GA": "10"}
    # another section is counted apart
    assert (await hold(inv, k, "h6", "v2", [], section="GB", quantity=3)).status == "ok"
    # selling h2 moves 4 from held to sold: still nothing left
    assert await inv.sell(k, "o2", "h2", qid(k, "v1"), [], "GA", 4)
    assert await hash_text(redis, k.gasold) == {"GA": "4"}
    assert (await hash_text(redis, k.gaheld))["GA"] == "6"
    none_left = await hold(inv, k, "h7", "v3", [], now=T0 + 3, section="GA", quantity=1)
    assert none_left.status == "ga_unavailable" and none_left.available == 0
    # h4 expires: its 6 come back, the 4 sold never do
    back = await hold(inv, k, "h8", "v3", [], now=T0 + 1 + HOLD_MS, section="GA", quantity=7)
    assert back.status == "ga_unavailable" and back.available == 6
    ok = await hold(inv, k, "h8", "v3", [], now=T0 + 1 + HOLD_MS, section="GA", quantity=6)
    assert ok.status == "ok"


async def test_ga_random_walk_never_oversells(redis: Redis, inv: Inventory) -> None:
    rng = random.Random(5)
    capacity = 12
    k = await ready(redis, "gawalk", {"GA": capacity}, sessions=8)
    now = T0
    orders = 0
    for step in range(400):
        now += rng.randrange(0, 60_000)
        visitor = f"v{rng.randrange(8)}"
        if rng.random() < 0.15:
            own = await redis.hget(k.vhold, visitor)
            if own is not None and (await redis.zscore(k.holdexp, own) or 0) > now:
                record = json.loads((await redis.hget(k.holds, own)) or b"{}")
                orders += 1
                await inv.sell(k, f"o{orders}", txt(own), qid(k, visitor), [], "GA",
                               record["g"].get("GA", 0))  # fmt: skip
                await redis.zadd(k.active, {qid(k, visitor): FAR})  # a new session
        else:
            quantity = rng.randint(1, 4)
            r = await hold(
                inv, k, f"h{step}", visitor, [], now=now, section="GA", quantity=quantity
            )
            assert r.status in ("ok", "ga_unavailable")
        state = await hold_state(redis, k)
        sold = int(state["gasold"].get("GA", 0))
        live = [json.loads(state["holds"][h]) for h, e in state["holdexp"].items() if e > now]
        held_live = sum(h["g"].get("GA", 0) for h in live)
        assert sold + held_live <= capacity, (step, sold, held_live)
        assert sold + int(state["gaheld"].get("GA", 0)) <= capacity
    assert orders > 0  # the walk did sell something


async def test_late_claim_counts_its_own_untidied_standing_units(
    redis: Redis, inv: Inventory
) -> None:
    """A late payment re-claims its expired hold. When more than one call's worth of expired
    holds lie ahead of it, its record is not tidied yet, and its own standing units must count
    as available to it, as they do for a visitor's re-hold."""
    k = await ready(redis, "lateclaim", {"GA": 10}, sessions=101)
    for i in range(100):  # older holds that expire first
        assert (await hold(inv, k, f"old{i}", f"v{i}", [f"A-1-{i}"], now=T0 + i)).status == "ok"
    r = await hold(inv, k, "paid", "v100", [], now=T0 + 1000, section="GA", quantity=10)
    assert r.status == "ok"
    now = T0 + 1000 + HOLD_MS + 1
    claim = await hold(inv, k, "paid", "v100", [], now=now, section="GA", quantity=10, claim=True)
    assert claim.status == "ok", claim
    assert await hash_text(redis, k.gaheld) == {"GA": "10"}
    assert await redis.zscore(k.holdexp, "paid") == now + HOLD_MS


# ---- sessions and readiness --------------------------------------------------------------------


async def test_no_session_when_the_admitted_session_is_over(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "sess")
    empty = await hold_state(redis, k)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"])).status == "no_session"
    await redis.zadd(k.active, {qid(k, "v0"): T0 + 5000})
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"], now=T0 + 5000)).status == "no_session"
    state = await hold_state(redis, k)
    assert state == {**empty, "active": [qid(k, "v0")]}
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"], now=T0 + 4999)).status == "ok"
    # claim mode (honouring a late payment) does not need the session
    late = await hold(inv, k, "h9", "nobody", ["A-1-9"], now=T0 + 9000, claim=True)
    assert late.status == "ok"
    assert await redis.hget(k.vhold, "nobody") is None  # a claim is no visitor's live hold


async def test_not_ready_until_seat_state_is_built(redis: Redis, inv: Inventory) -> None:
    k = EventKeys("cold")
    await redis.zadd(k.active, {qid(k, "v0"): FAR})
    r = await hold(inv, k, "h1", "v0", ["A-1-1"])
    assert r.status == "not_ready"
    claim = await hold(inv, k, "h1", "v0", ["A-1-1"], claim=True)
    assert claim.status == "not_ready"
    assert await redis.exists(k.seats, k.holds, k.holdexp, k.vhold, k.gaheld) == 0
    await redis.hset(k.inventory, "built_ms", T0)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"])).status == "ok"


# ---- extend, sell, release ---------------------------------------------------------------------


async def test_extend_hold_once_only(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "ext", sessions=1)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"])).status == "ok"
    assert await inv.extend(k, "nope", 900_000, now_ms=T0) == 0
    first = await inv.extend(k, "h1", 900_000, now_ms=T0 + 100_000)
    assert first == T0 + 1_000_000
    assert await redis.zscore(k.holdexp, "h1") == T0 + 1_000_000
    assert json.loads((await redis.hget(k.holds, "h1")) or b"{}")["x"] == 1
    # a second extension changes nothing
    assert await inv.extend(k, "h1", 900_000, now_ms=T0 + 500_000) == T0 + 1_000_000
    assert await redis.zscore(k.holdexp, "h1") == T0 + 1_000_000
    assert await inv.extend(k, "h1", 900_000, now_ms=T0 + 1_000_000) == 0
    record = await inv.read_hold(k, "h1")
    assert record is not None and record.extended and record.expires_ms == T0 + 1_000_000

    # extending never shortens a hold
    assert (await hold(inv, k, "h2", "v0", ["A-1-2"], now=T0 + 2_000_000)).status == "ok"
    assert await inv.extend(k, "h2", 1000, now_ms=T0 + 2_000_000) == T0 + 2_000_000 + HOLD_MS


@pytest.mark.parametrize(
    ("held_for", "checkout_at", "checkout_ms"),
    [(HOLD_MS, 100_000, 300_000), (HOLD_MS, 500_000, 300_000), (60_000, 59_000, 300_000),
     (HOLD_MS, 0, 900_000), (HOLD_MS, 599_999, 1)],
)  # fmt: skip
async def test_extension_applies_the_hold_policy(
    redis: Redis, inv: Inventory, held_for: int, checkout_at: int, checkout_ms: int
) -> None:
    """extend_hold.lua applies exactly the rule the hold policy states (server.core.rules)."""
    k = await ready(redis, f"pol-{checkout_at}-{checkout_ms}", sessions=1)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"], hold_ms=held_for)).status == "ok"
    policy = rules.HoldPolicy(hold_ms=held_for, checkout_ms=checkout_ms, late_payment_ms=0)
    extended = await inv.extend(k, "h1", policy.checkout_ms, now_ms=T0 + checkout_at)
    assert extended == policy.payment_window_ms(T0 + held_for, T0 + checkout_at)


async def test_sell_is_idempotent_per_order(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "sell", {"GA": 10}, sessions=2)
    r = await hold(inv, k, "h1", "v0", ["A-1-1", "A-1-2"], section="GA", quantity=3)
    assert r.status == "ok"
    assert await inv.sell(k, "o1", "h1", qid(k, "v0"), ["A-1-1", "A-1-2"], "GA", 3) is True
    after = await hold_state(redis, k)
    assert after["seats"] == {"A-1-1": "sold", "A-1-2": "sold"}
    assert after["holds"] == {} and after["holdexp"] == {} and after["vhold"] == {}
    assert after["gasold"] == {"GA": "3"} and after["gaheld"] == {"GA": "0"}
    assert after["sold_orders"] == ["o1"]
    assert after["active"] == [qid(k, "v1")]  # the buyer's session ended with the purchase
    # delivered twice: nothing changes
    assert await inv.sell(k, "o1", "h1", qid(k, "v0"), ["A-1-1", "A-1-2"], "GA", 3) is False
    assert await hold_state(redis, k) == after
    # sold seats stay sold for ever; the standing units sold are gone too
    r = await hold(inv, k, "h2", "v1", ["A-1-2"], now=FAR - 1)
    assert r.status == "unavailable" and r.taken == ("A-1-2",)
    r = await hold(inv, k, "h2", "v1", [], now=FAR - 1, section="GA", quantity=8)
    assert r.status == "ga_unavailable" and r.available == 7
    # a seat re-held by someone else after the hold expired is still marked sold by the sale
    # PostgreSQL confirmed (the arbiter decided; Redis follows)
    assert (await hold(inv, k, "h3", "v1", ["A-1-5"])).status == "ok"
    assert await inv.sell(k, "o2", "gone", qid(k, "v0"), ["A-1-5"]) is True
    assert (await hash_text(redis, k.seats))["A-1-5"] == "sold"


async def test_release_refuses_another_visitors_hold(redis: Redis, inv: Inventory) -> None:
    k = await ready(redis, "rel", {"GA": 5}, sessions=2)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1"], section="GA", quantity=2)).status == "ok"
    before = await hold_state(redis, k)
    assert await inv.release(k, "h1", "v1") == -1
    assert await hold_state(redis, k) == before
    assert await inv.release(k, "h1", "v0") == 1
    state = await hold_state(redis, k)
    assert state["seats"] == {} and state["holds"] == {} and state["vhold"] == {}
    assert state["gaheld"] == {"GA": "0"}
    assert await inv.release(k, "h1", "v0") == 0
    # without an owner to check (payment failed) any hold is released
    assert (await hold(inv, k, "h2", "v1", ["A-1-1"])).status == "ok"
    assert await inv.release(k, "h2") == 1
    assert await redis.hlen(k.seats) == 0


# ---- rebuilding from PostgreSQL ----------------------------------------------------------------


async def _event(pg: asyncpg.Pool, event_id: str, **overrides: Any) -> None:
    body = msgspec.convert(
        {**event_body(**overrides), "id": event_id}, EventCreate, strict=False
    )  # fmt: skip
    async with pg.acquire() as conn:
        opens = body.sale_starts_at - timedelta(minutes=30)
        assert await db.insert_event(conn, event_id, body, opens)


async def _order(
    pg: asyncpg.Pool,
    event_id: str,
    order_id: str,
    status: str,
    expires_at: datetime,
    seats: list[str] = [],  # noqa: B006
    ga: tuple[str, int] | None = None,
    visitor: str = "",
) -> str:
    """Write an order as the ledger would; a paid one takes its seats and standing units."""
    hold_id = f"{event_id}.hold-{order_id}"
    await pg.execute(
        "INSERT INTO orders (id, event_id, hold_id, visitor_id, queue_id, email, status, amount,"
        " currency, provider, expires_at, buyer)"
        " VALUES ($1,$2,$3,$4,$5,'a@b.co',$6,0,'EUR','dev',$7,'a@b.co')",
        order_id, event_id, hold_id, visitor or f"vis-{order_id}", f"{event_id}.q-{order_id}",
        status, expires_at,
    )  # fmt: skip
    lines: list[tuple[str, str | None, int]] = [(s.split("-")[0], s, 1) for s in seats]
    if ga is not None:
        lines.append((ga[0], None, ga[1]))
    await pg.executemany(
        "INSERT INTO order_lines (order_id, line_no, event_id, section_id, seat_id, quantity,"
        " price) VALUES ($1,$2,$3,$4,$5,$6,0)",
        [(order_id, i, event_id, sec, seat, q) for i, (sec, seat, q) in enumerate(lines)],
    )
    if status == "paid":
        await pg.executemany(
            "INSERT INTO sold_seats (event_id, seat_id, order_id) VALUES ($1,$2,$3)",
            [(event_id, s, order_id) for s in seats],
        )
        if ga is not None:
            await pg.execute(
                "UPDATE ga_sales SET sold = sold + $3 WHERE event_id = $1 AND section_id = $2",
                event_id, ga[0], ga[1],
            )  # fmt: skip
    return hold_id


async def test_rebuild_restores_sales_and_pending_holds(
    redis: Redis, pg: asyncpg.Pool, inv: Inventory
) -> None:
    await _event(pg, "rb")
    k = EventKeys("rb")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    past = datetime.now(UTC) - timedelta(minutes=5)
    await _order(pg, "rb", "paid1", "paid", soon, ["A-1-1", "A-1-2"], ("GA", 3))
    await _order(pg, "rb", "paid2", "paid", past, [], ("GA", 4))
    pending = await _order(pg, "rb", "pend", "pending", soon, ["A-2-1"], ("GA", 2), "fan")
    await _order(pg, "rb", "stale", "pending", past, ["A-2-2"])
    await _order(pg, "rb", "failed", "failed", soon, ["A-2-3"])

    assert await inv.rebuild(k, pg) == 1
    state = await hold_state(redis, k)
    assert state["seats"] == {"A-1-1": "sold", "A-1-2": "sold", "A-2-1": pending}
    assert state["gasold"] == {"GA": "7"} and state["gaheld"] == {"GA": "2"}
    assert await hash_text(redis, k.gacap) == {"GA": "100"}
    assert state["sold_orders"] == ["paid1", "paid2"]
    assert set(state["holds"]) == {pending}
    record = await inv.read_hold(k, pending)
    assert record is not None
    assert record.visitor_id == "fan" and record.seats == ("A-2-1",) and record.ga == {"GA": 2}
    assert record.expires_ms == int(soon.timestamp() * 1000)
    assert await redis.exists(k.inventory) == 1
    # built once: a second rebuild without force does nothing
    assert await inv.rebuild(k, pg) == -1

    # the seats PostgreSQL sold refuse holds; the rest is holdable
    await redis.zadd(k.active, {qid(k, "v0"): FAR})
    now = int(datetime.now(UTC).timestamp() * 1000)
    r = await hold(inv, k, "h1", "v0", ["A-1-1", "A-2-1", "A-2-2", "A-2-3"], now=now)
    assert r.status == "unavailable" and r.taken == ("A-1-1", "A-2-1")
    r = await hold(inv, k, "h1", "v0", [], now=now, section="GA", quantity=92)
    assert r.status == "ga_unavailable" and r.available == 91
    # the restored hold lets its pending order's late payment claim it
    claimed = await inv.hold(
        k, pending, "fan", "rb.q-pend", 60_000, ["A-2-1"], "GA", 2, claim=True, now_ms=now
    )
    assert claimed.status == "ok" and claimed.expires_ms == int(soon.timestamp() * 1000)


async def test_forced_rebuild_keeps_live_holds_unless_sold(
    redis: Redis, pg: asyncpg.Pool, inv: Inventory
) -> None:
    await _event(pg, "force")
    k = EventKeys("force")
    assert await inv.rebuild(k, pg) == 0
    now = int(datetime.now(UTC).timestamp() * 1000)
    for i in range(3):
        await redis.zadd(k.active, {qid(k, f"v{i}"): FAR})
    assert (await hold(inv, k, "live", "v0", ["A-3-1", "A-3-2"], now=now)).status == "ok"
    assert (await hold(inv, k, "ga", "v1", [], now=now, section="GA", quantity=5)).status == "ok"
    # meanwhile PostgreSQL sold A-3-2 (Redis did not hear of it) and a pending order owns A-3-3,
    # and another pending order wants A-3-1, which the live hold keeps
    soon = datetime.now(UTC) + timedelta(minutes=5)
    await _order(pg, "force", "o1", "paid", soon, ["A-3-2"])
    p1 = await _order(pg, "force", "p1", "pending", soon, ["A-3-3"])
    await _order(pg, "force", "p2", "pending", soon, ["A-3-1"])
    await _order(pg, "force", "p3", "pending", soon, [], ("GA", 96))
    assert await inv.rebuild(k, pg, force=True) == 1
    seats = await hash_text(redis, k.seats)
    assert seats == {"A-3-1": "live", "A-3-2": "sold", "A-3-3": p1}
    assert await hash_text(redis, k.gaheld) == {"GA": "5"}  # p3 did not fit beside the live 5
    assert await redis.hget(k.holds, "force.hold-p2") is None


async def test_ensure_rebuilds_after_flushall(
    redis: Redis, pg: asyncpg.Pool, inv: Inventory
) -> None:
    await _event(pg, "lost")
    k = EventKeys("lost")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    await _order(pg, "lost", "o1", "paid", soon, ["A-1-5"], ("GA", 10))
    await inv.ensure(k, pg)
    assert await redis.hget(k.seats, "A-1-5") == b"sold"
    await redis.flushall()
    await redis.zadd(k.active, {qid(k, "v0"): FAR})
    now = int(datetime.now(UTC).timestamp() * 1000)
    assert (await hold(inv, k, "h1", "v0", ["A-1-5"], now=now)).status == "not_ready"
    await inv.ensure(k, pg)
    r = await hold(inv, k, "h1", "v0", ["A-1-5"], now=now)
    assert r.status == "unavailable" and r.taken == ("A-1-5",)
    assert await hash_text(redis, k.gasold) == {"GA": "10"}


# ---- SCRIPT FLUSH and Redis TIME ---------------------------------------------------------------


async def exercise(redis: Redis, inv: Inventory, k: EventKeys, tag: str, now: int) -> None:
    r = await hold(inv, k, f"{tag}1", "v0", [f"B-{tag}-1"], now=now, section="GA", quantity=1)
    assert r.status == "ok", r
    assert await inv.extend(k, f"{tag}1", 60_000, now_ms=now) > now
    assert await inv.release(k, f"{tag}1", "v0") == 1
    assert (await hold(inv, k, f"{tag}2", "v0", [f"B-{tag}-2"], now=now)).status == "ok"
    assert await inv.sell(k, f"o-{tag}", f"{tag}2", qid(k, "v0"), [f"B-{tag}-2"])
    await redis.zadd(k.active, {qid(k, "v0"): FAR})
    assert (await hold(inv, k, f"{tag}3", "v0", [f"B-{tag}-3"], now=now)).status == "ok"
    assert await inv.reap(k, now_ms=now + HOLD_MS) == 1


async def test_hold_scripts_survive_script_flush(
    redis: Redis, pg: asyncpg.Pool, inv: Inventory
) -> None:
    await _event(pg, "sflush")
    k = EventKeys("sflush")
    await inv.rebuild(k, pg)
    await redis.zadd(k.active, {qid(k, "v0"): FAR})
    await exercise(redis, inv, k, "a", T0)
    await redis.script_flush()
    await exercise(redis, inv, k, "b", T0 + 1)
    # each wrapper alone reloads its own script
    await redis.script_flush()
    assert (await hold(inv, k, "c1", "v0", ["B-c-1"], now=T0 + 2)).status == "ok"
    await redis.script_flush()
    assert await inv.extend(k, "c1", 1, now_ms=T0 + 2) == T0 + 2 + HOLD_MS
    await redis.script_flush()
    assert await inv.release(k, "c1", "v1") == -1
    await redis.script_flush()
    assert await inv.sell(k, "o-c", "c1", qid(k, "v0"), ["B-c-1"])
    await redis.script_flush()
    assert await inv.reap(k, now_ms=FAR) == 0
    await redis.script_flush()
    assert await inv.rebuild(k, pg, force=True) == 0
    assert await redis.hget(k.seats, "B-c-1") is None  # not in PostgreSQL: Redis forgets it
    await redis.script_flush()
    assert (await inv.allow(k.rate("hold", "v0"), 2, 1000))[0]
    # and everything together once more after a last flush
    await redis.script_flush()
    await redis.zadd(k.active, {qid(k, "v0"): FAR})
    await exercise(redis, inv, k, "d", T0 + 3)


async def test_hold_scripts_use_redis_time_by_default(redis: Redis, inv: Inventory) -> None:
    k = EventKeys("clock")
    await redis.hset(k.inventory, "built_ms", 0)
    seconds, micros = await redis.time()
    before = seconds * 1000 + micros // 1000
    await redis.zadd(k.active, {qid(k, "v0"): before + 60_000})
    r = await inv.hold(k, "h1", "v0", qid(k, "v0"), HOLD_MS, ["A-1-1"])
    assert r.status == "ok" and before + HOLD_MS <= r.expires_ms < before + HOLD_MS + 60_000
    extended = await inv.extend(k, "h1", 2 * HOLD_MS)
    assert before + 2 * HOLD_MS <= extended < before + 2 * HOLD_MS + 60_000
    assert await inv.reap(k) == 0
    # a session that ended by Redis's clock refuses
    await redis.zadd(k.active, {qid(k, "v0"): before - 1})
    assert (await inv.hold(k, "h2", "v0", qid(k, "v0"), HOLD_MS, ["A-1-2"])).status == "no_session"


# ---- seats of a refunded order come back (return_seats.lua) -----------------------------------


async def test_returned_seats_are_free_once_and_a_late_sell_never_marks_them_again(
    redis: Redis, inv: Inventory
) -> None:
    k = await ready(redis, "ret", gacap={"GA": 10}, sessions=3)
    assert (await hold(inv, k, "h1", "v0", ["A-1-1", "A-1-2"])).status == "ok"
    assert await inv.sell(k, "o1", "h1", qid(k, "v0"), ["A-1-1", "A-1-2"])
    ga = await hold(inv, k, "h2", "v1", [], section="GA", quantity=3)
    assert ga.status == "ok"
    assert await inv.sell(k, "o2", "h2", qid(k, "v1"), [], "GA", 3)
    await redis.hset(k.seats, "A-1-3", "h-other")  # another fan's hold stays as it is
    assert await hash_text(redis, k.gasold) == {"GA": "3"}

    assert await inv.return_seats(k, "o1", "h1", ["A-1-1", "A-1-2", "A-1-3"])
    assert await inv.return_seats(k, "o2", "h2", [], "GA", 3)
    after = await hold_state(redis, k)
    assert after["seats"] == {"A-1-3": "h-other"}
    assert after["gasold"] == {"GA": "0"}
    # Twice (fast path, then the stream consumer): nothing more changes.
    assert not await inv.return_seats(k, "o1", "h1", ["A-1-1", "A-1-2"])
    assert not await inv.return_seats(k, "o2", "h2", [], "GA", 3)
    # A redelivered order_paid entry of a refunded order never sells its seats again.
    assert not await inv.sell(k, "o1", "h1", qid(k, "v0"), ["A-1-1", "A-1-2"])
    assert await hold_state(redis, k) == after
    # The seats are free: another fan holds them.
    assert (await hold(inv, k, "h3", "v2", ["A-1-1"], now=T0 + 1)).status == "ok"


async def test_returning_an_order_never_applied_in_redis_frees_its_hold(
    redis: Redis, inv: Inventory
) -> None:
    k = await ready(redis, "ret2", gacap={"GA": 10}, sessions=1)
    assert (
        await hold(inv, k, "h1", "v0", [], now=FAR - HOLD_MS, section="GA", quantity=2)
    ).status == "ok"
    assert await inv.return_seats(k, "o1", "h1", [], "GA", 2)
    state = await hold_state(redis, k)
    assert state["gasold"] == {} and state["gaheld"] == {"GA": "0"} and state["holds"] == {}
    assert not await inv.sell(k, "o1", "h1", qid(k, "v0"), [], "GA", 2)  # never sold afterwards


# ---- the seat counters (seatcount) -----------------------------------------------------------


async def recount(redis: Redis, k: EventKeys) -> dict[str, int]:
    """held / sold counted from the seats hash itself: what the counters must always equal."""
    seats = await hash_text(redis, k.seats)
    sold = sum(1 for holder in seats.values() if holder == "sold")
    return {"held": len(seats) - sold, "sold": sold}


async def counters(redis: Redis, k: EventKeys) -> dict[str, int]:
    return {name: int(n) for name, n in (await hash_text(redis, k.seatcount)).items()}


async def test_seat_counters_equal_a_recount_after_every_script(
    redis: Redis, pg: asyncpg.Pool, inv: Inventory
) -> None:
    """A random walk through every script that writes seats (hold, re-hold, release, extend,
    sell, return, reap, rebuild), time jumping past expiries: after each step the counters
    equal a recount of the seats, and Inventory.counts reads them."""
    await _event(pg, "tally")
    k = EventKeys("tally")
    assert await inv.rebuild(k, pg) == 0
    assert await counters(redis, k) == {"held": 0, "sold": 0}
    rng = random.Random(14)
    seats = [f"A-{r}-{n}" for r in range(1, 4) for n in range(1, 6)]
    visitors = [f"v{i}" for i in range(6)]
    for v in visitors:
        await redis.zadd(k.active, {qid(k, v): FAR})
    now = int(datetime.now(UTC).timestamp() * 1000)
    holds: list[tuple[str, str, list[str]]] = []  # (hold id, visitor, seats) that were made
    orders = 0
    seen_sold = 0
    for step in range(400):
        now += rng.randrange(0, 120_000)
        action = rng.choice(["hold", "hold", "hold", "release", "sell", "return", "reap", "extend"])
        if step % 97 == 96:
            action = "rebuild"
        if action == "hold":
            v = rng.choice(visitors)
            asked = rng.sample(seats, rng.randint(1, 3))
            r = await hold(inv, k, f"h{step}", v, asked, now=now)
            if r.status == "ok":
                holds.append((f"h{step}", v, asked))
        elif action == "release" and holds:
            h, v, _ = rng.choice(holds)
            await inv.release(k, h, v)
        elif action == "extend" and holds:
            await inv.extend(k, rng.choice(holds)[0], 600_000, now_ms=now)
        elif action == "sell" and holds:
            h, v, asked = rng.choice(holds)
            orders += 1
            await inv.sell(k, f"o{orders}", h, qid(k, v), asked)
        elif action == "return" and orders:
            n = rng.randint(1, orders)
            h, _, asked = holds[min(len(holds) - 1, n)]
            await inv.return_seats(k, f"o{n}", h, asked)
        elif action == "reap":
            await inv.reap(k, now_ms=now)
        elif action == "rebuild":
            await inv.rebuild(k, pg, force=True)
        expected = await recount(redis, k)
        assert await counters(redis, k) == expected, (step, action)
        [c] = await inv.counts([k], now=now)
        assert c.built and (c.held_seats, c.sold_seats) == (expected["held"], expected["sold"])
        seen_sold = max(seen_sold, expected["sold"])
    assert seen_sold > 0  # the walk did sell seats


async def test_seat_counters_hold_under_a_race_of_hundreds_of_clients(
    redis: Redis, inv: Inventory
) -> None:
    """400 clients at once, each holding, re-holding, releasing or buying over 40 seats (their
    scripts pipelined in whatever order the loop sends them): the counters equal a recount,
    and no seat is held twice."""
    k = await ready(redis, "crowd", sessions=400)
    seats = [f"A-{r}-{n}" for r in range(1, 5) for n in range(1, 11)]

    async def client(i: int) -> None:
        rng = random.Random(i)
        v = f"v{i}"
        for j in range(3):
            asked = rng.sample(seats, rng.randint(1, 3))
            r = await hold(inv, k, f"h{i}x{j}", v, asked, now=T0 + j)
            if r.status != "ok":
                continue
            choice = rng.random()
            if choice < 0.3:
                await inv.release(k, f"h{i}x{j}", v)
            elif choice < 0.5:
                await inv.sell(k, f"o{i}x{j}", f"h{i}x{j}", qid(k, v), asked)
                return

    await asyncio.gather(*(client(i) for i in range(400)))
    expected = await recount(redis, k)
    assert await counters(redis, k) == expected
    assert expected["held"] > 0 and expected["sold"] > 0
    state = await hold_state(redis, k)
    owners = [json.loads(r)["v"] for r in state["holds"].values()]
    assert len(owners) == len(set(owners))


async def test_seat_state_built_before_the_counters_gets_them_once(
    redis: Redis, pg: asyncpg.Pool, inv: Inventory
) -> None:
    await _event(pg, "upgrade")
    k = EventKeys("upgrade")
    soon = datetime.now(UTC) + timedelta(minutes=5)
    await _order(pg, "upgrade", "o1", "paid", soon, ["A-1-1", "A-1-2"])
    await _order(pg, "upgrade", "p1", "pending", soon, ["A-1-3"])
    await inv.ensure(k, pg)
    assert await counters(redis, k) == {"held": 1, "sold": 2}
    await redis.delete(k.seatcount)  # as seat state written by a release without counters
    [c] = await inv.counts([k])
    assert not c.built
    await inv.ensure(k, pg)  # counted once (reap_holds.lua), not rebuilt
    assert await counters(redis, k) == {"held": 1, "sold": 2} == await recount(redis, k)
    await redis.delete(k.seatcount)
    await redis.zadd(k.active, {qid(k, "v0"): FAR})
    now = int(datetime.now(UTC).timestamp() * 1000)
    assert (await hold(inv, k, "h1", "v0", ["A-2-1"], now=now)).status == "ok"
    assert await counters(redis, k) == {"held": 2, "sold": 2} == await recount(redis, k)
