"""The public seat map of an event, built only when the seat state changed.

A process keeps each event's map (and its encoded JSON) with the version of the seat state it
was built from (server.booking.inventory.SeatVersion). A read asks Redis for the version — one
round trip, no per-seat read — and builds the map again only when the hold scripts changed seat
state since (their counter), the state was rebuilt, the first hold live in it has ended, the
event's state (on sale, sold out, …) moved on, or ops changed its sections (accessible seats) or
its per-order limits. One build per event at a time; readers arriving
meanwhile wait for it. The catalog's `available` comes from counters instead (`available`)."""

from __future__ import annotations

import asyncio

import msgspec

from server.booking.inventory import Counts, Inventory, SeatState
from server.core import rules
from server.core.keys import EventKeys
from server.core.messages import Seat, SeatMap, SeatRow, SeatSection
from server.store import db
from server.store.events import EventCache, event_state


class _Built(msgspec.Struct, frozen=True):
    state: SeatState
    seat_map: SeatMap
    body: bytes
    layout: tuple[object, ...]  # what of the event row the map shows besides seat state


def _layout(ev: db.EventRow) -> tuple[object, ...]:
    return (ev.sections, ev.max_seats_per_order, ev.max_tickets_per_buyer)


class SeatMaps:
    def __init__(self, cache: EventCache, inventory: Inventory, pool: db.Pool) -> None:
        self.cache = cache
        self.inventory = inventory
        self.pool = pool
        self._maps: dict[str, _Built] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.builds = 0  # maps built by this process (the tests read it)

    async def get(self, event_id: str) -> SeatMap:
        return (await self._current(event_id)).seat_map

    async def encoded(self, event_id: str) -> bytes:
        """The map as JSON, encoded once per build."""
        return (await self._current(event_id)).body

    async def _current(self, event_id: str) -> _Built:
        ev = await self.cache.require(event_id)
        k = EventKeys(ev.id)
        hit = self._maps.get(ev.id)
        if hit is not None and await self._fresh(hit, k, ev):
            return hit
        lock = self._locks.setdefault(ev.id, asyncio.Lock())
        async with lock:
            hit = self._maps.get(ev.id)
            if hit is not None and await self._fresh(hit, k, ev):
                return hit
            await self.inventory.ensure(k, self.pool)
            state = await self.inventory.snapshot(k)
            seat_map = build_seat_map(ev, state)
            built = _Built(state, seat_map, msgspec.json.encode(seat_map), _layout(ev))
            self._maps[ev.id] = built
            self.builds += 1
            return built

    async def _fresh(self, hit: _Built, k: EventKeys, ev: db.EventRow) -> bool:
        version = await self.inventory.version(k)
        expiry = hit.state.next_expiry_ms
        return (
            version.token == hit.state.version
            and (expiry is None or version.now_ms < expiry)
            and event_state(ev) == hit.seat_map.state
            and _layout(ev) == hit.layout
        )

    async def available(self, events: list[db.EventRow]) -> list[int]:
        """`available` of each event from counters, one round trip for all (two when some
        event's seat state must be rebuilt from PostgreSQL first)."""
        keys = [EventKeys(ev.id) for ev in events]
        counts = await self.inventory.counts(keys)
        missing = [k for k, c in zip(keys, counts, strict=True) if not c.built]
        if missing:
            for k in missing:
                await self.inventory.ensure(k, self.pool)
            counts = await self.inventory.counts(keys)
        return [available(ev, c) for ev, c in zip(events, counts, strict=True)]

    def changed(self, event_id: str) -> None:
        """This process changed a seat of the event: drop the map now (the version check would
        also see it, one round trip later)."""
        self._maps.pop(event_id, None)


def available(ev: db.EventRow, counts: Counts) -> int:
    """Seats and standing places an event has left, from counters: assigned seats held or
    sold, and standing units sold and held. A hold that ended a moment ago counts as taken until
    the reaper tidies it (within a second or two); the seat map itself is exact."""
    total = 0
    for s in ev.sections:
        if s.rows is not None and s.seats_per_row is not None:
            total += s.capacity
        else:
            total += max(0, s.capacity - counts.ga_sold.get(s.id, 0) - counts.ga_held.get(s.id, 0))
    return max(0, total - counts.taken_seats)


def build_seat_map(ev: db.EventRow, state: SeatState) -> SeatMap:
    out = []
    total = 0
    for s in ev.sections:
        if s.rows is not None and s.seats_per_row is not None:
            rows = []
            free = 0
            for r in range(1, s.rows + 1):
                seats = []
                for n in range(1, s.seats_per_row + 1):
                    sid = rules.seat_id(s.id, r, n)
                    status = (
                        "sold" if sid in state.sold else "held" if sid in state.held else "free"
                    )
                    free += status == "free"
                    label = f"Row {r}, seat {n}"
                    seats.append(Seat(sid, label, s.price, status, sid in s.accessible))  # type: ignore[arg-type]
                rows.append(SeatRow(r, seats))
            out.append(SeatSection(s.id, s.name, s.price, "seated", s.capacity, free, rows))
            total += free
        else:
            left = s.capacity - state.ga_sold.get(s.id, 0) - state.ga_held.get(s.id, 0)
            out.append(SeatSection(s.id, s.name, s.price, "standing", s.capacity, max(0, left)))
            total += max(0, left)
    limit = rules.buyer_limit(ev.max_tickets_per_buyer, ev.max_seats_per_order)
    return SeatMap(ev.id, ev.currency, event_state(ev), total, out, ev.max_seats_per_order, limit)
