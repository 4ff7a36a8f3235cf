"""The booking side of one app process, built in one place: seat state, seat maps, holds,
orders, settlement, refunds, check-ins, resend requests, availability and the outbox relay. Redis is the fast path; PostgreSQL
(server.booking.ledger) is the final arbiter of every sale."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from server.booking.availability import Availability
from server.booking.checkins import CheckIns
from server.booking.holds import Holds
from server.booking.inventory import Inventory
from server.booking.orders import Orders
from server.booking.refunds import Refunds
from server.booking.relay import Relay
from server.booking.resend import Resend
from server.booking.seat_map import SeatMaps
from server.booking.settlement import Settlement
from server.core.loops import Loop
from server.payments.registry import Providers
from server.store import db
from server.waiting.room import Room


class Booking:
    def __init__(
        self, room: Room, providers: Providers, live: Callable[[], list[db.EventRow]]
    ) -> None:
        self.settings = room.settings
        self.cache = room.cache
        self.pool = room.pool
        self.providers = providers
        self.inventory = Inventory(room.redis)
        self.seat_maps = SeatMaps(room.cache, self.inventory, room.pool)
        self.holds = Holds(
            room.settings, room.cache, self.inventory, room.pool, room.signer, self.seat_maps
        )
        self.refunds = Refunds(
            room, self.inventory, self.seat_maps, providers,
            lambda order_id: self.settlement.run_actions(order_id),
        )  # fmt: skip
        self.settlement = Settlement(
            room.settings, self.inventory, self.holds, self.seat_maps, room.pool, providers,
            room.signer, self.refunds.reported,
        )  # fmt: skip
        self.checkins = CheckIns(room.pool, room.signer)
        self.resend = Resend(room.pool, self.inventory)
        self.orders = Orders(
            room.settings, room.cache, self.inventory, room.pool, providers, self.settlement
        )
        self.availability = Availability(room, self.inventory, live)
        self.relay = Relay(room.redis, room.pool, self.inventory, live)

    def loops(self) -> list[Loop]:
        return self.availability.loops() + self.settlement.loops() + self.relay.loops()


BOOKING = web.AppKey("booking", Booking)
