"""The ops console on a phone (390 px, real headless Chromium): no sideways scrolling on any view,
a new event whose sale opens later by default, every refused field said in words next to it at
once ("euro" refused, not cut to EUR), an event edited, postponed, cancelled and reopened before
its sale, sold-out and max-seats controls, audit times with their dates, a heat map of seats a
finger can see, accessible seats marked and unmarked (counted before confirming, refusals next to
the field, audited), and an ETA preview that proposes no rate for an empty line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from .helpers import ADMIN_TOKEN
from .test_axe import new_page
from .test_browser import create_event

pytestmark = pytest.mark.browser


async def console(browser: Browser, base_url: str) -> Page:
    page = await new_page(browser, "phone")
    await page.goto(f"{base_url}/admin")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#signin-form button[type=submit]")
    await expect(page.locator("#view-events")).to_be_visible()
    return page


async def no_sideways_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"{page.url}: {widths[0]} px wide on a {widths[1]} px screen"


async def confirm(page: Page, text: str) -> None:
    await expect(page.locator("#confirm-text")).to_contain_text(text)
    await page.click("#confirm-ok")


async def test_new_event_on_a_phone(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    page = await console(browser, base_url)
    await page.click("#view-events a[href='#new']")
    await expect(page.locator("#view-new")).to_be_visible()
    await no_sideways_scroll(page)
    # The default sale opens later (tomorrow), never at once.
    sale = await page.input_value("#f-sale")
    now = await page.evaluate("Date.now()")
    opens = await page.evaluate(f"new Date({sale!r}).getTime()")
    assert opens - now > 12 * 3600 * 1000, sale

    # Everything wrong at once: each problem in words next to its own field.
    await page.fill("#f-venue", "Arena")
    await page.fill("#f-currency", "euro")
    await page.fill("#s0-price", "12.5")
    await page.fill("#f-rate", "-5")
    await page.click("#create-submit")
    errors = {
        "name": "Name is required",
        "currency": "Currency must be a three-letter ISO 4217 code in capitals, such as EUR",
        "sections[0].price": "Price must be a whole number of cents",
        "rate_per_min": "Admissions per minute must be from 0 to 1000000",
    }
    for path, message in errors.items():
        await expect(page.locator(f"#event-form [data-error-for='{path}']")).to_have_text(message)
    for field in ("#f-name", "#f-currency", "#s0-price", "#f-rate"):
        await expect(page.locator(field)).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#f-name")).to_be_focused()
    await no_sideways_scroll(page)
    async with admin.get("/api/admin/events") as r:
        assert await r.json() == []  # "euro" was not cut to EUR and stored

    await page.fill("#f-name", "Phone Tour")
    await page.fill("#f-currency", "EUR")
    await page.fill("#s0-price", "4500")
    await page.fill("#f-rate", "60")
    await page.click("#create-submit")
    await expect(page.locator("#view-event")).to_be_visible()
    await expect(page.locator("#event-heading")).to_have_text("Phone Tour")
    await expect(page.locator("#event-state")).to_have_text("scheduled")
    await page.context.close()


async def test_edit_postpone_cancel_reopen_on_a_phone(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    now = datetime.now(UTC)
    sale = (now + timedelta(days=2)).replace(second=0, microsecond=0)
    event_id = await create_event(
        admin, name="Edit Tour", rate_per_min=0, sale_starts_at=sale.isoformat()
    )
    page = await console(browser, base_url)
    await no_sideways_scroll(page)
    await page.evaluate(f"location.hash = '#event/{event_id}'")
    await expect(page.locator("#feed-state")).to_have_text("live")
    await expect(page.locator("#close-button")).to_have_text("Cancel sale")

    # Edit and postpone: two fields, one confirmation, both audited with dates.
    await page.fill("#e-name", "Edited Tour")
    later = await page.evaluate(
        "(ms) => { const d = new Date(ms); return new Date(d.getTime() -"
        " d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }",
        int((sale + timedelta(days=1)).timestamp() * 1000),
    )
    await page.fill("#e-sale", later)
    await page.click("#edit-submit")
    await confirm(page, "Name to Edited Tour")
    await expect(page.locator("#event-heading")).to_have_text("Edited Tour")
    async with admin.get(f"/api/admin/events/{event_id}") as r:
        got: dict[str, Any] = await r.json()
    assert datetime.fromisoformat(got["sale_starts_at"]) == sale + timedelta(days=1)
    row = page.locator("#audit-body tr[data-field='sale_starts_at']")
    await expect(row).to_be_visible()
    year = str(datetime.now().year)
    await expect(row.locator("td").first).to_contain_text(year)  # the date, not only the time

    # A refused change: the message next to the field.
    await page.fill("#e-starts", later)  # the event would start with its sale
    await page.click("#edit-submit")
    await page.click("#confirm-ok")
    await expect(page.locator("#edit-form [data-error-for='sale_starts_at']")).to_have_text(
        "The sale must start before the event"
    )

    # Max seats per order and sold out are controls too.
    await page.fill("#ctl-seats", "4")
    await page.click("form[data-field='max_seats_per_order'] button")
    await confirm(page, "max seats per order to 4")
    await expect(page.locator("#control-status")).to_have_text("Set max seats per order to 4.")
    await page.click("#sold-out-button")
    await confirm(page, "sold out")
    await expect(page.locator("#event-state")).to_have_text("sold_out")
    await page.click("#sold-out-button")
    await confirm(page, "back on sale")
    await expect(page.locator("#event-state")).to_have_text("scheduled")

    # Cancel before the sale, then reopen.
    await page.click("#close-button")
    await confirm(page, "Cancel the sale before it starts")
    await expect(page.locator("#event-state")).to_have_text("closed")
    await expect(page.locator("#reopen-button")).to_be_visible()
    await page.click("#reopen-button")
    await confirm(page, "Reopen the sale")
    await expect(page.locator("#event-state")).to_have_text("scheduled")
    async with admin.get(f"/api/admin/events/{event_id}/audit") as r:
        fields = [a["field"] for a in await r.json()]
    for field in ("name", "sale_starts_at", "max_seats_per_order", "sold_out", "closed"):
        assert field in fields, (field, fields)
    await no_sideways_scroll(page)
    await page.context.close()


async def test_live_view_on_a_phone(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    event_id = await create_event(admin, name="Empty Tour", rate_per_min=600)
    for rate in (10, 20, 30):  # audit rows: the audit table must fit too
        async with admin.patch(f"/api/admin/events/{event_id}", json={"rate_per_min": rate}) as r:
            assert r.status == 200
    page = await console(browser, base_url)
    await page.evaluate(f"location.hash = '#event/{event_id}'")
    await expect(page.locator("#feed-state")).to_have_text("live")
    await expect(page.locator("#audit-body tr")).to_have_count(4)
    await expect(page.locator("#heat .heat-grid span")).to_have_count(50)
    await no_sideways_scroll(page)
    # Each cell of the stacked audit table names its column.
    await expect(page.locator("#audit-body tr").first.locator("td").first).to_have_attribute(
        "data-label", "When"
    )
    # A seat of the heat map is big enough to see on a phone (was 10 px).
    box = await page.locator("#heat .heat-grid span").first.bounding_box()
    assert box is not None and box["width"] >= 16, box

    # Nobody in line: the preview proposes no rate (never 0).
    soon = await page.evaluate(
        "() => { const d = new Date(Date.now() + 3600000); return new Date(d.getTime() -"
        " d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }"
    )
    await page.fill("#eta-clear-by", soon)
    await page.click("#eta-form button[type=submit]")
    await expect(page.locator("#eta-needed")).to_have_text(
        "Nobody is in line: there is nothing to clear, so no rate to propose."
    )
    await expect(page.locator("#eta-apply")).to_be_hidden()
    assert not re.search(r"\b0 admissions/min", await page.locator("#view-event").inner_text())
    await page.context.close()


async def seat_map_accessible(admin: aiohttp.ClientSession, event_id: str) -> list[str]:
    async with admin.get(f"/api/events/{event_id}/seats") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
    return sorted(
        seat["id"]
        for section in body["sections"]
        for row in section.get("rows") or []
        for seat in row["seats"]
        if seat.get("accessible")
    )


async def test_accessible_seats_marked_and_unmarked_on_a_phone(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    event_id = await create_event(admin, name="Access Tour", rate_per_min=0)
    page = await console(browser, base_url)
    await page.evaluate(f"location.hash = '#event/{event_id}'")
    await expect(page.locator("#heat .heat-grid span")).to_have_count(50)
    await expect(page.locator("#acc-now")).to_have_text("No accessible seats.")
    await no_sideways_scroll(page)

    # Refusals next to the field, in words, nothing changed: a seat the event has not, a seat
    # id written another way (named), nothing typed.
    field = page.locator("#accessible-form [data-error-for='seats']")
    await page.fill("#acc-seats", "A-9-1")
    await page.click("#acc-mark")
    await confirm(page, "Mark 1 seat accessible: A-9-1?")
    await expect(field).to_have_text("No such assigned seats at this event: A-9-1")
    await expect(page.locator("#acc-seats")).to_have_attribute("aria-invalid", "true")
    await page.fill("#acc-seats", "A-1-1 A-01-2")
    await page.click("#acc-mark")
    await confirm(page, "Mark 2 seats accessible")
    await expect(field).to_have_text(
        "A-01-2: Seats must be written section-row-seat, such as A-3-17"
    )
    await page.fill("#acc-seats", "  ")
    await page.click("#acc-mark")
    await expect(field).to_have_text("seats: enter seat ids such as A-3-17")
    await expect(page.locator("#confirm")).to_be_hidden()  # nothing to confirm
    # Cancelled at the confirmation: nothing sent.
    await page.fill("#acc-seats", "A-1-1")
    await page.click("#acc-mark")
    await expect(page.locator("#confirm-text")).to_contain_text("Mark 1 seat accessible")
    await page.click("#confirm-cancel")
    assert await seat_map_accessible(admin, event_id) == []

    # A run of one row and a repeat: the count before confirming is of distinct seats.
    await page.fill("#acc-seats", "A-2-3..5, A-2-4 A-3-7")
    await page.click("#acc-mark")
    await confirm(page, "Mark 4 seats accessible: A-2-3, A-2-4, A-2-5, A-3-7?")
    await expect(page.locator("#acc-status")).to_have_text(
        "Marked 4 seats accessible: A-2-3, A-2-4, A-2-5, A-3-7; 4 seats accessible in all."
    )
    await expect(field).to_be_empty()
    assert await seat_map_accessible(admin, event_id) == ["A-2-3", "A-2-4", "A-2-5", "A-3-7"]
    await expect(page.locator("#heat .heat-grid span.accessible")).to_have_count(4)
    await expect(page.locator("#acc-now")).to_have_text(
        "Accessible now (4): A-2-3, A-2-4, A-2-5, A-3-7."
    )
    await no_sideways_scroll(page)

    # Unmark one, and one that is not accessible: the confirmation says so.
    await page.fill("#acc-seats", "A-2-4 A-1-1")
    await page.click("#acc-unmark")
    await confirm(
        page, "Unmark 2 seats (no longer accessible): A-2-4, A-1-1? 1 not accessible now."
    )
    await expect(page.locator("#acc-status")).to_have_text(
        "Unmarked 1 seat: A-2-4; 3 seats accessible in all."
    )
    assert await seat_map_accessible(admin, event_id) == ["A-2-3", "A-2-5", "A-3-7"]
    await expect(page.locator("#heat .heat-grid span.accessible")).to_have_count(3)

    # Audited as the API audits it: one row per change, by whoever signed in.
    rows = page.locator("#audit-body tr[data-action='seats']")
    await expect(rows).to_have_count(2)
    async with admin.get(f"/api/admin/events/{event_id}/audit") as r:
        audit = [a for a in await r.json() if a["action"] == "seats"]
    assert audit[0]["new"] == ["A-2-3", "A-2-5", "A-3-7"], audit
    await page.context.close()
