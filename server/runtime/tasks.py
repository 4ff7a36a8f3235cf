"""Background loops of one app process: the admission step, news between processes, signs of
life for local sockets, and exact-rank refreshes. Every loop survives Redis outages."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
from aiohttp import web

from server.booking.relay import Relay
from server.booking.service import Booking
from server.core.errors import DATABASE_DOWN
from server.core.keys import EVENTS_CHANNEL, EventKeys
from server.core.messages import AdmittedNews, ChangedNews, ConfirmedNews, news_decoder
from server.core.metrics import Metrics
from server.store import db
from server.waiting.fanout import Hub
from server.waiting.line import Admitted
from server.waiting.room import Room, event_state, now_ms

log = logging.getLogger("boxoffice.ticker")

REAP_EVERY_S = 1.0
EVENTS_REFRESH_S = 5.0
TOUCH_CHUNK = 1000


async def forever(name: str, step: Callable[[], Awaitable[float]]) -> None:
    """Run `step` again and again; it returns the seconds to sleep. Errors back off and retry."""
    backoff = 0.5
    task = asyncio.current_task()
    while True:
        # On Python 3.11 a library may swallow a cancellation (asyncio.wait_for / timeout races)
        # or turn it into a TimeoutError caught below; a cancel request still pending ends us.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        try:
            delay = await step()
            backoff = 0.5
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed: %s", name, exc, extra={"loop": name})
            delay = backoff
            backoff = min(backoff * 2, 5.0)
        await asyncio.sleep(delay)


class Ticker:
    def __init__(
        self, room: Room, hub: Hub, metrics: Metrics, booking: Booking, relay: Relay
    ) -> None:
        self.room = room
        self.hub = hub
        self.metrics = metrics
        self.booking = booking
        self.relay = relay
        self.settings = room.settings
        self.live: list[db.EventRow] = []
        self._last_reap: dict[str, float] = {}
        self._refreshed_at = 0.0

    def tasks(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [
            lambda: forever("admission", self.admission_step),
            lambda: forever("news", self.listen),
            lambda: forever("heartbeat", self.heartbeat_step),
            lambda: forever("ranks", self.ranks_step),
            lambda: forever("inventory", self.inventory_step),
            lambda: forever("orders", self.orders_step),
            lambda: forever("outbox", self.outbox_step),
            lambda: forever("reservations", self.reservations_step),
        ]

    # ---- admission --------------------------------------------------------------------------

    async def refresh_events(self) -> None:
        try:
            rows = await self.room.cache.refresh_all()
        except DATABASE_DOWN as exc:
            # PostgreSQL unreachable: keep admitting for the events already known, retry later.
            log.warning("events refresh failed: %s", exc, extra={"loop": "admission"})
            self._refreshed_at = time.monotonic()
            return
        now = now_ms()
        self.live = [ev for ev in rows if event_state(ev, now) not in ("scheduled", "closed")]
        self._refreshed_at = time.monotonic()

    async def admission_step(self) -> float:
        started = time.monotonic()
        if started - self._refreshed_at > EVENTS_REFRESH_S:
            await self.refresh_events()
        await asyncio.gather(*(self.tick_event(ev) for ev in self.live))
        return max(0.0, self.settings.tick_ms / 1000 - (time.monotonic() - started))

    async def tick_event(self, ev: db.EventRow) -> None:
        keys = EventKeys(ev.id)
        scripts = self.room.scripts
        try:
            previous = self.room.snapshots.get(ev.id)
            if event_state(ev) == "on_sale" and (previous is None or not previous.opened):
                await scripts.open_sale(keys, secrets.randbelow(2**31))
            snap = await scripts.admit(keys)
            if not snap.found:
                await self.room.mirror(ev)
                return
            if snap.admitted:
                self.metrics.admissions.labels(ev.id).inc(len(snap.admitted))
            self.room.snapshots[ev.id] = snap
            if time.monotonic() - self._last_reap.get(ev.id, 0.0) > REAP_EVERY_S:
                self._last_reap[ev.id] = time.monotonic()
                await scripts.reap(keys, self.settings.grace_seconds * 1000)
            await self.hub.on_snapshot(ev.id, snap)
        except Exception:
            self.metrics.tick_errors.inc()
            raise

    async def admit_now(self, event_id: str, count: int) -> int:
        """Admit up to `count` visitors beyond the bucket (ops' controlled burst)."""
        snap = await self.room.scripts.admit(EventKeys(event_id), extra=count)
        return len(snap.admitted)

    # ---- news between processes -------------------------------------------------------------

    async def listen(self) -> float:
        pubsub = self.room.redis.pubsub()
        try:
            await pubsub.psubscribe("bo:{ev:*}:news")
            await pubsub.subscribe(EVENTS_CHANNEL)
            async for message in pubsub.listen():
                if message["type"] not in ("message", "pmessage"):
                    continue
                await self.on_news(message["channel"], message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        return 0.5

    async def on_news(self, channel: bytes | str, data: bytes) -> None:
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            news = news_decoder.decode(data)
        except msgspec.DecodeError:
            log.warning("undecodable news", extra={"channel": channel})
            return
        if isinstance(news, ChangedNews):
            self.room.cache.invalidate(news.event_id)
            ev = await self.room.cache.get(news.event_id)
            if ev is not None and (ev.closed or ev.sold_out):
                await self.hub.close_all(ev.id, "sold_out" if ev.sold_out else "ended")
            self._refreshed_at = 0.0
        elif isinstance(news, ConfirmedNews):
            await self.hub.deliver_confirmed(news.queue_id, news.order_id)
        elif isinstance(news, AdmittedNews) and channel.startswith("bo:{ev:"):
            event_id = channel[len("bo:{ev:") : channel.index("}")]
            entries = [Admitted(*e) for e in news.entries]
            await self.hub.deliver_admitted(event_id, entries)

    # ---- local sockets ----------------------------------------------------------------------

    async def heartbeat_step(self) -> float:
        for event_id, queue_ids in self.hub.waiting_queue_ids().items():
            for i in range(0, len(queue_ids), TOUCH_CHUNK):
                await self.room.touch(event_id, queue_ids[i : i + TOUCH_CHUNK])
        return float(self.settings.heartbeat_seconds)

    async def ranks_step(self) -> float:
        await self.hub.refresh_ranks()
        return 1.0

    # ---- booking duties ---------------------------------------------------------------------

    async def inventory_step(self) -> float:
        """Tidy expired holds and notice a sell-out, for every live event."""
        for ev in self.live:
            keys = EventKeys(ev.id)
            await self.booking.inventory.ensure(keys, self.room.pool)
            await self.booking.inventory.reap(keys)
            await self.booking.check_sold_out(ev)
        return 1.0

    async def orders_step(self) -> float:
        await self.booking.expire_orders()
        await self.booking.run_actions()
        return 5.0

    async def outbox_step(self) -> float:
        published = await self.relay.publish_outbox()
        return 0.05 if published else 0.5

    async def reservations_step(self) -> float:
        await self.relay.consume([ev.id for ev in self.live])
        return 0.0 if self.live else 1.0


TICKER = web.AppKey("ticker", Ticker)
