"""Whether anything is left to sell, for every live event once a second: seat state is made sure
to exist and tidied, its counters read (no scan of the seats), a sell-out is declared (the room refuses joins and tells waiting fans), and
while every seat left is held the admission step admits nobody until seats return."""

from __future__ import annotations

from collections.abc import Callable

from server.booking.inventory import Inventory
from server.core.keys import EventKeys
from server.core.loops import Loop
from server.core.messages import EventPatch
from server.store import db
from server.waiting.room import Room


class Availability:
    def __init__(
        self, room: Room, inventory: Inventory, live: Callable[[], list[db.EventRow]]
    ) -> None:
        self.room = room
        self.inventory = inventory
        self.live = live

    def loops(self) -> list[Loop]:
        return [("inventory", self.step)]

    async def step(self) -> float:
        for ev in self.live():
            keys = EventKeys(ev.id)
            await self.inventory.ensure(keys, self.room.pool)
            await self.inventory.reap(keys)
            await self.check(ev)
        return 1.0

    async def check(self, ev: db.EventRow) -> None:
        """Sold out once every seat and standing unit is sold. Exhausted (the admission step
        admits nobody) while every seat left is held; cleared when holds expire or seats
        return."""
        if ev.sold_out or ev.closed or not ev.capacity:
            return
        k = EventKeys(ev.id)
        # The hold scripts' counters, not a scan of the seats: the step reaped expired holds
        # just before, so what they count as held is live (to within the reaper's second).
        [counts] = await self.inventory.counts([k])
        sold, held = counts.sold, counts.held
        if sold >= ev.capacity:
            await self.room.change(
                ev.id, EventPatch(sold_out=True), who="system", action="sold_out"
            )
            return
        exhausted = int(sold + held >= ev.capacity)
        await self.room.redis.hset(k.cfg, "exhausted", exhausted)
