"""The public seat map of an event: built from the live seat state in Redis, kept per process
for a second, dropped at once when this process changes a seat."""

from __future__ import annotations

import time

from server.booking.inventory import Inventory, SeatState
from server.core import rules
from server.core.keys import EventKeys
from server.core.messages import Seat, SeatMap, SeatRow, SeatSection
from server.store import db
from server.store.events import EventCache, event_state

SEAT_MAP_TTL_S = 1.0


class SeatMaps:
    def __init__(self, cache: EventCache, inventory: Inventory, pool: db.Pool) -> None:
        self.cache = cache
        self.inventory = inventory
        self.pool = pool
        self._maps: dict[str, tuple[float, SeatMap]] = {}

    async def get(self, event_id: str) -> SeatMap:
        ev = await self.cache.require(event_id)
        hit = self._maps.get(ev.id)
        if hit is not None and time.monotonic() - hit[0] < SEAT_MAP_TTL_S:
            return hit[1]
        k = EventKeys(ev.id)
        await self.inventory.ensure(k, self.pool)
        state = await self.inventory.snapshot(k)
        seat_map = build_seat_map(ev, state)
        self._maps[ev.id] = (time.monotonic(), seat_map)
        return seat_map

    def changed(self, event_id: str) -> None:
        """This process changed a seat of the event: the next read builds the map again."""
        self._maps.pop(event_id, None)


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
                    seats.append(Seat(sid, f"Row {r}, seat {n}", s.price, status))  # type: ignore[arg-type]
                rows.append(SeatRow(r, seats))
            out.append(SeatSection(s.id, s.name, s.price, "seated", s.capacity, free, rows))
            total += free
        else:
            left = s.capacity - state.ga_sold.get(s.id, 0) - state.ga_held.get(s.id, 0)
            out.append(SeatSection(s.id, s.name, s.price, "standing", s.capacity, max(0, left)))
            total += max(0, left)
    return SeatMap(ev.id, ev.currency, event_state(ev), total, out)
