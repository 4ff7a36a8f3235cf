"""The ops console's API: admin auth, the audit trail, the live feed (one sampler per process,
settings reaching every process within a second), the ETA preview and its math."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, ViewportSize, expect

from server.core.settings import Settings
from server.ops.autopilot import clearing_rate, eta_preview, last_fan_wait
from server.ops.live import LIVE, histogram_quantile
from server.runtime.app import create_app

from .helpers import ADMIN, ADMIN_TOKEN, create_event, event_body, join, visitor
from .test_browser import SHOTS, TIMEOUT_MS

Client = TestClient[Any, Any]
WRONG = {"Authorization": "Bearer not-the-token"}


async def join_many(client: Client, event_id: str, count: int) -> None:
    """`count` distinct visitors join through this app (no shared cookie jar)."""
    base = str(client.make_url("")).rstrip("/")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        for _ in range(count):
            fan = visitor()
            async with await join(session, event_id, fan, base) as response:
                assert response.status == 200, await response.text()


async def audit_rows(client: Client, event_id: str, **query: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/admin/events/{event_id}/audit", params=query, headers=ADMIN)
    assert response.status == 200, await response.text()
    rows: list[dict[str, Any]] = await response.json()
    return rows


# ---- auth -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/admin/events", None),
        ("POST", "/api/admin/events", event_body()),
        ("PATCH", "/api/admin/events/{id}", {"rate_per_min": 5}),
        ("GET", "/api/admin/events/{id}/stats", None),
        ("POST", "/api/admin/events/{id}/admit", {"count": 1}),
        ("GET", "/api/admin/events/{id}/audit", None),
        ("GET", "/api/admin/events/{id}/eta", None),
        ("GET", "/api/admin/events/{id}/autopilot", None),
        ("PATCH", "/api/admin/events/{id}/autopilot", {"enabled": True}),
    ],
)
async def test_admin_routes_need_the_token(
    client: Client, method: str, path: str, body: Any
) -> None:
    ev = await create_event(client, rate_per_min=0)
    url = path.format(id=ev["id"])
    for headers in ({}, WRONG, {"Authorization": "Basic " + ADMIN_TOKEN}):
        response = await client.request(method, url, json=body, headers=headers)
        assert response.status == 401, (headers, await response.text())
        answer = await response.json()
        # The same answer whatever was wrong: no hint about the token.
        assert answer == {"error": "unauthorized", "detail": "admin token missing or wrong"}
    right = await client.request(method, url, json=body, headers=ADMIN)
    assert right.status in (200, 201), await right.text()
    # Nothing changed by the refused calls: only the create (and the right call) are audited.
    rows = await audit_rows(client, ev["id"])
    assert {r["action"] for r in rows} <= {"create", "patch", "admit_now", "autopilot_config"}


async def test_live_feed_authenticates_before_the_upgrade(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    url = f"/api/admin/events/{ev['id']}/live"
    # No token, a token only in a first message (no longer read), a wrong one: refused with 401
    # before any socket opens.
    for protocols, headers in (
        ((), {}),
        (("boxoffice.admin",), {}),
        (("boxoffice.admin", "bearer.nope"), {}),
        ((), {"Authorization": "Bearer nope"}),
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(url, protocols=protocols, headers=headers)
        assert refused.value.status == 401, (protocols, headers)
    # The right token in an Authorization header (non-browser clients): ready, then samples.
    ws = await client.ws_connect(url, headers=ADMIN)
    ready = await ws.receive_json(timeout=5)
    assert ready == {"type": "ready", "event_id": ev["id"], "interval_ms": 1000}
    sample = await ws.receive_json(timeout=5)
    assert sample["type"] == "sample"
    assert sample["event_id"] == ev["id"]
    await ws.close()
    # An unknown event is a 404 before the upgrade too.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/admin/events/no-such-event/live", headers=ADMIN)
    assert refused.value.status == 404


async def test_live_feed_auth_by_subprotocol(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    url = f"/api/admin/events/{ev['id']}/live"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(url, protocols=("boxoffice.admin", "bearer.wrong"))
    assert refused.value.status == 401
    ws = await client.ws_connect(url, protocols=("boxoffice.admin", f"bearer.{ADMIN_TOKEN}"))
    assert ws.protocol == "boxoffice.admin"  # the token is never echoed back
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    assert (await ws.receive_json(timeout=5))["type"] == "sample"
    await ws.close()


# ---- audit ----------------------------------------------------------------------------------------


async def test_every_settings_change_is_audited(client: Client) -> None:
    created = await client.post(
        "/api/admin/events",
        json=event_body(rate_per_min=0),
        headers={**ADMIN, "X-Boxoffice-Operator": "alice@ops"},
    )
    assert created.status == 201
    event_id = (await created.json())["id"]
    patch = await client.patch(
        f"/api/admin/events/{event_id}",
        json={"rate_per_min": 120, "paused": True, "max_active": 1000},  # max_active unchanged
        headers={**ADMIN, "X-Boxoffice-Operator": "bob"},
    )
    assert patch.status == 200
    await client.patch(
        f"/api/admin/events/{event_id}", json={"paused": False, "rate_per_min": 0}, headers=ADMIN
    )
    await join_many(client, event_id, 3)
    admit = await client.post(
        f"/api/admin/events/{event_id}/admit", json={"count": 2}, headers=ADMIN
    )
    assert admit.status == 200
    rows = await audit_rows(client, event_id)
    summary = [(r["who"], r["action"], r["field"], r["old"], r["new"]) for r in rows]
    assert summary[0] == ("admin", "admit_now", "admit_now", None, {"requested": 2, "admitted": 2})
    assert sorted(summary[1:3]) == [
        ("admin", "patch", "paused", True, False),
        ("admin", "patch", "rate_per_min", 120, 0),
    ]
    assert sorted(summary[3:5]) == [
        ("bob", "patch", "paused", False, True),
        ("bob", "patch", "rate_per_min", 0, 120),
    ]
    assert summary[5][:3] == ("alice@ops", "create", "settings")
    assert summary[5][4]["rate_per_min"] == 0
    assert len(rows) == 6  # no row for max_active: it did not change
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert all(datetime.fromisoformat(r["at"]).tzinfo is not None for r in rows)
    assert len(await audit_rows(client, event_id, limit="2")) == 2
    bad_limit = await client.get(
        f"/api/admin/events/{event_id}/audit", params={"limit": "0"}, headers=ADMIN
    )
    assert bad_limit.status == 422


async def test_operator_label_is_validated(client: Client) -> None:
    ev = await create_event(client)
    for label in ("x" * 41, "<script>", "a\tb", "-dash-first"):
        response = await client.patch(
            f"/api/admin/events/{ev['id']}",
            json={"rate_per_min": 7},
            headers={**ADMIN, "X-Boxoffice-Operator": label},
        )
        assert response.status == 422, label
        assert (await response.json())["detail"].startswith("X-Boxoffice-Operator:")
    settings = await (await client.get(f"/api/admin/events/{ev['id']}", headers=ADMIN)).json()
    assert settings["settings"]["rate_per_min"] == 600  # refused before any change


async def test_audit_row_shares_the_change_transaction(client: Client, pg: Any) -> None:
    """A change that fails after its audit row was written leaves neither (same transaction)."""
    ev = await create_event(client)
    await pg.execute(
        "ALTER TABLE events ADD CONSTRAINT test_rate_cap CHECK (rate_per_min < 100000) NOT VALID"
    )
    try:
        response = await client.patch(
            f"/api/admin/events/{ev['id']}", json={"rate_per_min": 200000}, headers=ADMIN
        )
        assert response.status >= 400
    finally:
        await pg.execute("ALTER TABLE events DROP CONSTRAINT test_rate_cap")
    rows = await audit_rows(client, ev["id"])
    assert [r["action"] for r in rows] == ["create"]


async def test_create_422_names_the_field(client: Client) -> None:
    cases = {
        "rate_per_min": event_body(rate_per_min=-1),
        "currency": event_body(currency="euro"),
        "sections[0]": event_body(
            sections=[{"id": "A", "name": "Floor", "price": 1, "rows": 2, "capacity": 4}]
        ),
        "sale_starts_at": event_body(sale_starts_at=datetime.now(UTC).isoformat(),
                                     starts_at=(datetime.now(UTC) - timedelta(days=1)).isoformat()),
    }  # fmt: skip
    for field, body in cases.items():
        response = await client.post("/api/admin/events", json=body, headers=ADMIN)
        assert response.status == 422
        detail = (await response.json())["detail"]
        assert f"$.{field}`" in detail or detail.startswith(f"{field}"), (field, detail)


# ---- live feed ------------------------------------------------------------------------------------


async def live_socket(client: Client, event_id: str) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect(
        f"/api/admin/events/{event_id}/live", protocols=("boxoffice.admin", f"bearer.{ADMIN_TOKEN}")
    )
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    return ws


async def next_sample(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = await ws.receive_json(timeout=5)
        if msg["type"] == "sample":
            return msg


async def test_live_feed_one_sampler_many_viewers(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0, max_active=7)
    await join_many(client, ev["id"], 4)
    first, second = await live_socket(client, ev["id"]), await live_socket(client, ev["id"])
    started = time.monotonic()
    a = [await next_sample(first) for _ in range(3)]
    elapsed = time.monotonic() - started
    assert elapsed < 3.5  # at least once a second
    b = await next_sample(second)
    hub = client.app[LIVE]
    assert list(hub.feeds) == [ev["id"]] and len(hub.feeds[ev["id"]].viewers) == 2
    for sample in (a[-1], b):
        assert sample["waiting"] == 4
        assert sample["rate_per_min"] == 0
        assert sample["max_active"] == 7
        assert sample["seats_sold"] == 0 and sample["orders_paid"] == 0
    # Both viewers get the very same samples (one sampler, fanned out).
    assert b["t"] in {s["t"] for s in a} or b["t"] > a[-1]["t"]
    # Joins were served by this process: their latency percentiles come from its histogram.
    latency = a[-1]["join_latency"]
    assert latency is not None and latency["count"] >= 4
    assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"]
    # A late viewer gets the history first.
    third = await live_socket(client, ev["id"])
    history = await third.receive_json(timeout=5)
    assert history["type"] == "history" and len(history["samples"]) >= 3
    for ws in (first, second, third):
        await ws.close()
    metrics = await (await client.get("/metrics")).text()
    assert f'boxoffice_rate_per_min{{event="{ev["id"]}"}} 0.0' in metrics
    assert f'boxoffice_orders{{event="{ev["id"]}",status="paid"}} 0.0' in metrics


async def test_settings_reach_every_process_within_a_second(
    aiohttp_client: Any, settings: Settings, client: Client
) -> None:
    """Two app processes on the same Redis and PostgreSQL: a PATCH on one shows on the other
    (its stats and its live feed) within a second."""
    other: Client = await aiohttp_client(create_app(settings))
    ev = await create_event(client, rate_per_min=0)
    event_id = ev["id"]
    await join_many(client, event_id, 3)
    ws = await live_socket(other, event_id)
    assert (await next_sample(ws))["rate_per_min"] == 0
    stats = await (await other.get(f"/api/admin/events/{event_id}/stats", headers=ADMIN)).json()
    assert stats["rate_per_min"] == 0  # the other process has the event cached now

    for rate, paused in ((321, False), (45, True)):
        started = time.monotonic()
        patch = await client.patch(
            f"/api/admin/events/{event_id}",
            json={"rate_per_min": rate, "paused": paused},
            headers=ADMIN,
        )
        assert patch.status == 200
        seen_stats = seen_live = None
        while time.monotonic() - started < 1.0:
            stats = await (
                await other.get(f"/api/admin/events/{event_id}/stats", headers=ADMIN)
            ).json()
            if seen_stats is None and (stats["rate_per_min"], stats["paused"]) == (rate, paused):
                seen_stats = time.monotonic() - started
            if seen_stats is not None:
                break
            await asyncio.sleep(0.02)
        while seen_live is None and time.monotonic() - started < 1.2:
            sample = await next_sample(ws)
            if (sample["rate_per_min"], sample["paused"]) == (rate, paused):
                seen_live = time.monotonic() - started
        assert seen_stats is not None and seen_stats < 1.0, "stats on the other process"
        assert seen_live is not None and seen_live < 1.2, "live feed on the other process"
    await ws.close()


# ---- ETA preview ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_line", "rate", "paused", "starts_in", "expected"),
    [
        (0, 100, False, 0, 0),
        (0, None, False, 30, 30),  # nobody waits: the sale start is all
        (100, 100, False, 0, 60),
        (101, 100, False, 0, 61),  # rounded up: never promise too early
        (100, 100, False, 90, 150),  # pre-queue: the line starts moving at the sale start
        (600, 60, False, 0, 600),
        (1, 0.5, False, 0, 120),
        (100, 0, False, 0, None),  # nobody let in: unknown, not infinity
        (100, None, False, 0, None),  # nothing measured yet
        (100, 100, True, 0, None),  # paused
    ],
)
def test_last_fan_wait(
    in_line: int, rate: float | None, paused: bool, starts_in: int, expected: int | None
) -> None:
    assert last_fan_wait(in_line, rate, paused, starts_in) == expected


@pytest.mark.parametrize(
    ("in_line", "seconds", "starts_in", "expected"),
    [
        (0, 60, 0, None),  # an empty line: no rate proposed (never 0)
        (0, -5, 0, None),
        (600, 60, 0, 600),
        (600, 600, 0, 60),
        (601, 600, 0, 61),  # rounded up: the rate must clear the line, not nearly
        (1, 1, 0, 60),
        (100, 120, 60, 100),  # only the time after the sale start counts
        (100, 60, 60, None),  # the deadline is the sale start: no rate can do it
        (100, 0, 0, None),
        (100, -10, 0, None),
    ],
)
def test_clearing_rate(in_line: int, seconds: int, starts_in: int, expected: int | None) -> None:
    assert clearing_rate(in_line, seconds, starts_in) == expected


def test_eta_preview_combines_both_rates() -> None:
    p = eta_preview("ev", 500, 100, 300, 240.0, False, 0, None, 90)
    assert p.in_line == 600
    assert p.last_fan_wait_seconds_configured == 120
    assert p.last_fan_wait_seconds_measured == 150
    assert p.rate_to_clear == 400
    assert p.configured_rate_clears_in_time is False
    assert eta_preview("ev", 10, 0, 600, None, False, 0, None, 60).configured_rate_clears_in_time
    paused = eta_preview("ev", 10, 0, 600, 600.0, True, 0)
    assert paused.last_fan_wait_seconds_measured is None and paused.rate_to_clear is None
    empty = eta_preview("ev", 0, 0, 600, None, False, 0, None, 60)
    assert (empty.rate_to_clear, empty.configured_rate_clears_in_time) == (None, True)


async def test_eta_endpoint(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    await join_many(client, ev["id"], 30)
    url = f"/api/admin/events/{ev['id']}/eta"
    plain = await (await client.get(url, headers=ADMIN)).json()
    assert plain["in_line"] == 30
    assert plain["last_fan_wait_seconds_configured"] is None  # rate 0: nobody let in
    assert plain["rate_to_clear"] is None
    await client.patch(f"/api/admin/events/{ev['id']}", json={"rate_per_min": 60}, headers=ADMIN)
    clear_by = (datetime.now(UTC) + timedelta(seconds=120)).replace(microsecond=0)
    for text in (clear_by.isoformat(), clear_by.isoformat().replace("+00:00", "Z")):
        answer = await (await client.get(url, params={"clear_by": text}, headers=ADMIN)).json()
        assert answer["last_fan_wait_seconds_configured"] == 30
        assert 118 <= answer["seconds_until_clear_by"] <= 120
        assert answer["rate_to_clear"] in (15, 16)  # 30 fans in ~2 minutes
        assert answer["configured_rate_clears_in_time"] is True
    # '+' unescaped in a query string arrives as a space: still understood.
    raw = f"{url}?clear_by={clear_by.isoformat()}"
    assert (await client.get(raw, headers=ADMIN)).status == 200
    for bad in ("tomorrow", "2026-12-01T10:00:00"):
        response = await client.get(url, params={"clear_by": bad}, headers=ADMIN)
        assert response.status == 422
        assert (await response.json())["detail"].startswith("clear_by:")


# ---- histogram percentiles ------------------------------------------------------------------------

INF = float("inf")


@pytest.mark.parametrize(
    ("cumulative", "q", "expected"),
    [
        ([0, 0, 0, 0], 0.5, None),  # no observations
        ([10, 10, 10, 10], 0.5, 0.005),  # all in the first bucket: linear from 0
        ([0, 10, 10, 10], 0.5, 0.0125),  # inside (0.01, 0.015]
        ([0, 0, 10, 10], 0.99, 0.0249),
        ([5, 10, 10, 10], 0.5, 0.01),  # the rank falls on a bucket's upper bound
        ([0, 0, 0, 4], 0.5, 0.025),  # beyond the last bound: the last finite bound
    ],
)
def test_histogram_quantile(cumulative: list[float], q: float, expected: float | None) -> None:
    got = histogram_quantile([0.01, 0.015, 0.025, INF], cumulative, q)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


# ---- the console in a real headless Chromium ------------------------------------------------------


@pytest.mark.browser
async def test_console_sign_in_create_watch_and_steer(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    context = await browser.new_context(viewport=ViewportSize(width=1400, height=1000))
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    await page.goto(f"{base_url}/admin")

    # Sign in: a wrong token gets a clear message; the right one opens the events list.
    await page.fill("#token", "not-the-token")
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#signin-error")).to_have_text("That admin token was not accepted.")
    await page.fill("#token", ADMIN_TOKEN)
    await page.fill("#operator", "console-test")
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#view-events")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('bo_admin_token')") == ADMIN_TOKEN

    # Create an event; the API's 422 lands next to the field it names.
    await page.click("#view-events a[href='#new']")
    await expect(page.locator("#view-new")).to_be_visible()
    await page.fill("#f-name", "Console Tour")
    await page.fill("#f-venue", "Test Arena")
    # The form's sale starts tomorrow by default; this one opens now.
    sale = await page.input_value("#f-sale")
    assert sale > await page.evaluate(LOCAL_NOW), sale
    await page.fill("#f-sale", await page.evaluate(LOCAL_NOW))
    await page.fill("#f-rate", "-5")
    await page.click("#create-submit")
    # A sale that opens at once is said and confirmed first.
    await expect(page.locator("#confirm-text")).to_contain_text("the sale opens at once")
    await page.click("#confirm-ok")
    rate_error = page.locator("#event-form [data-error-for='rate_per_min']")
    await expect(rate_error).to_have_text("Admissions per minute must be from 0 to 1000000")
    await expect(page.locator("#f-rate")).to_have_attribute("aria-invalid", "true")
    await page.fill("#f-rate", "0")
    await page.click("#create-submit")
    await page.click("#confirm-ok")
    await expect(page.locator("#view-event")).to_be_visible()
    await expect(page.locator("#event-heading")).to_have_text("Console Tour")
    event_id = page.url.split("#event/")[1]
    await expect(page.locator("#feed-state")).to_have_text("live")

    # A crowd waits.
    await crowd_joins(base_url, event_id, 400)
    await expect(page.locator("#t-waiting")).to_have_text("400")
    await expect(page.locator("#t-configured")).to_have_text("0")

    # Change the rate: confirm, then the measured admitted-per-minute figure follows.
    await page.fill("#ctl-rate", "600")
    await page.click("form[data-field='rate_per_min'] button")
    await expect(page.locator("#confirm")).to_be_visible()
    await expect(page.locator("#confirm-text")).to_contain_text("600")
    await page.click("#confirm-ok")
    await expect(page.locator("#t-configured")).to_have_text("600")
    await page.wait_for_function(
        "Number(document.getElementById('t-measured').textContent) >= 300", timeout=TIMEOUT_MS
    )
    await expect(page.locator("#audit-body tr[data-field='rate_per_min']")).to_contain_text(
        "console-test"
    )
    await page.locator("#c-rate").scroll_into_view_if_needed()
    await page.screenshot(path=str(SHOTS / "boxoffice-console.png"), full_page=True)

    # Pause: admission stops.
    await page.click("#pause-button")
    await page.click("#confirm-ok")
    await expect(page.locator("#event-state")).to_have_text("paused")
    await expect(page.locator("#pause-button")).to_have_text("Resume admission")
    await expect(page.locator("#audit-body tr[data-field='paused']")).to_be_visible()
    await asyncio.sleep(1.5)  # a sample or two after the pause reached Redis
    before = int(await page.locator("#t-admitted").text_content() or "0")
    await asyncio.sleep(2.5)
    after = int(await page.locator("#t-admitted").text_content() or "0")
    assert before == after, (before, after)
    assert 0 < after < 400
    async with admin.get(f"/api/admin/events/{event_id}/stats") as response:
        assert (await response.json())["admitted_total"] == after

    # The token never travelled in a URL.
    assert not [u for u in urls if ADMIN_TOKEN in u]
    await context.close()


# The browser's local time now, as a datetime-local input holds it.
LOCAL_NOW = """() => { const d = new Date(Date.now() - 60000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }"""


async def crowd_joins(url: str, event_id: str, count: int) -> None:
    async with aiohttp.ClientSession(url, cookie_jar=aiohttp.DummyCookieJar()) as session:
        # This crowd is about the console, not about bots: no challenge for its 400 joins.
        off = {"challenge": "off"}
        async with session.patch(f"/api/admin/events/{event_id}", json=off, headers=ADMIN) as r:
            assert r.status == 200, await r.text()

        async def one() -> None:
            async with session.post(f"/api/events/{event_id}/queue", headers=visitor()) as r:
                assert r.status == 200, await r.text()

        for _ in range(0, count, 50):
            await asyncio.gather(*(one() for _ in range(50)))
