"""Accessibility: axe-core (vendored, tests/vendor/axe-core) run in a real headless Chromium on
every fan page — event list, event page before its pre-queue, waiting room in the pre-queue and
in line, the seat map once admitted, checkout and payment, the tickets, the order page, the busy
page, the 404 page, the door — and on every view of the ops console, signed in, at phone and at
desktop size. Every page must have zero violations; a failure prints each one readably."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, ViewportSize, expect

from .helpers import checkin_token
from .test_browser import PHONE, TIMEOUT_MS, close_all, create_event, others_join
from .test_operators_browser import PASSWORD, code, invite, sign_in

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
DESKTOP = ViewportSize(width=1280, height=900)
SIZES = {"phone": PHONE, "desktop": DESKTOP}

# What a violation says: the rule, its impact and help, and each offending element's selector,
# HTML and what to fix.
_RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
    nodes: v.nodes.map((n) => ({ target: n.target.join(" "), html: n.html.slice(0, 200),
                                  summary: n.failureSummary })),
  }));
}"""


async def new_page(browser: Browser, size: str) -> Page:
    phone = size == "phone"
    context = await browser.new_context(
        viewport=SIZES[size],
        is_mobile=phone,
        has_touch=phone,
        device_scale_factor=2 if phone else 1,
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


class Audit:
    """Runs axe on one page after another and keeps what it finds, per page."""

    def __init__(self, size: str) -> None:
        self.size = size
        self.found: dict[str, list[dict[str, Any]]] = {}
        self.checked: list[str] = []

    async def check(self, page: Page, name: str) -> None:
        if not await page.evaluate("typeof window.axe === 'object'"):
            await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
        violations: list[dict[str, Any]] = await page.evaluate(_RUN)
        self.checked.append(name)
        if violations:
            self.found[name] = violations

    def report(self) -> str:
        lines = []
        for name, violations in self.found.items():
            lines.append(f"\n== {name} ({self.size}) ==")
            for v in violations:
                lines.append(f"- [{v['impact']}] {v['id']}: {v['help']} ({v['url']})")
                for n in v["nodes"]:
                    lines.append(f"    at {n['target']}: {n['html']}")
                    lines.append("      " + str(n["summary"]).replace("\n", "\n      "))
        return "\n".join(lines)

    def assert_clean(self) -> None:
        assert not self.found, "axe-core found violations:" + self.report()


async def make_event(admin: aiohttp.ClientSession, **overrides: Any) -> str:
    """An event without the bot challenge: the pages are checked, not the solving."""
    return await create_event(admin, challenge="off", **overrides)


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


@pytest.fixture(params=list(SIZES))
def size(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def audit(size: str) -> Audit:
    return Audit(size)


async def test_fan_pages_have_no_violations(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession, audit: Audit
) -> None:
    upcoming = await make_event(
        admin, name="Later Tour", sale_starts_at=later(hours=3), prequeue_opens_at=later(hours=2)
    )
    prequeue = await make_event(admin, name="Soon Tour", sale_starts_at=later(minutes=20))
    line = await make_event(admin, name="Line Tour", rate_per_min=0)
    on_sale = await make_event(admin, name="Seat Tour", rate_per_min=6000)
    page = await new_page(browser, audit.size)

    await page.goto(f"{base_url}/")
    await expect(page.get_by_text("Soon Tour")).to_be_visible()
    await audit.check(page, "event list /")

    await page.goto(f"{base_url}/e/{upcoming}")
    await expect(page.locator("#view-scheduled")).to_be_visible()
    await audit.check(page, "event page, before the pre-queue")

    await page.goto(f"{base_url}/e/{prequeue}")
    await expect(page.locator("#view-prequeue")).to_be_visible()
    await audit.check(page, "waiting room, pre-queue")

    ahead = await others_join(base_url, line, 3)
    try:
        await page.goto(f"{base_url}/e/{line}")
        await expect(page.locator("#view-waiting")).to_be_visible()
        await expect(page.locator("#position")).to_have_text("4")
        await audit.check(page, "waiting room, in line")
    finally:
        await close_all(ahead)

    await page.goto(f"{base_url}/e/{on_sale}")  # admitted at once: on to the seats by itself
    await page.wait_for_url(f"{base_url}/e/{on_sale}/seats")
    await expect(page.locator("#seat-A-1-1")).to_be_visible()
    await expect(page.locator("#turn-clock")).to_be_visible()
    await audit.check(page, "seat map, it's your turn")
    await page.go_back()  # Back to the waiting room: the turn and a link, not a loop
    await expect(page.locator("#view-admitted")).to_be_visible()
    await expect(page.locator("#admitted-moving")).to_be_hidden()
    await audit.check(page, "waiting room, admitted")
    await page.locator("#admitted-link").click()
    await expect(page.locator("#seat-A-1-1")).to_be_visible()
    await page.locator("#seat-A-1-1").click()
    await page.locator("#hold-button").click()
    await expect(page.locator("#view-held")).to_be_visible()
    await audit.check(page, "checkout (seats held)")
    await page.locator("#email").fill("fan@example.com")
    await page.locator("#checkout-button").click()
    await expect(page.locator("#view-pay")).to_be_visible()
    await audit.check(page, "payment")
    await page.locator("#card").fill("4242 4242 4242 4242")
    await page.locator("#pay-button").click()
    await expect(page.locator("#view-done")).to_be_visible()
    await audit.check(page, "tickets (confirmation)")
    order_link = await page.locator("#done-link").get_attribute("href")
    assert order_link and order_link.startswith("/orders/"), order_link
    await page.goto(f"{base_url}{order_link}")
    await expect(page.locator("#view-order")).to_be_visible()
    await audit.check(page, "order page with its tickets")

    await page.goto(f"{base_url}/static/busy.html")
    await expect(page.locator("h1")).to_be_visible()
    await audit.check(page, "busy page")

    missing = await page.goto(f"{base_url}/e/no-such-event")
    assert missing is not None and missing.status == 404
    await audit.check(page, "404 page")

    door_token = await checkin_token(admin, f"door-{audit.size}")
    await page.goto(f"{base_url}/door")
    await expect(page.locator("#view-signin")).to_be_visible()
    await audit.check(page, "door, sign-in")
    await page.locator("#token").fill(door_token)
    await page.locator("#signin-form button[type=submit]").click()
    await expect(page.locator("#view-scan")).to_be_visible()
    await expect(page.locator("#event option")).not_to_have_count(0)
    await audit.check(page, "door, scanner")

    await page.context.close()
    assert len(audit.checked) == 14, audit.checked
    audit.assert_clean()


async def open_view(page: Page, hash_: str, visible: str) -> None:
    await page.evaluate(f"location.hash = {json.dumps(hash_)}")
    await expect(page.locator(visible)).to_be_visible()


async def test_console_views_have_no_violations(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession, audit: Audit, size: str
) -> None:
    event_id = await make_event(admin, name="Console Tour", rate_per_min=0)
    made = await invite(admin, f"owner-{size}@example.com", "owner")
    page = await new_page(browser, size)
    await page.goto(f"{base_url}/admin")
    await expect(page.locator("#view-signin")).to_be_visible()
    await expect(page.locator("#shared-token-box")).to_be_visible()
    await audit.check(page, "sign-in")

    # The first sign-in's steps: a new password, an authenticator, recovery codes.
    await sign_in(page, made["email"], made["password"], code(made["totp_secret"]))
    await expect(page.locator("#password-form")).to_be_visible()
    await audit.check(page, "setup: new password")
    await page.fill("#pw-new", PASSWORD)
    await page.click("#pw-submit")
    await expect(page.locator("#enrol-box")).to_be_visible()
    await audit.check(page, "setup: authenticator")
    secret = (await page.locator("#enrol-secret").text_content() or "").strip()
    await page.fill("#enrol-otp", code(secret))
    await page.click("#enrol-form button[type=submit]")
    await expect(page.locator("#recovery-box")).to_be_visible()
    await audit.check(page, "setup: recovery codes")
    await page.click("#setup-done")
    await expect(page.locator("#view-events")).to_be_visible()
    await expect(page.locator("#events-body tr")).not_to_have_count(0)
    await audit.check(page, "events")

    await open_view(page, "#new", "#view-new")
    await audit.check(page, "new event")
    await page.click("#create-submit")  # nothing filled in: the errors next to the fields
    await expect(page.locator("#event-form [data-error-for='name']")).not_to_be_empty()
    await audit.check(page, "new event with its errors")

    await open_view(page, f"#event/{event_id}", "#view-event")
    await expect(page.locator("#feed-state")).to_have_text("live")
    await expect(page.locator("#audit-body tr")).not_to_have_count(0)
    await audit.check(page, "one event, live")
    await page.click("#pause-button")
    await expect(page.locator("#confirm")).to_be_visible()
    await audit.check(page, "confirmation dialog")
    await page.click("#confirm-ok")
    await expect(page.locator("#event-state")).to_have_text("paused")

    await open_view(page, "#operators", "#view-operators")
    await expect(page.locator("#operators-body tr")).not_to_have_count(0)
    await audit.check(page, "operators")
    await open_view(page, "#tokens", "#view-tokens")
    await audit.check(page, "tokens")
    await open_view(page, "#account", "#view-account")
    await audit.check(page, "account")

    await page.context.close()
    assert len(audit.checked) == 12, audit.checked
    audit.assert_clean()
