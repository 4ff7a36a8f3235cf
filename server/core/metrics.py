"""Prometheus metrics of one process: request latency, joins, admissions, websockets, broadcasts,
mail, event-loop stalls. Domain objects register their own collectors on the same registry (e.g.
the admission step's event figures, server.waiting.admission)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "boxoffice_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.joins = Counter(
            "boxoffice_joins", "Join requests by result", ["event", "result"], registry=r
        )
        self.admissions = Counter(
            "boxoffice_admissions",
            "Visitors admitted by this process's steps",
            ["event"],
            registry=r,
        )
        self.delivered = Counter(
            "boxoffice_admissions_delivered", "Admission messages sent to local sockets", registry=r
        )
        self.websockets = Gauge(
            "boxoffice_websocket_connections", "Open queue websockets", registry=r
        )
        self.broadcast = Histogram(
            "boxoffice_broadcast_seconds",
            "Time to push one tick to every local socket of an event",
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.broadcast_cpu = Counter(
            "boxoffice_broadcast_cpu_seconds",
            "CPU time (user and system) of the event loop's thread while pushing ticks: their"
            " socket writes, and whatever the loop ran between their chunks",
            registry=r,
        )
        self.tick_errors = Counter("boxoffice_tick_errors", "Failed admission steps", registry=r)
        self.roles = Gauge(
            "boxoffice_process_roles", "Roles this process runs (1 each)", ["role"], registry=r
        )
        self.checkins = Counter(
            "boxoffice_checkins", "Ticket scans at the door by result", ["event", "result"],
            registry=r,
        )  # fmt: skip
        self.refunds = Counter(
            "boxoffice_refunds", "Refund requests by outcome", ["outcome"], registry=r
        )
        self.mails = Counter(
            "boxoffice_mails",
            "Mail deliveries by kind and outcome: sent, retry (a failure that may pass, tried"
            " again later), failed (refused for good), skipped (no longer owed)",
            ["kind", "outcome"],
            registry=r,
        )
        self.mail_delivery = Histogram(
            "boxoffice_mail_delivery_seconds",
            "From a mail being owed (its row made, within a second of the payment through the"
            " stream, within 5 s through the sweep) to the SMTP server accepting it",
            ["kind"],
            registry=r,
            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900),
        )
        self.mail_backlog = Gauge(
            "boxoffice_mail_backlog",
            "Mails owed and not yet sent (due or being sent), all processes together, as this"
            " notifier last counted them (every 5 s)",
            registry=r,
        )
        self.mail_oldest = Gauge(
            "boxoffice_mail_oldest_owed_seconds",
            "Age of the oldest mail owed and not yet sent (0 when none): past 30 s the promise"
            " of API.md's Mail section is being missed",
            registry=r,
        )
        self.stalls = Stalls()
        Gauge(
            "boxoffice_event_loop_stall_seconds",
            f"Longest event-loop stall over the last {STALL_WINDOW_S:g} s: how late a"
            f" {1000 * STALL_PROBE_S:g} ms timer woke",
            registry=r,
        ).set_function(self.stalls.worst)
        Gauge(
            "boxoffice_event_loop_own_stall_seconds",
            "The same stalls less the time the loop's thread waited for a CPU in them (Linux"
            " schedstat): what the process itself blocked its loop for",
            registry=r,
        ).set_function(self.stalls.worst_own)

        # labelled children looked up once (prometheus_client's labels() takes a lock and
        # builds its key on every call): request timers by (method, route, status), joins by
        # (event, result)
        self._timers: dict[tuple[str, str, int], Histogram] = {}
        self._joins: dict[tuple[str, str], Counter] = {}

    def request_timer(self, method: str, route: str, status: int) -> Histogram:
        child = self._timers.get((method, route, status))
        if child is None:
            child = self._timers[(method, route, status)] = self.requests.labels(
                method, route, status
            )
        return child

    def joined(self, event_id: str, result: str) -> None:
        child = self._joins.get((event_id, result))
        if child is None:
            child = self._joins[(event_id, result)] = self.joins.labels(event_id, result)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


STALL_PROBE_S = 0.05  # the stall probe's sleep: a stall shorter than this may go unseen
STALL_WINDOW_S = 10.0  # what the gauge looks back over (scrape at least this often)


class Stalls:
    """Event-loop stalls: a probe sleeps STALL_PROBE_S again and again; how much later than
    asked it wakes is how long the loop was blocked (by CPU work, a blocking call, a long
    chunk of sockets) while it slept, or waited for a CPU. Each stall is also kept less the
    time the loop's thread waited for a CPU in it (Linux's run delay, /proc/thread-self/
    schedstat): on a machine with more runnable work than cores that part is the machine's;
    what is left is the process's own blocking (a long callback, a garbage collection).
    Without schedstat the two are the same."""

    def __init__(self) -> None:
        self._seen: deque[tuple[float, float, float]] = deque()  # (when, stall, own), oldest first
        self._schedstat = True  # False once /proc/thread-self/schedstat could not be read

    def record(self, stall: float, now: float, own: float | None = None) -> None:
        self._seen.append((now, stall, stall if own is None else min(own, stall)))
        while self._seen and self._seen[0][0] < now - STALL_WINDOW_S:
            self._seen.popleft()

    def worst(self) -> float:
        since = time.monotonic() - STALL_WINDOW_S
        return max((stall for when, stall, _ in self._seen if when >= since), default=0.0)

    def worst_own(self) -> float:
        since = time.monotonic() - STALL_WINDOW_S
        return max((own for when, _, own in self._seen if when >= since), default=0.0)

    def run_delay(self) -> float:
        """Seconds the calling thread has waited for a CPU since it started (0.0 without
        schedstat)."""
        if not self._schedstat:
            return 0.0
        try:
            fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            try:
                return int(os.read(fd, 128).split()[1]) / 1e9
            finally:
                os.close(fd)
        except (OSError, IndexError, ValueError):
            self._schedstat = False
            return 0.0

    async def step(self) -> float:
        """One probe (a loop step for server.core.loops: returns no further pause)."""
        asked, waited = time.monotonic(), self.run_delay()
        await asyncio.sleep(STALL_PROBE_S)
        now = time.monotonic()
        stall = max(0.0, now - asked - STALL_PROBE_S)
        self.record(stall, now, max(0.0, stall - (self.run_delay() - waited)))
        return 0.0


METRICS = web.AppKey("metrics", Metrics)
