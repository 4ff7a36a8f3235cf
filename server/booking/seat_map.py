"""The public seat map of an event, built only when the seat state changed, in two encodings:
the full map (every seat with its id, label, price and status: GET /api/events/{id}/seats) and
the compact one (a letter a seat, and deltas between versions for live refresh:
GET /api/events/{id}/seats/status).

A process keeps each event's map with the version of the seat state it was built from
(server.booking.inventory.SeatVersion). A read asks Redis for the version — one round trip, no
per-seat read — and builds the map again only when the hold scripts changed seat state since
(their counter), the state was rebuilt, the first hold live in it has ended, the event's state
(on sale, sold out, …) moved on, or ops changed the event row (its sections, accessible seats,
per-order limits). One build per event at a time; readers arriving meanwhile wait for it. A build makes the compact statuses (one pass over the seats taken); the
full map is made from them on its first read. The compact map's `version` is a digest of the
statuses, so it names the same seats in every process; each process keeps the last
KEPT_VERSIONS statuses of an event to answer `?since=` with the seats that changed. The
catalog's `available` comes from counters instead (`available`)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from functools import cache

import msgspec

from server.booking.inventory import Counts, Inventory, SeatState
from server.core import rules
from server.core.errors import Invalid
from server.core.keys import EventKeys
from server.core.messages import (
    Seat,
    SeatMap,
    SeatRow,
    SeatSection,
    SeatStatus,
    SeatStatusMap,
    SeatStatusSection,
)
from server.store import db
from server.store.events import EventCache, event_state

KEPT_VERSIONS = 16  # statuses of an event a process keeps to answer deltas from
VERSION_HEX = 16  # hex digits of a version
FREE, HELD, SOLD = ord("f"), ord("h"), ord("s")
STATUS_OF: dict[int, SeatStatus] = {FREE: "free", HELD: "held", SOLD: "sold"}
CHUNK = 256  # seats compared at once when looking for changes


def check_version(value: str) -> str:
    """A version from an earlier answer: VERSION_HEX lowercase hex digits."""
    if len(value) != VERSION_HEX or any(c not in "0123456789abcdef" for c in value):
        raise Invalid("since must be the version of an earlier answer", code="bad_version")
    return value


class Layout:
    """The assigned seats of an event in one order (section by section, row by row): seat i of
    the compact statuses."""

    def __init__(self, sections: tuple[tuple[str, int, int], ...]) -> None:
        self.sections = sections  # (section id, rows, seats per row) of the seated sections
        self.ids = [
            rules.seat_id(s, r, n)
            for s, rows, per_row in sections
            for r in range(1, rows + 1)
            for n in range(1, per_row + 1)
        ]
        self.index = {seat: i for i, seat in enumerate(self.ids)}
        self.tag = repr(sections).encode()

    def statuses(self, state: SeatState) -> bytes:
        out = bytearray(b"f" * len(self.ids))
        for seats, code in ((state.held, HELD), (state.sold, SOLD)):
            for seat in seats:
                i = self.index.get(seat)
                if i is not None:
                    out[i] = code
        return bytes(out)

    def version(self, statuses: bytes) -> str:
        return hashlib.blake2b(self.tag + statuses, digest_size=VERSION_HEX // 2).hexdigest()

    def changes(self, old: bytes, new: bytes) -> dict[str, SeatStatus]:
        found: dict[str, SeatStatus] = {}
        for start in range(0, len(new), CHUNK):
            end = start + CHUNK
            if old[start:end] != new[start:end]:
                for i in range(start, min(end, len(new))):
                    if old[i] != new[i]:
                        found[self.ids[i]] = STATUS_OF[new[i]]
        return found


@cache
def layout_of(sections: tuple[tuple[str, int, int], ...]) -> Layout:
    return Layout(sections)


def event_layout(ev: db.EventRow) -> Layout:
    return layout_of(
        tuple(
            (s.id, s.rows, s.seats_per_row)
            for s in ev.sections
            if s.rows is not None and s.seats_per_row is not None
        )
    )


class _Built:
    """One build: the state, its compact statuses and version; the full map made once read."""

    def __init__(self, ev: db.EventRow, state: SeatState) -> None:
        self.ev = ev
        self.state = state
        self.layout = event_layout(ev)
        self.statuses = self.layout.statuses(state)
        self.version = self.layout.version(self.statuses)
        self.event_state = event_state(ev)
        self._map: SeatMap | None = None
        self._body: bytes | None = None
        self._compact: dict[str | None, bytes] = {}

    def seat_map(self) -> SeatMap:
        if self._map is None:
            self._map = build_seat_map(self.ev, self.state, self.event_state)
        return self._map

    def body(self) -> bytes:
        """The full map's JSON (~20 ms for 20,000 seats, so only when someone reads it)."""
        if self._body is None:
            self._body = msgspec.json.encode(self.seat_map())
        return self._body

    def compact(self, since: str | None, old: bytes | None) -> bytes:
        """The compact map, as a delta from `old` (the statuses of version `since`) if given."""
        key = since if old is not None else None
        body = self._compact.get(key)
        if body is None:
            body = msgspec.json.encode(self._status_map(since, old))
            if len(self._compact) < KEPT_VERSIONS + 1:
                self._compact[key] = body
        return body

    def _status_map(self, since: str | None, old: bytes | None) -> SeatStatusMap:
        sections: list[SeatStatusSection] = []
        offset, total = 0, 0
        for s in self.ev.sections:
            if s.rows is not None and s.seats_per_row is not None:
                end = offset + s.rows * s.seats_per_row
                free = self.statuses.count(b"f", offset, end)
                status = None if old is not None else self.statuses[offset:end].decode()
                sections.append(
                    SeatStatusSection(s.id, "seated", free, s.rows, s.seats_per_row, status)
                )
                offset, total = end, total + free
            else:
                left = standing_left(s, self.state)
                sections.append(SeatStatusSection(s.id, "standing", left))
                total += left
        changes = None if old is None else self.layout.changes(old, self.statuses)
        return SeatStatusMap(
            self.ev.id,
            self.event_state,
            total,
            self.version,
            sections,
            since=since if old is not None else None,
            changes=changes,
        )


