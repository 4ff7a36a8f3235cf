"""Events out: the outbox relay (PostgreSQL -> Redis Stream `reservations` per event) and the
consumer group that marks seats sold in Redis and tells the fan's open socket, and puts a
refunded order's seats back on sale (if the refund's own fast path was lost)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import msgspec
import redis.exceptions
from redis.asyncio import Redis

from server.booking import ledger
from server.booking.inventory import Inventory
from server.booking.refunds import ReturnedPayload
from server.core.keys import EventKeys, event_of
from server.core.loops import Loop
from server.core.messages import ConfirmedNews, encoder
from server.store import db

log = logging.getLogger("boxoffice.relay")

GROUP = "seat-sync"
STREAM_MAXLEN = 100_000


class PaidPayload(msgspec.Struct):
    order_id: str
    hold_id: str
    queue_id: str
    seats: list[str]
    ga_section: str = ""
    quantity: int = 0
    visitor_id: str = ""


_paid = msgspec.json.Decoder(PaidPayload)
_returned = msgspec.json.Decoder(ReturnedPayload)


class Relay:
    def __init__(
        self,
        redis: Redis,
        pool: db.Pool,
        inventory: Inventory,
        live: Callable[[], list[db.EventRow]],
    ) -> None:
        self.redis = redis
        self.pool = pool
        self.inventory = inventory
        self.live = live
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._groups: set[str] = set()

    def loops(self) -> list[Loop]:
        return [("outbox", self.outbox_step), ("reservations", self.reservations_step)]

    async def outbox_step(self) -> float:
        published = await self.publish_outbox()
        return 0.05 if published else 0.5

    async def reservations_step(self) -> float:
        live = [ev.id for ev in self.live()]
        await self.consume(live)
        return 0.0 if live else 1.0

    async def publish_outbox(self) -> int:
        async def publish(item: ledger.OutboxItem) -> None:
            await self.redis.xadd(
                EventKeys(item.event_id).reservations,
                {"kind": item.kind, "payload": item.payload, "outbox_id": str(item.id)},
                maxlen=STREAM_MAXLEN,
                approximate=True,
            )

        return await ledger.relay_outbox(self.pool, publish)

    async def _ensure_group(self, stream: str) -> None:
        if stream in self._groups:
            return
        try:
            await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add(stream)

    async def consume(self, event_ids: list[str], block_ms: int = 1000) -> int:
        """Apply new reservations (and ones left pending by a dead consumer) for these events."""
        if not event_ids:
            return 0
        streams = {}
        for event_id in event_ids:
            stream = EventKeys(event_id).reservations
            await self._ensure_group(stream)
            streams[stream] = ">"
        applied = 0
        try:
            for stream in streams:
                claimed = await self.redis.xautoclaim(
                    stream, GROUP, self.consumer, 30_000, "0-0", 100
                )
                for entry_id, fields in claimed[1]:
                    applied += await self._apply(stream, entry_id, fields)
            # One stream per call keeps the keys of a read in one cluster slot.
            for stream in streams:
                batch: Any = await self.redis.xreadgroup(
                    GROUP, self.consumer, {stream: ">"}, count=100,
                    block=block_ms // len(streams) or 1,
                )  # fmt: skip
                for _, entries in batch or []:
                    for entry_id, fields in entries:
                        applied += await self._apply(stream, entry_id, fields)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._groups.clear()  # Redis lost the groups (restart, flush): create them again
            raise
        return applied

    async def _apply(self, stream: str | bytes, entry_id: bytes, fields: dict[bytes, bytes]) -> int:
        stream = stream.decode() if isinstance(stream, bytes) else stream
        k = EventKeys(event_of(stream))
        if fields.get(b"kind") == b"order_paid":
            paid = _paid.decode(fields[b"payload"])
            await self.inventory.sell(
                k,
                paid.order_id,
                paid.hold_id,
                paid.queue_id,
                paid.seats,
                paid.ga_section,
                paid.quantity,
            )
            await self.redis.publish(
                k.channel, encoder.encode(ConfirmedNews(paid.queue_id, paid.order_id))
            )
        elif fields.get(b"kind") == b"order_refunded":
            back = _returned.decode(fields[b"payload"])
            await self.inventory.return_seats(
                k, back.order_id, back.hold_id, back.seats, back.ga_section, back.quantity
            )
        await self.redis.xack(stream, GROUP, entry_id)
        return 1
