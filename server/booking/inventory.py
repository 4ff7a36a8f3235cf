"""Live seat state in Redis: holds (all-or-nothing Lua), sales, tidying, and rebuilding the
state from PostgreSQL, which stays the truth."""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio.cluster import RedisCluster

from server.core import clock
from server.core.keys import EventKeys
from server.store import db, lua
from server.store.lua import AnyRedis, as_text, time_arg

HOLD_SCRIPTS = (
    "hold", "release_hold", "extend_hold", "sell", "reap_holds", "rebuild_inventory", "rate_limit",
    "return_seats",
)  # fmt: skip


MAX_EVENTS_KEPT = 1000  # events whose hold keys a process keeps spelled out


class HoldResult(msgspec.Struct, frozen=True):
    status: str  # ok | unavailable | ga_unavailable | no_session | not_ready | rate_limited
    expires_ms: int = 0
    replaced: str = ""
    taken: tuple[str, ...] = ()
    available: int = 0
    reset_ms: int = 0  # rate_limited: ms until the visitor's window of attempts resets


class HoldRecord(msgspec.Struct, frozen=True):
    hold_id: str
    visitor_id: str
    queue_id: str
    seats: tuple[str, ...]
    ga: dict[str, int]
    extended: bool
    expires_ms: int


class _Stored(msgspec.Struct):
    v: str
    q: str
    s: list[str] | dict[str, str] = []
    g: dict[str, int] | list[int] = {}
    x: int = 0


_stored = msgspec.json.Decoder(_Stored)


class SeatState(msgspec.Struct, frozen=True):
    held: frozenset[str]
    sold: frozenset[str]
    ga_sold: dict[str, int]
    ga_held: dict[str, int]
    live_holds: int
    version: tuple[str, str] = ("", "")  # SeatVersion read before this state
    next_expiry_ms: int | None = None  # when the first hold live in this state ends


class SeatVersion(msgspec.Struct, frozen=True):
    """What a cached view of seat state is valid for: the hold scripts' change counter and the
    time the state was last rebuilt (a rebuild or a lost Redis starts over), and Redis's clock
    (a live hold ending changes the state without any script running)."""

    token: tuple[str, str]
    now_ms: int


class Counts(msgspec.Struct, frozen=True):
    """Cheap figures of an event's seat state, from the counters the hold scripts keep (no
    per-seat read): assigned seats held and sold (held includes holds expired but not yet tidied
    by the reaper), per standing section the units sold and held, and the holds live now.
    `built` is False when the state must be rebuilt (or counted) first."""

    built: bool
    held_seats: int
    sold_seats: int
    ga_sold: dict[str, int]
    ga_held: dict[str, int]
    live_holds: int = 0

    @property
    def taken_seats(self) -> int:
        return self.held_seats + self.sold_seats

    @property
    def held(self) -> int:
        """Seats and standing units held."""
        return self.held_seats + sum(self.ga_held.values())

    @property
    def sold(self) -> int:
        """Seats and standing units sold."""
        return self.sold_seats + sum(self.ga_sold.values())


class RebuildTruth(msgspec.Struct):
    gacap: dict[str, int]
    gasold: dict[str, int]
    sold: list[str]
    paid: list[str]
    orders: list[dict[str, Any]]


