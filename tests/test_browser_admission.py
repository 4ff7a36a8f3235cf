"""The moment of admission in a real headless Chromium at phone size: the waiting page moves on
to the seat map by itself with "It's your turn" and the time left; each page shows one countdown,
and it agrees with the server's expiry to the second even on a phone whose clock is four minutes
fast; the turn alert is opt-in (the notification permission is asked on a click only) and shows
a notification when admission comes while the tab is in the background."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from . import test_browser as tb
from .test_browser import SHOTS, TIMEOUT_MS, create_event, set_rate

pytestmark = pytest.mark.browser

# Records what the page asks of the browser's Notification API, then lets the real one act.
NOTIFICATION_SPY = """
window.__notifications = [];
window.__permissionAsks = [];
(() => {
  const Real = window.Notification;
  if (!Real) return;
  function Spy(title, options) {
    window.__notifications.push({ title: title, body: options && options.body });
    return new Real(title, options);
  }
  Spy.prototype = Real.prototype;
  Object.defineProperty(Spy, "permission", { get: () => Real.permission });
  Spy.requestPermission = function () {
    window.__permissionAsks.push(navigator.userActivation.isActive);
    return Real.requestPermission.apply(Real, arguments);
  };
  window.Notification = Spy;
})();
"""
# Headless Chromium reports every tab visible; a background tab reads like this.
BACKGROUND_TAB = """
Object.defineProperty(Document.prototype, "visibilityState", { get: () => "hidden" });
Object.defineProperty(Document.prototype, "hidden", { get: () => true });
"""
FAST_CLOCK = timedelta(minutes=4)


async def phone(browser: Browser, **options: Any) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(
        viewport=tb.PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, **options
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.add_init_script(NOTIFICATION_SPY)
    return context, page


def seconds(countdown: str) -> int:
    """A countdown as shown ("09:58", "1:02:03") in seconds."""
    total = 0
    for part in countdown.split(":"):
        total = total * 60 + int(part)
    return total


def ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


async def server_now(page: Page, queue_id: str) -> dict[str, Any]:
    """The fan's status as the server answers it now (with its clock, `server_time`)."""
    response = await page.request.get(f"/api/queue/{queue_id}")
    assert response.status == 200, await response.text()
    status: dict[str, Any] = await response.json()
    return status


async def assert_agrees(page: Page, timer: str, expires: str, before: float, queue_id: str) -> None:
    """The countdown shown lies between the server's time left just before it was read
    (`before`, server ms) and just after, to the second it is shown in."""
    shown = seconds((await page.locator(timer).text_content() or "").strip())
    after = ms((await server_now(page, queue_id))["server_time"])
    low, high = (ms(expires) - after) / 1000, (ms(expires) - before) / 1000
    assert int(low) - 1 <= shown <= int(high) + 2, (shown, low, high)


async def one_timer(page: Page, timer: str) -> None:
    """Exactly one countdown is visible, and it is `timer`."""
    visible = page.locator("[role=timer]:visible")
    await expect(visible).to_have_count(1)
    assert await visible.get_attribute("id") == timer.lstrip("#")


