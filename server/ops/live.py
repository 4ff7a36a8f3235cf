"""The ops console's live feed: one sampler per process per watched event, fanned out to every
viewer of that event on this process.

A sample costs the same whether one operator watches or fifty: one Redis pipeline (line,
pre-queue, active sessions, counters), one seat-state read, the cached event row (re-read from
PostgreSQL only when its settings change or every few seconds), and one PostgreSQL count of
orders by status every ORDERS_EVERY_S. Nothing is queried per viewer: the sample is encoded once
and the same bytes are written to every socket.

Latency percentiles come from this process's own request histogram (the one /metrics exports),
as the difference of its bucket counts over the last LATENCY_WINDOW_S: they describe the joins
and holds this process served, not the whole fleet (Prometheus aggregates those across processes
with histogram_quantile over the same buckets)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import msgspec
from aiohttp import web
from msgspec import Struct
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.booking.service import Booking
from server.core.clock import now_ms
from server.core.keys import EventKeys
from server.core.metrics import Metrics
from server.store import db
from server.store.events import event_state
from server.waiting.room import Room

log = logging.getLogger("boxoffice.live")

ORDERS_EVERY_S = 2.0
LATENCY_WINDOW_S = 30.0
HISTORY = 300  # samples kept for a viewer who connects mid-sale (5 minutes at 1/s)
JOIN_ROUTE = ("POST", "/api/events/{event_id}/queue")
HOLD_ROUTE = ("POST", "/api/events/{event_id}/holds")


class Percentiles(Struct, frozen=True):
    p50_ms: float
    p95_ms: float
    p99_ms: float
    count: int


class LiveSample(Struct, frozen=True, tag="sample", tag_field="type"):
    t: int  # ms since the epoch
    event_id: str
    state: str
    waiting: int
    prequeue: int
    admitted_total: int
    active: int
    max_active: int
    rate_per_min: int  # configured
    measured_rate_per_min: float | None
    paused: bool
    closed: bool
    capacity: int
    holds: int
    seats_held: int
    seats_sold: int
    orders_paid: int
    orders_failed: int
    orders_pending: int
    join_latency: Percentiles | None
    hold_latency: Percentiles | None


class LiveHistory(Struct, frozen=True, tag="history", tag_field="type"):
    samples: list[LiveSample]


encoder = msgspec.json.Encoder()


# ---- histogram percentiles (pure) ---------------------------------------------------------------


def histogram_quantile(bounds: list[float], cumulative: list[float], q: float) -> float | None:
    """Prometheus-style quantile from cumulative bucket counts (upper bounds ascending, the last
    +Inf): linear inside the bucket holding the rank; None with no observations."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    for i, (upper, count) in enumerate(zip(bounds, cumulative, strict=True)):
        if count >= rank:
            lower = bounds[i - 1] if i > 0 else 0.0
            below = cumulative[i - 1] if i > 0 else 0.0
            if math.isinf(upper):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 1.0)
    return bounds[-2] if len(bounds) > 1 else None


def percentiles(bounds: list[float], cumulative: list[float]) -> Percentiles | None:
    values = [histogram_quantile(bounds, cumulative, q) for q in (0.5, 0.95, 0.99)]
    if any(v is None for v in values):
        return None
    p50, p95, p99 = (round((v or 0.0) * 1000, 1) for v in values)
    return Percentiles(p50, p95, p99, int(cumulative[-1]))


def route_buckets(metrics: Metrics, method: str, route: str) -> dict[float, float]:
    """Cumulative bucket counts of one route in the request histogram, summed over statuses."""
    buckets: dict[float, float] = {}
    for family in metrics.requests.collect():
        for s in family.samples:
            if not s.name.endswith("_bucket"):
                continue
            if s.labels.get("method") != method or s.labels.get("route") != route:
                continue
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
    return buckets


def window_percentiles(
    now: dict[float, float], then: dict[float, float] | None
) -> Percentiles | None:
    bounds = sorted(now)
    cumulative = [now[b] - (then or {}).get(b, 0.0) for b in bounds]
    return percentiles(bounds, cumulative)


# ---- the sampler --------------------------------------------------------------------------------


@dataclass
class Feed:
    event_id: str
    viewers: set[web.WebSocketResponse] = field(default_factory=set)
    history: deque[LiveSample] = field(default_factory=lambda: deque(maxlen=HISTORY))
    task: asyncio.Task[None] | None = None
    orders: tuple[float, dict[str, int]] = (0.0, {})
    latency: deque[tuple[float, dict[float, float], dict[float, float]]] = field(
        default_factory=deque
    )