class Inventory:
    """The hold scripts, called through the client's Batcher (server.store.lua): the holds,
    rate-limit checks and sales of one event-loop turn share one pipeline."""

    def __init__(self, client: AnyRedis) -> None:
        self.redis = client
        self._s = lua.register_batched(client, *HOLD_SCRIPTS)
        self._hold_keys: dict[str, list[str]] = {}  # event id -> hold.lua's KEYS[1..11]

    def _keys_of_hold(self, k: EventKeys, visitor_id: str) -> list[str]:
        fixed = self._hold_keys.get(k.event_id)
        if fixed is None:
            if len(self._hold_keys) >= MAX_EVENTS_KEPT:
                self._hold_keys.clear()
            fixed = self._hold_keys[k.event_id] = [*k.hold_keys(), k.active, k.inventory]
        return [*fixed, k.rate("hold", visitor_id)]

    async def _run(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        return await self._s[name](keys, args)

    async def hold(
        self,
        k: EventKeys,
        hold_id: str,
        visitor_id: str,
        queue_id: str,
        hold_ms: int,
        seats: list[str],
        ga_section: str = "",
        quantity: int = 0,
        claim: bool = False,
        now_ms: int | None = None,
        attempts: tuple[int, int] | None = None,
    ) -> HoldResult:
        """`attempts` (most, window ms): count this attempt against the visitor's hold attempts
        first, in the same script (hold.lua), and refuse it over the limit."""
        keys = self._keys_of_hold(k, visitor_id)
        most, window_ms = attempts or (0, 0)
        args: list[str | int] = [hold_id, visitor_id, queue_id, hold_ms, time_arg(now_ms)]
        args += [ga_section, quantity, "1" if claim else "0", most, window_ms, *seats]
        r = await self._run("hold", keys, args)
        status = as_text(r[0])
        if status == "ok":
            return HoldResult(status, int(r[1]), as_text(r[2]))
        if status == "unavailable":
            return HoldResult(status, taken=tuple(as_text(x) for x in r[1:]))
        if status == "ga_unavailable":
            return HoldResult(status, available=int(r[1]))
        if status == "rate_limited":
            return HoldResult(status, reset_ms=int(r[1]))
        return HoldResult(status)

    async def allow(self, key: str, limit: int, window_ms: int) -> tuple[bool, int]:
        """Fixed-window rate limit: (allowed, ms until the window resets)."""
        r = await self._run("rate_limit", [key], [limit, window_ms])
        return bool(r[0]), int(r[1])

    async def release(self, k: EventKeys, hold_id: str, visitor_id: str = "") -> int:
        return int(await self._run("release_hold", k.hold_keys(), [hold_id, visitor_id]))

    async def extend(
        self, k: EventKeys, hold_id: str, window_ms: int, now_ms: int | None = None
    ) -> int:
        return int(
            await self._run("extend_hold", k.hold_keys(), [hold_id, window_ms, time_arg(now_ms)])
        )

    async def sell(
        self,
        k: EventKeys,
        order_id: str,
        hold_id: str,
        queue_id: str,
        seats: list[str],
        ga_section: str = "",
        quantity: int = 0,
    ) -> bool:
        keys = [*k.hold_keys(), k.sold_orders, k.active]
        args: list[str | int] = [order_id, hold_id, queue_id, ga_section, quantity, *seats]
        return bool(await self._run("sell", keys, args))

    async def return_seats(
        self,
        k: EventKeys,
        order_id: str,
        hold_id: str,
        seats: list[str],
        ga_section: str = "",
        quantity: int = 0,
    ) -> bool:
        """A refunded order's seats are free again (after PostgreSQL committed the refund);
        True if they came back now, False if this order was returned before."""
        keys = [*k.hold_keys(), k.sold_orders, k.returned_orders]
        args: list[str | int] = [order_id, hold_id, ga_section, quantity, *seats]
        return bool(await self._run("return_seats", keys, args))

    async def reap(self, k: EventKeys, limit: int = 500, now_ms: int | None = None) -> int:
        return int(await self._run("reap_holds", k.hold_keys(), [limit, time_arg(now_ms)]))

    async def read_hold(self, k: EventKeys, hold_id: str) -> HoldRecord | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.holds, hold_id)
            pipe.zscore(k.holdexp, hold_id)
            raw, expires = await pipe.execute()
        if raw is None or expires is None:
            return None
        h = _stored.decode(raw)
        seats = tuple(h.s) if isinstance(h.s, list) else ()
        ga = h.g if isinstance(h.g, dict) else {}
        return HoldRecord(hold_id, h.v, h.q, seats, ga, h.x == 1, int(expires))

    async def version(self, k: EventKeys) -> SeatVersion:
        """The seat state's version (one round trip, no per-seat read)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(k.seatver)
            pipe.hget(k.inventory, "built_ms")
            pipe.time()
            changes, built, (secs, micros) = await pipe.execute()
        token = (as_text(changes or ""), as_text(built or ""))
        return SeatVersion(token, int(secs) * 1000 + int(micros) // 1000)

    async def counts(self, keys: list[EventKeys], now: int | None = None) -> list[Counts]:
        """Counts of several events in one round trip (live holds judged by `now`, ms, or this
        process's clock)."""
        after = f"({clock.now_ms() if now is None else now}"
        async with self.redis.pipeline(transaction=False) as pipe:
            for k in keys:
                pipe.exists(k.inventory)
                pipe.hmget(k.seatcount, ["held", "sold"])
                pipe.hgetall(k.gasold)
                pipe.hgetall(k.gaheld)
                pipe.zcount(k.holdexp, after, "+inf")
            raw = await pipe.execute()
        out = []
        for i in range(len(keys)):
            built, (held, sold), ga_sold, ga_held, live = raw[5 * i : 5 * i + 5]
            out.append(
                Counts(
                    bool(built) and held is not None and sold is not None,
                    int(held or 0),
                    int(sold or 0),
                    {as_text(s): int(n) for s, n in ga_sold.items()},
                    {as_text(s): max(0, int(n)) for s, n in ga_held.items()},
                    int(live),
                )
            )
        return out

    async def snapshot(self, k: EventKeys) -> SeatState:
        """Seats held and sold now, judged by Redis TIME as the scripts judge holds: on a
        cluster, the TIME of the shard that owns the event (a keyless command cannot join a
        cluster pipeline)."""
        cluster = self.redis if isinstance(self.redis, RedisCluster) else None
        async with self.redis.pipeline(transaction=False) as pipe:
            # The version first: a change landing between it and the reads below makes the
            # state newer than its version, so a cache rebuilds once more, never too few times.
            pipe.get(k.seatver)
            pipe.hget(k.inventory, "built_ms")
            if cluster is None:
                pipe.time()
            pipe.hgetall(k.seats)
            pipe.zrange(k.holdexp, 0, -1, withscores=True)
            pipe.hgetall(k.gasold)
            pipe.hgetall(k.gaheld)
            replies = await pipe.execute()
        if cluster is not None:
            replies.insert(2, await cluster.time(target_nodes=cluster.get_node_from_key(k.seats)))
        changes, built, (secs, micros), seats, holds, ga_sold, ga_held = replies
        now = int(secs) * 1000 + int(micros) // 1000
        live = [(as_text(h), int(expires)) for h, expires in holds if expires > now]
        live_ids = {h for h, _ in live}
        held, sold = set(), set()
        for seat, holder in seats.items():
            holder_id = as_text(holder)
            if holder_id == "sold":
                sold.add(as_text(seat))
            elif holder_id in live_ids:
                held.add(as_text(seat))
        return SeatState(
            held=frozenset(held),
            sold=frozenset(sold),
            ga_sold={as_text(s): int(n) for s, n in ga_sold.items()},
            ga_held={as_text(s): max(0, int(n)) for s, n in ga_held.items()},
            live_holds=len(live_ids),
            version=(as_text(changes or ""), as_text(built or "")),
            next_expiry_ms=min((e for _, e in live), default=None),
        )

    async def rebuild(self, k: EventKeys, pool: db.Pool, force: bool = False) -> int:
        """Rebuild seat state from PostgreSQL; -1 if it was already built and not forced."""
        truth = await db.inventory_truth(pool, k.event_id)
        keys = [*k.hold_keys(), k.inventory, k.sold_orders]
        payload = msgspec.json.encode(RebuildTruth(**truth)).decode()
        return int(await self._run("rebuild_inventory", keys, [payload, "1" if force else "0", ""]))

    async def ensure(self, k: EventKeys, pool: db.Pool) -> None:
        """Seat state is there, with its counters: rebuilt from PostgreSQL if Redis lost it;
        counted once if it was built before the counters existed (reap_holds.lua)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(k.inventory)
            pipe.exists(k.seatcount)
            built, counted = await pipe.execute()
        if not built:
            await self.rebuild(k, pool)
        elif not counted:
            await self.reap(k)
