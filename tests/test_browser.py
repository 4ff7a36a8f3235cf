"""The waiting room in a real headless Chromium: position shown, position falling as the line
moves, the admission message, a reload keeping the place, and the polling fallback."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from playwright.async_api import (
    Browser,
    Page,
    ViewportSize,
    WebSocketRoute,
    async_playwright,
    expect,
)
from redis.asyncio import Redis

from server.app import create_app
from server.settings import Settings

from .conftest import ADMIN, event_body, need

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = ViewportSize(width=390, height=844)
TIMEOUT_MS = 30_000
SHOTS = Path("/tmp")


@pytest.fixture
async def base_url(settings: Settings, redis: Redis, pg: asyncpg.Pool) -> AsyncIterator[str]:
    """The app on a real TCP port, so the browser can reach it."""
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def chromium_path() -> str:
    need(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str, base_url: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def admin(base_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url, headers=ADMIN) as session:
        yield session


async def create_event(admin: aiohttp.ClientSession, **overrides: Any) -> str:
    async with admin.post("/api/admin/events", json=event_body(**overrides)) as response:
        assert response.status == 201, await response.text()
        data: dict[str, Any] = await response.json()
    event_id: str = data["id"]
    return event_id


async def set_rate(admin: aiohttp.ClientSession, event_id: str, rate_per_min: int) -> None:
    async with admin.patch(
        f"/api/admin/events/{event_id}", json={"rate_per_min": rate_per_min}
    ) as response:
        assert response.status == 200, await response.text()


async def get_stats(admin: aiohttp.ClientSession, event_id: str) -> dict[str, Any]:
    async with admin.get(f"/api/admin/events/{event_id}/stats") as response:
        assert response.status == 200, await response.text()
        stats: dict[str, Any] = await response.json()
    return stats


async def others_join(base_url: str, event_id: str, count: int) -> list[aiohttp.ClientSession]:
    """`count` other visitors, each with its own cookie jar, take places before the browser."""
    sessions = []
    for i in range(count):
        session = aiohttp.ClientSession(base_url)
        sessions.append(session)
        async with session.post(f"/api/events/{event_id}/queue") as response:
            assert response.status == 200, await response.text()
            joined = await response.json()
        assert joined["state"] == "waiting"
        assert joined["position"] == i + 1
    return sessions


async def one_more_joins(base_url: str, event_id: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(base_url)
    async with session.post(f"/api/events/{event_id}/queue") as response:
        assert response.status == 200
    return session


async def close_all(sessions: list[aiohttp.ClientSession]) -> None:
    for session in sessions:
        await session.close()


async def phone_page(browser: Browser) -> Page:
    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


async def test_position_falls_then_admitted(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, name="Browser Tour", rate_per_min=0)
    others = await others_join(base_url, event_id, 3)
    # A change makes every process step the event at once: with rate 0, nobody may be let in.
    await set_rate(admin, event_id, 0)
    await asyncio.sleep(0.5)
    stats = await get_stats(admin, event_id)
    assert (stats["admitted_total"], stats["waiting"]) == (0, 3)
    try:
        page = await phone_page(browser)
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#event-name")).to_have_text("Browser Tour")
        await expect(page.locator("#view-waiting")).to_be_visible()
        await expect(page.locator("#position")).to_have_text("4")
        await expect(page.locator("#ahead")).to_have_text("3")
        await expect(page.locator("#eta")).to_have_text("unknown")  # nobody is let in: honest
        await expect(page.locator("#connection")).to_have_attribute("data-mode", "live")
        await expect(page.locator("#guidance")).to_contain_text("Keep this tab open")
        await expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
        await page.screenshot(path=str(SHOTS / "boxoffice-waiting-phone.png"), full_page=True)

        await set_rate(admin, event_id, 60)
        await page.wait_for_function(
            "Number(document.getElementById('position').textContent) < 4"
            " || !document.getElementById('view-admitted').hidden",
            timeout=TIMEOUT_MS,
        )
        admitted = page.locator("#view-admitted")
        await expect(admitted).to_be_visible(timeout=TIMEOUT_MS)
        await expect(page.locator("#admitted-heading")).to_have_text("It's your turn!")
        link = page.locator("#admitted-link")
        await expect(link).to_have_attribute("href", f"/e/{event_id}/seats")
        token = await page.evaluate(f"sessionStorage.getItem('bo_access_{event_id}')")
        assert isinstance(token, str) and token
        await page.screenshot(path=str(SHOTS / "boxoffice-admitted-phone.png"), full_page=True)

        await link.click()
        await expect(page.locator("#view-in")).to_be_visible()
        await expect(page.locator("#expiry-countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
        await page.screenshot(path=str(SHOTS / "boxoffice-seats-phone.png"), full_page=True)
    finally:
        await close_all(others)


async def test_reload_keeps_queue_id_and_position(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    others = await others_join(base_url, event_id, 2)
    try:
        page = await phone_page(browser)
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#position")).to_have_text("3")
        key = f"bo_queue_{event_id}"
        queue_id = await page.evaluate(f"localStorage.getItem('{key}')")
        assert isinstance(queue_id, str) and queue_id.startswith(f"{event_id}.")

        late = await one_more_joins(base_url, event_id)  # someone behind us
        await page.reload()
        await expect(page.locator("#view-waiting")).to_be_visible()
        await expect(page.locator("#position")).to_have_text("3")
        assert await page.evaluate(f"localStorage.getItem('{key}')") == queue_id

        # Without the stored id, the cookie alone still finds the same place.
        await page.evaluate(f"localStorage.removeItem('{key}')")
        await page.reload()
        await expect(page.locator("#position")).to_have_text("3")
        assert await page.evaluate(f"localStorage.getItem('{key}')") == queue_id
        await late.close()
    finally:
        await close_all(others)


async def test_polling_fallback_when_websocket_fails(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    others = await others_join(base_url, event_id, 1)
    try:
        page = await phone_page(browser)
        refused = 0

        async def refuse(ws: WebSocketRoute) -> None:
            nonlocal refused
            refused += 1
            await ws.close(code=1011, reason="refused by the test")

        await page.route_web_socket("**/api/queue/*/ws", refuse)
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#position")).to_have_text("2")
        await expect(page.locator("#connection")).to_have_attribute(
            "data-mode", "polling", timeout=TIMEOUT_MS
        )
        assert refused >= 3
        await set_rate(admin, event_id, 600)
        await expect(page.locator("#view-admitted")).to_be_visible(timeout=TIMEOUT_MS)
    finally:
        await close_all(others)