class LiveHub:
    def __init__(
        self, room: Room, booking: Booking, metrics: Metrics, interval_s: float = 1.0
    ) -> None:
        self.room = room
        self.booking = booking
        self.metrics = metrics
        self.interval_s = interval_s
        self.feeds: dict[str, Feed] = {}

    def latest(self) -> Iterator[LiveSample]:
        for feed in self.feeds.values():
            if feed.history:
                yield feed.history[-1]

    async def watch(self, event_id: str, ws: web.WebSocketResponse) -> Feed:
        feed = self.feeds.get(event_id)
        if feed is None:
            feed = self.feeds[event_id] = Feed(event_id)
        feed.viewers.add(ws)
        if feed.history:
            await ws.send_str(encoder.encode(LiveHistory(list(feed.history))).decode())
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._run(feed))
        return feed

    def leave(self, feed: Feed, ws: web.WebSocketResponse) -> None:
        feed.viewers.discard(ws)

    async def close(self) -> None:
        for feed in list(self.feeds.values()):
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await feed.task
            for ws in list(feed.viewers):
                with contextlib.suppress(Exception):
                    await ws.close(code=1001, message=b"server shutting down")
        self.feeds.clear()

    async def _run(self, feed: Feed) -> None:
        """Sample once per interval while anyone watches; stop (keeping history) when nobody."""
        backoff = self.interval_s
        while feed.viewers:
            started = time.monotonic()
            try:
                sample = await self.sample(feed)
                backoff = self.interval_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live sample failed", extra={"event": feed.event_id, "error": str(exc)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            feed.history.append(sample)
            data = encoder.encode(sample).decode()  # text frames, encoded once for all
            for ws in list(feed.viewers):
                if ws.closed:
                    feed.viewers.discard(ws)
                    continue
                try:
                    await ws.send_str(data)
                except Exception:
                    feed.viewers.discard(ws)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def _orders(self, feed: Feed) -> dict[str, int]:
        stamp, counts = feed.orders
        if time.monotonic() - stamp >= ORDERS_EVERY_S:
            rows = await self.room.pool.fetch(
                "SELECT status, count(*) AS n FROM orders WHERE event_id = $1 GROUP BY status",
                feed.event_id,
            )
            counts = {r["status"]: int(r["n"]) for r in rows}
            feed.orders = (time.monotonic(), counts)
        return counts

    def _latency(self, feed: Feed) -> tuple[Percentiles | None, Percentiles | None]:
        t = time.monotonic()
        joins = route_buckets(self.metrics, *JOIN_ROUTE)
        holds = route_buckets(self.metrics, *HOLD_ROUTE)
        if not feed.latency:
            feed.latency.append((t, {}, {}))  # until the window fills: since the process began
        feed.latency.append((t, joins, holds))
        while len(feed.latency) > 2 and t - feed.latency[1][0] >= LATENCY_WINDOW_S:
            feed.latency.popleft()
        _, joins0, holds0 = feed.latency[0]
        return window_percentiles(joins, joins0), window_percentiles(holds, holds0)

    async def sample(self, feed: Feed) -> LiveSample:
        ev = await self.room.cache.require(feed.event_id)
        k = EventKeys(ev.id)
        async with self.room.redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.stats, "admitted")
            pipe.zcard(k.line)
            pipe.zcard(k.pre)
            pipe.zcount(k.active, f"({now_ms()}", "+inf")
            admitted, waiting, prequeue, active = await pipe.execute()
        [seats] = await self.booking.inventory.counts([k])
        orders = await self._orders(feed)
        join_latency, hold_latency = self._latency(feed)
        return LiveSample(
            t=now_ms(),
            event_id=ev.id,
            state=event_state(ev),
            waiting=int(waiting),
            prequeue=int(prequeue),
            admitted_total=int(admitted or 0),
            active=int(active),
            max_active=ev.max_active,
            rate_per_min=ev.rate_per_min,
            measured_rate_per_min=self.room.measured_rate(ev.id),
            paused=ev.paused,
            closed=ev.closed,
            capacity=ev.capacity,
            holds=seats.live_holds,
            seats_held=seats.held,
            seats_sold=seats.sold,
            orders_paid=orders.get("paid", 0),
            orders_failed=orders.get("failed", 0),
            orders_pending=orders.get("pending", 0),
            join_latency=join_latency,
            hold_latency=hold_latency,
        )


class LiveCollector(Collector):
    """/metrics figures the console shows that the admission snapshot lacks: the configured
    settings of every live event (from this process's event cache), and the seat and order
    figures of the events being watched on this process (their latest shared sample). No I/O
    at scrape time."""

    def __init__(self, hub: LiveHub, live_events: Callable[[], Iterable[db.EventRow]]) -> None:
        self.hub = hub
        self.live_events = live_events

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["event"]
        config = {
            "rate_per_min": GaugeMetricFamily("boxoffice_rate_per_min", "Configured admissions per minute", labels=labels),
            "max_active": GaugeMetricFamily("boxoffice_max_active", "Configured most sessions alive at once", labels=labels),
            "paused": GaugeMetricFamily("boxoffice_paused", "1 while admission is paused", labels=labels),
        }  # fmt: skip
        for ev in self.live_events():
            for name, family in config.items():
                family.add_metric([ev.id], float(getattr(ev, name)))
        watched = {
            "seats_held": GaugeMetricFamily("boxoffice_seats_held", "Seats in live holds (watched events)", labels=labels),
            "seats_sold": GaugeMetricFamily("boxoffice_seats_sold", "Seats sold (watched events)", labels=labels),
            "holds": GaugeMetricFamily("boxoffice_live_holds", "Live holds (watched events)", labels=labels),
        }  # fmt: skip
        orders = GaugeMetricFamily(
            "boxoffice_orders", "Orders by status (watched events)", labels=["event", "status"]
        )
        for s in self.hub.latest():
            for name, family in watched.items():
                family.add_metric([s.event_id], float(getattr(s, name)))
            orders.add_metric([s.event_id, "paid"], float(s.orders_paid))
            orders.add_metric([s.event_id, "failed"], float(s.orders_failed))
            orders.add_metric([s.event_id, "pending"], float(s.orders_pending))
        yield from config.values()
        yield from watched.values()
        yield orders


LIVE = web.AppKey("live", LiveHub)
