"""Events out: the outbox relay (PostgreSQL -> Redis Stream `reservations` per event) and the
consumer group that marks seats sold in Redis and tells the fan's open socket, and puts a
refunded order's seats back on sale (if the refund's own fast path was lost)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import msgspec

from server.booking import ledger
from server.booking.inventory import Inventory
from server.booking.refunds import ReturnedPayload
from server.core.keys import EventKeys, event_of
from server.core.loops import Loop
from server.core.messages import ConfirmedNews, encoder
from server.store import db
from server.store.lua import AnyRedis
from server.store.redis_client import publish_news
from server.store.streams import read_group

log = logging.getLogger("boxoffice.relay")

GROUP = "seat-sync"
PENDING_IDLE_MS = 30_000  # an entry unacknowledged this long is taken from its consumer
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
        redis: AnyRedis,
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
        async def publish(items: list[ledger.OutboxItem]) -> None:
            # One round trip for the claimed rows (a confirmation each, at sale speed): a
            # pipeline without a transaction; on a cluster it sends each shard its own.
            async with self.redis.pipeline(transaction=False) as pipe:
                for item in items:
                    pipe.xadd(
                        EventKeys(item.event_id).reservations,
                        {"kind": item.kind, "payload": item.payload, "outbox_id": str(item.id)},
                        maxlen=STREAM_MAXLEN,
                        approximate=True,
                    )
                await pipe.execute()

        return await ledger.relay_outbox(self.pool, publish)

    async def consume(self, event_ids: list[str], block_ms: int = 1000) -> int:
        """Apply new reservations (and ones left pending by a dead consumer) for these events."""
        if not event_ids:
            return 0
        streams = [EventKeys(event_id).reservations for event_id in event_ids]
        return await read_group(
            self.redis, GROUP, self.consumer, self._groups, streams, self._apply,
            pending_idle_ms=PENDING_IDLE_MS, block_ms=block_ms,
        )  # fmt: skip

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
            await publish_news(
                self.redis, k.channel, encoder.encode(ConfirmedNews(paid.queue_id, paid.order_id))
            )
        elif fields.get(b"kind") == b"order_refunded":
            back = _returned.decode(fields[b"payload"])
            await self.inventory.return_seats(
                k, back.order_id, back.hold_id, back.seats, back.ga_section, back.quantity
            )
        await self.redis.xack(stream, GROUP, entry_id)
        return 1
