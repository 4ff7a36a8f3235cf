"""What a fan sees, in a real headless Chromium at phone size: a nap that keeps the place, a
lost connection blamed on nobody's server, ETAs and times in the venue's zone, real 404 pages."""

from __future__ import annotations

import re
import time

import aiohttp
import pytest
from playwright.async_api import Browser, Route, expect
from redis.asyncio import Redis

from server.core.keys import EventKeys
from server.waiting.line import Scripts

from . import test_browser as tb
from .test_browser import close_all, create_event, phone_page

pytestmark = pytest.mark.browser


async def test_a_nap_keeps_the_place(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession, redis: Redis
) -> None:
    event_id = await create_event(admin, rate_per_min=0, challenge="off")
    others = [aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))]
    others.append(aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)))
    try:
        for i, session in enumerate(others):
            async with session.post(f"/api/events/{event_id}/queue") as response:
                assert (await response.json())["position"] == i + 1
        page = await phone_page(browser)
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#position")).to_have_text("3")
        rule = page.locator("#away-rule")
        await expect(rule).to_be_visible()
        await expect(rule).to_contain_text("30 minutes")
        await expect(rule).to_contain_text("you go first when you are back")
        context = page.context
        await page.close()  # the phone sleeps: no socket, no poll

        # ten minutes later, as the reaper sees it: every silent fan stepped out of the line
        k = EventKeys(event_id)
        later = int(time.time() * 1000) + 10 * 60_000
        reaped = await Scripts(redis).reap(k, 120_000, now_ms=later)
        assert reaped.stepped_away == 3 and reaped.gone == 0
        assert await redis.zcard(k.line) == 0
        for i, session in enumerate(others):  # the two ahead come back too, same places
            async with session.post(f"/api/events/{event_id}/queue") as response:
                assert (await response.json())["position"] == i + 1

        page = await context.new_page()  # the phone wakes
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#view-waiting")).to_be_visible()
        await expect(page.locator("#position")).to_have_text("3")
        assert await redis.zcard(k.away) == 0
    finally:
        await close_all(others)


async def test_a_lost_connection_is_not_called_a_busy_server(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0, challenge="off")
    page = await phone_page(browser)
    failed: list[str] = []

    async def drop_first_join(route: Route) -> None:
        if route.request.method == "POST" and not failed:
            failed.append(route.request.url)
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    await page.route(f"**/api/events/{event_id}/queue", drop_first_join)
    await page.goto(f"{base_url}/e/{event_id}")
    await expect(page.locator("#connection-text")).to_contain_text("offline")
    text = await page.locator("#connection-text").text_content() or ""
    assert "busy" not in text
    assert "30 minutes" in text
    await expect(page.locator("#position")).to_have_text("1")
    assert failed


async def test_times_and_the_eta_in_the_venue_zone(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    """The browser lives in Berlin, the venue in New York: the page speaks New York time."""
    event_id = await create_event(
        admin, rate_per_min=1, timezone="America/New_York", challenge="off"
    )
    others = [aiohttp.ClientSession(base_url) for _ in range(3)]
    try:
        for session in others:
            async with session.post(f"/api/events/{event_id}/queue") as response:
                assert response.status == 200
        context = await browser.new_context(
            viewport=tb.PHONE, is_mobile=True, has_touch=True, timezone_id="Europe/Berlin"
        )
        page = await context.new_page()
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#event-meta")).to_have_text(re.compile(r"\bE[SD]T\b"))
        clock = page.locator("#eta-clock")
        await expect(clock).to_be_visible()
        await expect(clock).to_have_text(
            re.compile(r"^Your turn around \d{1,2}:\d\d\s?(AM|PM)? E[SD]T · updated \d+ s ago$")
        )
        await expect(page.locator("#eta")).not_to_have_text("unknown")
        await context.close()
    finally:
        await close_all(others)


async def test_busy_page_reloads_by_script_not_meta_refresh(
    base_url: str, browser: Browser
) -> None:
    """axe rates <meta http-equiv=refresh> critical: busy.js alone reloads, at a jittered moment
    it announces, and a button reloads at once."""
    page = await phone_page(browser)
    await page.goto(f"{base_url}/static/busy.html")
    assert await page.locator("meta[http-equiv]").count() == 0
    await expect(page.locator("h1")).to_have_text("We are very busy right now")
    assert await page.evaluate("document.documentElement.lang") == "en"
    await expect(page.locator("#busy-retry")).to_have_text(
        re.compile(r"^Trying again in \d+ seconds?…$")
    )
    await page.context.close()