class SeatMaps:
    def __init__(self, cache: EventCache, inventory: Inventory, pool: db.Pool) -> None:
        self.cache = cache
        self.inventory = inventory
        self.pool = pool
        self._maps: dict[str, _Built] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._history: dict[str, OrderedDict[str, bytes]] = {}  # event -> version -> statuses
        self.builds = 0  # maps built by this process (the tests read it)

    async def get(self, event_id: str) -> SeatMap:
        return (await self._current(event_id)).seat_map()

    async def encoded(self, event_id: str) -> bytes:
        """The full map as JSON, encoded once per build."""
        return (await self._current(event_id)).body()

    async def compact(self, event_id: str, since: str | None = None) -> bytes:
        """The compact map as JSON: a delta from version `since` when this process still knows
        it, else every seat."""
        built = await self._current(event_id)
        old = None
        history = self._history.get(built.ev.id)
        if since is not None:
            version = check_version(since)
            old = history.get(version) if history is not None else None
        return built.compact(since, old)

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
            built = _Built(ev, await self.inventory.snapshot(k))
            self._maps[ev.id] = built
            self._remember(ev.id, built)
            self.builds += 1
            return built

    def _remember(self, event_id: str, built: _Built) -> None:
        history = self._history.setdefault(event_id, OrderedDict())
        history[built.version] = built.statuses
        history.move_to_end(built.version)
        while len(history) > KEPT_VERSIONS:
            history.popitem(last=False)

    async def _fresh(self, hit: _Built, k: EventKeys, ev: db.EventRow) -> bool:
        version = await self.inventory.version(k)
        expiry = hit.state.next_expiry_ms
        return (
            version.token == hit.state.version
            and (expiry is None or version.now_ms < expiry)
            and event_state(ev) == hit.event_state
            and ev == hit.ev
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


def standing_left(s: db.SectionRow, state: SeatState) -> int:
    return max(0, s.capacity - state.ga_sold.get(s.id, 0) - state.ga_held.get(s.id, 0))


def build_seat_map(ev: db.EventRow, state: SeatState, ev_state: rules.EventState) -> SeatMap:
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
            left = standing_left(s, state)
            out.append(SeatSection(s.id, s.name, s.price, "standing", s.capacity, left))
            total += left
    limit = rules.buyer_limit(ev.max_tickets_per_buyer, ev.max_seats_per_order)
    return SeatMap(ev.id, ev.currency, ev_state, total, out, ev.max_seats_per_order, limit)