async def test_admitted_moves_on_by_itself_with_one_countdown_that_agrees_with_the_server(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, name="Turn Tour", rate_per_min=0, challenge="off")
    context, page = await phone(browser, base_url=base_url)
    try:
        # this phone's clock is four minutes fast: a countdown by it would be four minutes short
        await page.clock.set_system_time(datetime.now(UTC) + FAST_CLOCK)
        await page.goto(f"/e/{event_id}")
        await expect(page.locator("#position")).to_have_text("1")
        queue_id = await page.evaluate(f"localStorage.getItem('bo_queue_{event_id}')")
        assert isinstance(queue_id, str)

        await set_rate(admin, event_id, 60)
        await page.wait_for_url(f"{base_url}/e/{event_id}/seats", timeout=TIMEOUT_MS)
        await expect(page.locator("#view-pick")).to_be_visible()
        banner = page.locator("#turn-clock")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("It's your turn.")
        await expect(banner).to_contain_text("Time left to choose")
        await expect(page).to_have_title(re.compile(r"^It's your turn — Turn Tour"))
        await expect(page.locator("#announcer")).to_contain_text("It's your turn!")
        await one_timer(page, "#turn-countdown")
        status = await server_now(page, queue_id)
        assert status["state"] == "admitted"
        await assert_agrees(
            page,
            "#turn-countdown",
            status["access_expires_at"],
            ms(status["server_time"]),
            queue_id,
        )
        await page.screenshot(path=str(SHOTS / "boxoffice-turn-phone.png"), full_page=True)

        # held: the hold's countdown is now the only one (the turn's is gone)
        await page.locator("#seat-A-1-1").click()
        async with page.expect_response(
            lambda r: r.url.endswith("/holds") and r.request.method == "POST"
        ) as answer:
            await page.locator("#hold-button").click()
        hold = await (await answer.value).json()
        await expect(page.locator("#view-held")).to_be_visible()
        await one_timer(page, "#hold-countdown")
        await assert_agrees(
            page, "#hold-countdown", hold["expires_at"], ms(hold["server_time"]), queue_id
        )
        await page.screenshot(path=str(SHOTS / "boxoffice-held-one-countdown.png"), full_page=True)

        await page.locator("#email").fill("fan@example.com")
        await page.locator("#checkout-button").click()
        await expect(page.locator("#view-pay")).to_be_visible()
        await one_timer(page, "#pay-countdown")
        assert await page.evaluate("window.__notifications.length") == 0  # alerts not chosen
    finally:
        await context.close()


async def test_notification_permission_is_asked_only_on_a_click(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0, challenge="off")
    context, page = await phone(browser, base_url=base_url)
    try:
        await page.goto(f"/e/{event_id}")
        await expect(page.locator("#view-waiting")).to_be_visible()
        button = page.locator("#alerts-button")
        await expect(button).to_have_attribute("aria-pressed", "false")
        assert await page.evaluate("window.__permissionAsks") == []
        await button.click()
        await expect(button).to_have_attribute("aria-pressed", "true")
        # asked once, from the click (the browser's user activation was live)
        assert await page.evaluate("window.__permissionAsks") == [True]
        await expect(page.locator("#alerts-note")).to_contain_text("play a sound and vibrate")
        await page.reload()  # the choice is kept, and nothing is asked again
        await expect(button).to_have_attribute("aria-pressed", "true")
        assert await page.evaluate("window.__permissionAsks") == []
        await button.click()  # off again
        await expect(button).to_have_attribute("aria-pressed", "false")
        assert await page.evaluate("window.__permissionAsks") == []
    finally:
        await context.close()


async def test_turn_alert_notifies_a_fan_in_another_tab(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, name="Alert Tour", rate_per_min=0, challenge="off")
    context, page = await phone(browser, base_url=base_url, permissions=["notifications"])
    try:
        await page.add_init_script(BACKGROUND_TAB)
        await page.goto(f"/e/{event_id}")
        await expect(page.locator("#view-waiting")).to_be_visible()
        await page.locator("#alerts-button").click()
        await expect(page.locator("#alerts-note")).to_contain_text("show a notification")
        assert await page.evaluate("window.__notifications") == []

        await set_rate(admin, event_id, 60)
        await page.wait_for_url(f"{base_url}/e/{event_id}/seats", timeout=TIMEOUT_MS)
        await page.wait_for_function("window.__notifications.length > 0")
        shown = await page.evaluate("window.__notifications")
        assert len(shown) == 1, shown
        assert shown[0]["title"] == "It's your turn — Alert Tour"
        assert re.fullmatch(r"Choose your seats within \d+ minutes?\.", shown[0]["body"]), shown
        await page.reload()  # greeted once: a reload does not alert again
        await expect(page.locator("#view-pick")).to_be_visible()
        assert await page.evaluate("window.__notifications") == []
    finally:
        await context.close()
