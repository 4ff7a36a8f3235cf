"""The console's bot-check card in a real Chromium: challenge counters, the cost level, the top
sources by places taken, the counted-then-confirmed purge of one source, and the policy select,
each change in the audit trail. The app trusts 127.0.0.1 as a proxy, so X-Forwarded-For names
each client address."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest
from playwright.async_api import Browser, ViewportSize, expect

from server.core.settings import Settings

from .helpers import ADMIN, ADMIN_TOKEN, event_body, join, visitor
from .test_browser import SHOTS, TIMEOUT_MS

pytestmark = pytest.mark.browser
FARM, FAN = "203.0.113.7", "198.51.100.20"


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return msgspec.structs.replace(base_settings, trusted_proxies="127.0.0.1")


async def test_console_bot_check_purge_and_policy(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    async with admin.post("/api/admin/events", json=event_body(rate_per_min=0)) as r:
        assert r.status == 201, await r.text()
        event_id = (await r.json())["id"]
    async with aiohttp.ClientSession(base_url, cookie_jar=aiohttp.DummyCookieJar()) as fans:
        for address in [FARM] * 3 + [FAN]:
            headers = {**visitor(), "X-Forwarded-For": address}
            async with await join(fans, event_id, headers) as r:
                assert r.status == 200, await r.text()

    page = await (
        await browser.new_context(viewport=ViewportSize(width=1400, height=1000))
    ).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{base_url}/admin#event/{event_id}")
    await page.fill("#token", ADMIN_TOKEN)
    await page.fill("#operator", "bot-hunter")
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#view-event")).to_be_visible()

    farm_row = page.locator(f"#sources-body tr[data-source='{FARM}'] td")
    await expect(farm_row.nth(1)).to_have_text("3")  # places taken
    await expect(farm_row.nth(2)).to_have_text("3")  # waiting now
    await expect(page.locator(f"#sources-body tr[data-source='{FAN}'] td").nth(1)).to_have_text("1")
    await expect(page.locator("#b-solved")).to_have_text("4")
    await expect(page.locator("#b-issued")).to_have_text("4")
    await expect(page.locator("#b-failed")).to_have_text("0")
    await expect(page.locator("#b-level")).to_have_text("0")
    await expect(page.locator("#ctl-challenge")).to_have_value("adaptive")
    await page.locator("#bots").screenshot(path=str(SHOTS / "boxoffice-console-bots.png"))

    # Purge the farm: the count comes first, in the confirmation.
    await page.get_by_role("button", name=f"Purge the waiting places of {FARM}").click()
    await expect(page.locator("#confirm")).to_be_visible()
    await expect(page.locator("#confirm-text")).to_contain_text(f"3 waiting places of {FARM}")
    await page.click("#confirm-ok")
    await expect(page.locator("#bots-status")).to_have_text(f"Purged 3 waiting places of {FARM}.")
    await expect(farm_row.nth(2)).to_have_text("0")
    await expect(page.locator("#b-purged")).to_have_text("3")
    audit = page.locator("#audit-body tr[data-action='purge_source']")
    await expect(audit).to_contain_text("bot-hunter")
    await expect(audit).to_contain_text(f'"source":"{FARM}"')
    async with admin.get(f"/api/admin/events/{event_id}/stats") as r:
        assert (await r.json())["waiting"] == 1

    # Nothing left to purge: the typed-in source says so without a confirmation.
    await page.fill("#purge-source", FARM)
    await page.click("#purge-form button[type=submit]")
    await expect(page.locator("#bots-status")).to_contain_text("nothing to purge")
    await page.fill("#purge-source", "not an address")
    await page.click("#purge-form button[type=submit]")
    await expect(page.locator("#purge-form [data-error-for='source']")).to_contain_text("source:")

    # The policy select: confirmed, applied, audited.
    await page.select_option("#ctl-challenge", "always")
    await page.click("#policy-form button[type=submit]")
    await expect(page.locator("#confirm-text")).to_contain_text("always")
    await page.click("#confirm-ok")
    await expect(page.locator("#b-level")).to_have_text("2")
    await expect(page.locator("#audit-body tr[data-field='challenge']")).to_contain_text("always")
    async with admin.get(f"/api/admin/events/{event_id}", headers=ADMIN) as r:
        assert (await r.json())["settings"]["challenge"] == "always"
