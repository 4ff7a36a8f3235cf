"""Operators in the console, in a real headless Chromium: an owner's first sign-in (new password,
an authenticator enrolled from the QR code's secret, recovery codes), the step-up prompt on
closing a sale, sign-out everywhere; a viewer who gets no write controls."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pyotp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from .test_browser import SHOTS, TIMEOUT_MS, create_event

pytestmark = pytest.mark.browser
PASSWORD = "a fresh passphrase 42"


def code(secret: str, ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


async def invite(http: aiohttp.ClientSession, email: str, role: str) -> dict[str, Any]:
    async with http.post("/api/admin/operators", json={"email": email, "role": role}) as r:
        assert r.status == 201, await r.text()
        made: dict[str, Any] = await r.json()
    return made


async def console(browser: Browser, base_url: str) -> Page:
    context = await browser.new_context(viewport=ViewportSize(width=1400, height=1000))
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(f"{base_url}/admin")
    return page


async def sign_in(page: Page, email: str, password: str, otp: str) -> None:
    await page.fill("#login-email", email)
    await page.fill("#login-password", password)
    await page.fill("#login-otp", otp)
    await page.click("#login-form button[type=submit]")


async def first_sign_in(page: Page, made: dict[str, Any], otp: str) -> tuple[str, list[str]]:
    """Sign in with the invitation, choose a password, enrol a new authenticator from the page:
    (its secret, the recovery codes)."""
    await sign_in(page, made["email"], made["password"], otp)
    await expect(page.locator("#view-setup")).to_be_visible()
    await expect(page.locator("#nav")).to_be_hidden()
    await page.fill("#pw-new", PASSWORD)
    await page.click("#pw-submit")
    await expect(page.locator("#enrol-box")).to_be_visible()
    src = await page.locator("#enrol-qr").get_attribute("src")
    assert src is not None and src.startswith("data:image/svg+xml;base64,")
    secret = (await page.locator("#enrol-secret").text_content() or "").strip()
    assert len(secret) == 32 and secret != made["totp_secret"]
    await page.fill("#enrol-otp", code(secret))
    await page.click("#enrol-form button[type=submit]")
    await expect(page.locator("#recovery-box")).to_be_visible()
    codes = [c.strip() for c in await page.locator("#recovery-list code").all_text_contents()]
    assert len(codes) == 10
    await page.click("#setup-done")
    await expect(page.locator("#view-events")).to_be_visible()
    return secret, codes


async def test_owner_enrols_steps_up_to_close_and_signs_out_everywhere(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    made = await invite(admin, "owner@example.com", "owner")
    event_id = await create_event(admin, name="Step-up Tour", rate_per_min=0)
    page = await console(browser, base_url)
    await expect(page.locator("#shared-token-box")).to_be_visible()  # the console says so
    await sign_in(page, made["email"], made["password"], "000000")
    await expect(page.locator("#login-error")).to_have_text("Email, password or code not accepted.")
    secret, codes = await first_sign_in(page, made, code(made["totp_secret"]))
    await expect(page.locator("#whoami")).to_have_text("owner@example.com (owner)")
    await expect(page.locator("#nav a[href='#operators']")).to_be_visible()

    # Closing the sale asks for a fresh code; a wrong one is refused, the right one closes.
    await page.goto(f"{base_url}/admin#event/{event_id}")
    await expect(page.locator("#feed-state")).to_have_text("live")
    await page.click("#close-button")
    await page.click("#confirm-ok")
    await expect(page.locator("#stepup")).to_be_visible()
    wrong = "000000" if code(secret, 1) != "000000" else "111111"
    await page.fill("#stepup-code", wrong)
    await page.click("#stepup-ok")
    await expect(page.locator("#stepup-error")).to_contain_text("not accepted")
    await page.fill("#stepup-code", code(secret, 1))
    await page.click("#stepup-ok")
    await expect(page.locator("#event-state")).to_have_text("closed")
    row = page.locator("#audit-body tr[data-field='closed']")
    await expect(row).to_contain_text("owner@example.com")
    await page.screenshot(path=str(SHOTS / "boxoffice-console-step-up.png"), full_page=True)

    # A second device, signed in with a recovery code; "sign out everywhere" ends both.
    other = await console(browser, base_url)
    await sign_in(other, "owner@example.com", PASSWORD, codes[0])
    await expect(other.locator("#view-events")).to_be_visible()
    await page.click("#nav a[href='#account']")
    await page.click("#sign-out-everywhere")
    await page.click("#confirm-ok")
    await expect(page.locator("#view-signin")).to_be_visible()
    await expect(page.locator("#login-error")).to_contain_text("Signed out everywhere (2 sessions)")
    await other.reload()
    await expect(other.locator("#view-signin")).to_be_visible()
    status = await other.evaluate("fetch('/api/admin/session').then(r => r.status)")
    assert status == 401


async def test_viewer_sees_no_write_controls(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    made = await invite(admin, "viewer@example.com", "viewer")
    event_id = await create_event(admin, name="Watch Tour", rate_per_min=0)
    page = await console(browser, base_url)
    await first_sign_in(page, made, "")  # a viewer may sign in without a code
    await expect(page.locator("#nav a[href='#new']")).to_be_hidden()
    await expect(page.locator("#nav a[href='#operators']")).to_be_hidden()
    await page.click(f"#events-body a[href='#event/{event_id}']")
    await expect(page.locator("#feed-state")).to_have_text("live")
    await expect(page.locator("#t-configured")).to_have_text("0")
    for control in ("#ctl-rate", "#close-button", "#pause-button", "#admit-form"):
        await expect(page.locator(control)).to_be_hidden()
    # The API refuses the viewer too, whatever the page shows.
    answer = await page.evaluate(
        """async (id) => {
            const me = await (await fetch('/api/admin/session')).json();
            const r = await fetch('/api/admin/events/' + id, {method: 'PATCH',
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token},
              body: JSON.stringify({rate_per_min: 5000})});
            return [r.status, (await r.json()).error];
        }""",
        event_id,
    )
    assert answer == [403, "forbidden"]
    async with admin.get(f"/api/admin/events/{event_id}") as r:
        assert (await r.json())["settings"]["rate_per_min"] == 0
