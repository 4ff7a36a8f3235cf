"""Prometheus metrics: per-process counters plus the event figures of the latest admission step."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.core import rules
from server.waiting.line import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotCollector(Collector):
    """Figures shared by all processes, read from Redis by the admission step."""

    def __init__(self, snapshots: Callable[[], dict[str, Snapshot]]) -> None:
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
        for event_id, snap in self._snapshots().items():
            for name, family in families.items():
                family.add_metric([event_id], float(getattr(snap, name)))
            measured = rules.measured_rate_per_min(snap.admitted_last_window, snap.window_ms)
            if measured is not None:
                rate.add_metric([event_id], measured)
        yield from families.values()
        yield rate


class Metrics:
    def __init__(self, snapshots: Callable[[], dict[str, Snapshot]]) -> None:
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
        self.tick_errors = Counter("boxoffice_tick_errors", "Failed admission steps", registry=r)
        r.register(SnapshotCollector(snapshots))

    def render(self) -> bytes:
        return generate_latest(self.registry)
