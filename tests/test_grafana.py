"""nginx/grafana-dashboard.json: a well-formed Grafana dashboard whose every PromQL expression
names only metrics the real app exports at /metrics (and only routes it really serves)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from server.core.metrics import STALL_PROBE_S, Stalls
from tests.helpers import create_event, join, visitor

DASHBOARD = Path(__file__).resolve().parent.parent / "nginx" / "grafana-dashboard.json"
METRIC = re.compile(r"\bboxoffice_[a-zA-Z0-9_]+")
ROUTE = re.compile(r'\broute="([^"]*)"')
# What a sample name may add to its family's name, by family type.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included; rows themselves left out."""
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(dashboard) for target in panel["targets"]]


def family_of(name: str, families: dict[str, str]) -> str | None:
    """The exposed family a PromQL metric name selects (a counter's `_total`, a histogram's
    `_bucket`/`_sum`/`_count` series), or None if /metrics has no such series."""
    if families.get(name) not in (None, "counter", "histogram"):
        return name
    for kind, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            base = name.removesuffix(suffix)
            if base != name and families.get(base) == kind:
                return base
    return None


def test_dashboard_structure() -> None:
    dashboard = load()
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    event = variables["event"]
    assert event["type"] == "query"
    assert event["query"]["query"] == "label_values(boxoffice_waiting, event)"
    assert event["datasource"]["uid"] == "${DS_PROMETHEUS}"

    found = panels(dashboard)
    assert len(found) >= 10
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    ids = [p["id"] for p in rows + found]
    assert len(ids) == len(set(ids)), ids
    for panel in found:
        assert panel["title"], panel
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys(), panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert METRIC.search(target["expr"]), target["expr"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]

    # The latencies come from the request histogram, filtered on the join and hold routes.
    latency = " ".join(expressions(dashboard))
    assert "boxoffice_http_request_duration_seconds_bucket" in latency
    for route in ("/api/events/{event_id}/queue", "/api/events/{event_id}/holds"):
        assert f'route="{route}"' in latency


async def test_dashboard_metrics_are_exported(client: TestClient[Any, Any]) -> None:
    event = await create_event(client)
    joined = await join(client, event["id"], visitor())
    assert joined.status in (200, 201, 202), await joined.text()
    joined_state = (await joined.json())["state"]
    response = await client.get("/metrics")
    assert response.status == 200
    text = await response.text()
    exposed = list(text_string_to_metric_families(text))
    families = {family.name: family.type for family in exposed}

    exprs = expressions(load())
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used
    missing = {name for name in used if family_of(name, families) is None}
    assert not missing, f"dashboard uses metrics /metrics does not export: {sorted(missing)}"
    # Every family the dashboard reads is there by name, not just by a prefix of a longer one.
    for name in used:
        base = family_of(name, families)
        assert base is not None
        assert re.search(rf"^# TYPE {re.escape(base)}(_total)? ", text, re.M), base

    # The route filters name routes the app serves, as the histogram labels them; the join
    # just made is already in it.
    assert client.app is not None
    routes = {r.resource.canonical for r in client.app.router.routes() if r.resource}
    filtered = {route for expr in exprs for route in ROUTE.findall(expr)}
    assert filtered
    assert filtered <= routes, sorted(filtered - routes)
    labelled = {
        sample.labels["route"]
        for family in exposed
        if family.name == "boxoffice_http_request_duration_seconds"
        for sample in family.samples
    }
    assert "/api/events/{event_id}/queue" in labelled
    # The join counter counts: the one join made above is a sample with its event and result.
    joins = {
        (sample.labels["event"], sample.labels["result"]): sample.value
        for family in exposed
        if family.name == "boxoffice_joins"
        for sample in family.samples
        if sample.name == "boxoffice_joins_total"
    }
    assert joins == {(event["id"], joined_state): 1.0}, joins


async def stall_gauge(
    client: TestClient[Any, Any], name: str = "boxoffice_event_loop_stall_seconds"
) -> float:
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return float(family.samples[0].value)
    raise AssertionError(f"no {name} in /metrics")


async def test_stall_gauge_reports_a_loop_blocked_on_purpose(client: TestClient[Any, Any]) -> None:
    """The app and this test share one event loop: blocking it here for 0.4 s is a stall of
    the app's loop, which the gauge must then report (at least the block less one probe)."""
    time.sleep(0.4)  # noqa: ASYNC251 - the point: the loop is blocked, nothing of the app runs
    await asyncio.sleep(0.1)  # the probe wakes late and records it
    assert await stall_gauge(client) >= 0.4 - STALL_PROBE_S
    # the thread slept, it did not wait for a CPU: the whole stall is the process's own
    own = await stall_gauge(client, "boxoffice_event_loop_own_stall_seconds")
    assert own >= 0.4 - STALL_PROBE_S


def test_run_delay_counts_the_time_a_thread_waits_for_a_cpu() -> None:
    """Two busy processes on one CPU take turns: each waits for it about half the time, and
    that wait (not a stall of its own making) is what the own-stall gauge takes off."""
    stalls = Stalls()
    cpu = min(os.sched_getaffinity(0))
    before_affinity = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", HOG.format(cpu=cpu)], stdout=subprocess.DEVNULL)
    try:
        os.sched_setaffinity(0, {cpu})
        waited = stalls.run_delay()
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            pass
        assert stalls.run_delay() > waited
    finally:
        os.sched_setaffinity(0, before_affinity)
        hog.kill()
        hog.wait()


HOG = """
import os, time
os.sched_setaffinity(0, {{{cpu}}})
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
"""
