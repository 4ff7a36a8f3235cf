"""The admission step: every process runs it for every live event every tick; the token bucket
in Redis (queue/admit.lua) keeps the admitted count at the rate whatever the number of
processes. Its snapshots feed the fans' positions, the console and /metrics."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.core import rules
from server.core.clock import now_ms
from server.core.errors import DATABASE_DOWN
from server.core.keys import EventKeys
from server.core.loops import Loop
from server.core.metrics import Metrics
from server.store import db
from server.store.events import event_state
from server.waiting.fanout import Hub
from server.waiting.line import Snapshot
from server.waiting.room import Room

log = logging.getLogger("boxoffice.admission")

REAP_EVERY_S = 1.0
MAX_BATCH = 500  # most visitors one step admits for one event
EVENTS_REFRESH_S = 5.0


class Admission:
    def __init__(self, room: Room, hub: Hub, metrics: Metrics) -> None:
        self.room = room
        self.hub = hub
        self.metrics = metrics
        self.settings = room.settings
        self.live: list[db.EventRow] = []  # events in pre-queue or on sale, refreshed every 5 s
        self._last_reap: dict[str, float] = {}
        self._refreshed_at = 0.0
        self.max_batch = MAX_BATCH
        metrics.registry.register(SnapshotCollector(room.snapshots))

    def loops(self, admit: bool) -> list[Loop]:
        """The admission step, or (`admit` False) an observer of it: a web process without the
        admission role still needs each event's snapshot for positions, ETAs and ticks. It runs
        the same script admitting nobody, which only refills the bucket by the time passed
        (the same refill the admitting process would make) and ends expired sessions."""
        self.max_batch = MAX_BATCH if admit else 0
        return [("admission" if admit else "admission-observer", self.step)]

    def events_loop(self) -> Loop:
        """For a process that reads the live events' streams (relay, notifier) but runs no
        admission step, which is what keeps `live` current elsewhere: the refresh alone."""
        return ("live-events", self.events_step)

    async def events_step(self) -> float:
        await self.refresh_events()
        return EVENTS_REFRESH_S

    def refresh_soon(self) -> None:
        """Re-read the events at the next step (their settings changed)."""
        self._refreshed_at = 0.0

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

    async def step(self) -> float:
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
            snap = await scripts.admit(keys, max_batch=self.max_batch)
            if not snap.found:
                await self.room.mirror(ev)
                return
            if snap.admitted:
                self.metrics.admissions.labels(ev.id).inc(len(snap.admitted))
            self.room.observe(ev, snap)
            if self.max_batch and time.monotonic() - self._last_reap.get(ev.id, 0.0) > REAP_EVERY_S:
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


class SnapshotCollector(Collector):
    """Figures shared by all processes, read from Redis by the admission step."""

    def __init__(self, snapshots: dict[str, Snapshot]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "waiting": GaugeMetricFamily("boxoffice_waiting", "Visitors in the line", labels=["event"]),
            "prequeue": GaugeMetricFamily("boxoffice_prequeue", "Visitors in the pre-queue", labels=["event"]),
            "active": GaugeMetricFamily("boxoffice_active_sessions", "Admitted sessions alive", labels=["event"]),
            "admitted_total": GaugeMetricFamily("boxoffice_admitted", "Visitors admitted so far", labels=["event"]),
            "serving": GaugeMetricFamily("boxoffice_serving_ticket", "Last ticket admitted", labels=["event"]),
        }  # fmt: skip
        rate = GaugeMetricFamily(
            "boxoffice_measured_rate_per_min", "Admissions per minute measured", labels=["event"]
        )
        for event_id, snap in list(self._snapshots.items()):
            for name, family in families.items():
                family.add_metric([event_id], float(getattr(snap, name)))
            measured = rules.measured_rate_per_min(snap.admitted_last_window, snap.window_ms)
            if measured is not None:
                rate.add_metric([event_id], measured)
        yield from families.values()
        yield rate


ADMISSION = web.AppKey("admission", Admission)
