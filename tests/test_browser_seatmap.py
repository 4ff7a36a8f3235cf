"""The seat map on a phone (390 by 844 px) in real headless Chromium: the venue overview (stage and
every section) on the first screen, zooming into a section by button, key and pinch with seats
never below a 24 px touch target and no sideways scrolling of the page, "best available" held
through the normal hold, the price and accessible-seat filters, the per-order limit shown and
enforced, and the standing stepper saying why it stops."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Route, expect

from .test_browser import PHONE, SHOTS, admitted_seat_page, create_event, rival_hold, seat

pytestmark = pytest.mark.browser

WIDE = [
    {"id": "A", "name": "Floor", "price": 5000, "rows": 8, "seats_per_row": 20},
    {"id": "B", "name": "Balcony", "price": 3000, "rows": 4, "seats_per_row": 12,
     "accessible": ["B-1-1", "B-1-2"]},
    {"id": "GA", "name": "Standing", "price": 3500, "capacity": 100},
]  # fmt: skip


async def box(page: Page, selector: str) -> dict[str, float]:
    found = await page.locator(selector).bounding_box()
    assert found is not None, selector
    return {"x": found["x"], "y": found["y"], "width": found["width"], "height": found["height"]}


async def width_of(page: Page, seat_id: str) -> float:
    return (await box(page, f"#seat-{seat_id}"))["width"]


async def no_sideways_scroll(page: Page) -> None:
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, innerWidth]"
    )
    assert max(widths[:2]) <= widths[2], widths


async def pinch(page: Page, selector: str, spread: float) -> None:
    """Two fingers on the element's middle move apart by `spread` px each (Chrome's touch input)."""
    b = await box(page, selector)
    x, y = b["x"] + b["width"] / 2, b["y"] + b["height"] / 2
    cdp = await page.context.new_cdp_session(page)

    def points(d: float) -> list[dict[str, Any]]:
        return [{"x": x - 20 - d, "y": y, "id": 1}, {"x": x + 20 + d, "y": y, "id": 2}]

    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": points(0)})
    for step in range(1, 6):
        await cdp.send(
            "Input.dispatchTouchEvent",
            {"type": "touchMove", "touchPoints": points(spread * step / 5)},
        )
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


async def test_overview_on_the_first_screen_then_zoom(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    event_id = await create_event(admin, sections=WIDE, rate_per_min=6000)
    page = await admitted_seat_page(browser, base_url, event_id)
    await page.evaluate("scrollTo(0, 0)")
    await expect(page.locator("#ov-stage")).to_have_text("Stage")
    tiles = page.locator(".ov-section")
    await expect(tiles).to_have_count(3)
    await expect(page.locator("#ov-B")).to_contain_text("♿ 2 accessible seats")
    await expect(page.locator("#ov-GA")).to_contain_text("€35.00 standing · 100 left")
    await page.screenshot(path=str(SHOTS / "boxoffice-seat-overview-phone.png"))
    # the whole venue above the sticky action bar, on the first screen
    bar_top = (await box(page, "#action-bar"))["y"]
    assert bar_top <= PHONE["height"]
    for selector in ["#ov-stage", "#ov-A", "#ov-B", "#ov-GA"]:
        b = await box(page, selector)
        assert b["y"] >= 0 and b["y"] + b["height"] <= bar_top, (selector, b, bar_top)
        assert b["x"] >= 0 and b["x"] + b["width"] <= PHONE["width"], (selector, b)
    await no_sideways_scroll(page)

    # into a section: its heading focused, its stage label whole, seats fitted but ≥ 24 px
    await page.locator("#ov-A").click()
    await expect(page.locator("#section-A")).to_be_focused()
    stage = await box(page, '.map-section[data-section="A"] .stage')
    assert stage["x"] >= 0 and stage["x"] + stage["width"] <= PHONE["width"], stage
    assert await width_of(page, "A-1-1") == 24  # 20 seats a row: the smallest, scrolled inside
    zoom_in = page.get_by_role("button", name="Zoom in on Floor")
    zoom_out = page.get_by_role("button", name="Zoom out of Floor")
    await expect(zoom_out).to_be_disabled()  # never below a touch target
    await zoom_in.click()
    assert await width_of(page, "A-1-1") == 30
    await zoom_in.click()
    assert await width_of(page, "A-1-1") == 38
    await zoom_out.click()
    assert await width_of(page, "A-1-1") == 30
    await no_sideways_scroll(page)

    # keyboard: + and - on a focused seat
    await seat(page, "A-1-10").focus()
    await page.keyboard.press("+")
    assert await width_of(page, "A-1-1") == 38
    await expect(seat(page, "A-1-10")).to_be_focused()
    await page.keyboard.press("-")
    await page.keyboard.press("-")
    await page.keyboard.press("-")
    assert await width_of(page, "A-1-1") == 24
    # two fingers spreading on the seats zoom in; the page itself does not scroll sideways
    await pinch(page, '.map-section[data-section="A"] .seat-scroll', 80)
    assert await width_of(page, "A-1-1") > 30
    await no_sideways_scroll(page)
    await page.screenshot(path=str(SHOTS / "boxoffice-seat-zoomed-phone.png"))

    # and back to the overview
    await page.get_by_role("button", name="Back to the venue overview").first.click()
    await expect(page.locator("#ov-stage")).to_be_in_viewport()


async def test_best_available_holds_adjacent_seats(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    event_id = await create_event(admin, rate_per_min=6000)  # Floor: 5 rows of 10
    rival, _ = await rival_hold(
        base_url, event_id, ["A-1-5", "A-1-6", "A-2-5", "A-3-5", "A-4-5", "A-5-5"]
    )
    await rival.close()
    page = await admitted_seat_page(browser, base_url, event_id)
    await page.locator("#best-qty-A").select_option("3")
    await page.get_by_role("button", name="Hold the best seats").click()
    await expect(page.locator("#view-held")).to_be_visible()
    # the middle of rows 1 to 5 is taken: the nearest three side by side are row 2's 6 to 8
    # (row 1's nearest, 2 to 4, are further from the middle of the stage)
    await expect(page.locator("#held-seats li")).to_have_text(
        ["Floor, Row 2, seat 6", "Floor, Row 2, seat 7", "Floor, Row 2, seat 8"]
    )
    await expect(page.locator("#held-amount")).to_have_text("€150.00")
    hold = await page.evaluate(f"JSON.parse(sessionStorage.getItem('bo_hold_{event_id}'))")
    assert hold["seats"] == ["A-2-6", "A-2-7", "A-2-8"], hold

    # more than any row holds side by side: said, nothing held
    await page.locator("#release-button").click()
    await expect(page.locator("#view-pick")).to_be_visible()
    await page.locator("#best-qty-A").select_option("6")  # no row has 6 free side by side
    await page.get_by_role("button", name="Hold the best seats").click()
    await expect(page.locator("#pick-error")).to_contain_text(
        "There aren't 6 free seats side by side in Floor"
    )
    await expect(page.locator("#view-pick")).to_be_visible()
    await expect(page.locator("#selection-count")).to_have_text("No tickets selected")


async def test_price_and_accessible_filters(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    sections = [
        {"id": "A", "name": "Floor", "price": 5000, "rows": 5, "seats_per_row": 10,
         "accessible": ["A-5-1", "A-5-2"]},
        {"id": "B", "name": "Balcony", "price": 3000, "rows": 3, "seats_per_row": 8},
        {"id": "GA", "name": "Standing", "price": 3500, "capacity": 100},
    ]  # fmt: skip
    event_id = await create_event(admin, sections=sections, rate_per_min=6000)
    page = await admitted_seat_page(browser, base_url, event_id)
    floor, balcony = (
        page.locator('.map-section[data-section="A"]'),
        page.locator('.map-section[data-section="B"]'),
    )
    standing = page.locator('.map-section[data-section="GA"]')

    # price: up to €35 hides the Floor (its tile says why), keeps Balcony and Standing
    await expect(page.locator("#price-filter option")).to_have_text(
        ["Any price", "Up to €30.00", "Up to €35.00"]
    )
    await page.locator("#price-filter").select_option(label="Up to €35.00")
    await expect(floor).to_be_hidden()
    await expect(balcony).to_be_visible()
    await expect(standing).to_be_visible()
    await expect(page.locator("#ov-A")).to_be_disabled()
    await expect(page.locator("#ov-A")).to_contain_text("Above your price")
    await expect(page.locator("#filter-note")).to_have_text("1 section is hidden by your filters.")
    await page.locator("#price-filter").select_option(label="Any price")
    await expect(floor).to_be_visible()

    # accessible seats only: sections without any are hidden, other seats are dimmed
    await expect(seat(page, "A-5-1")).to_have_class(re.compile(r"\baccessible\b"))
    await expect(seat(page, "A-5-1")).to_have_attribute(
        "aria-label", "Row 5, seat 1, accessible seat, €50.00, free"
    )
    await expect(seat(page, "A-5-1")).to_have_attribute("title", re.compile("♿ accessible seat"))
    await page.get_by_label("Accessible seats only").check()
    await expect(balcony).to_be_hidden()
    await expect(standing).to_be_hidden()
    await expect(floor).to_be_visible()
    await expect(page.locator("#filter-note")).to_have_text(
        "2 sections are hidden by your filters."
    )
    await expect(seat(page, "A-1-1")).to_have_class(re.compile(r"\bdim\b"))
    await expect(seat(page, "A-1-1")).to_have_attribute(
        "aria-label", "Row 1, seat 1, €50.00, free, not an accessible seat"
    )
    await seat(page, "A-1-1").click(force=True)  # aria-disabled
    await expect(page.locator("#pick-error")).to_contain_text("not an accessible seat")
    await expect(seat(page, "A-1-1")).to_have_attribute("aria-pressed", "false")
    await seat(page, "A-5-1").click()
    await expect(seat(page, "A-5-1")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#selection-detail")).to_have_text(
        "Floor, Row 5, seat 1 (accessible)"
    )
    await page.screenshot(path=str(SHOTS / "boxoffice-seat-accessible-phone.png"), full_page=True)

    # ops mark one more seat: the open page shows it at its next refresh
    async with admin.patch(
        f"/api/admin/events/{event_id}/seats", json={"seats": ["A-5-3"], "accessible": True}
    ) as response:
        assert response.status == 200, await response.text()
    await expect(seat(page, "A-5-3")).to_have_class(re.compile(r"\baccessible\b"), timeout=30_000)
    await expect(seat(page, "A-5-3")).not_to_have_class(re.compile(r"\bdim\b"))
    await expect(page.locator("#ov-A")).to_contain_text("♿ 3 accessible seats")


async def test_per_order_limit_and_the_stepper_says_why(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    sections = [
        {"id": "A", "name": "Floor", "price": 5000, "rows": 5, "seats_per_row": 10},
        {"id": "GA", "name": "Standing", "price": 3500, "capacity": 100},
        {"id": "GB", "name": "Terrace", "price": 2500, "capacity": 2},
    ]
    event_id = await create_event(
        admin, sections=sections, max_seats_per_order=3, rate_per_min=6000
    )
    page = await admitted_seat_page(browser, base_url, event_id)
    await expect(page.locator("#max-seats")).to_have_text("Up to 3 tickets per order.")
    await expect(page.locator("#pick-help")).to_contain_text("Up to 3 tickets per order")
    await expect(page.locator("#selection-detail")).to_have_text("Up to 3 per order")
    await expect(page.locator("#best-qty-A option")).to_have_count(3)

    for n in (1, 2, 3, 4):
        await seat(page, f"A-1-{n}").click()
    await expect(page.locator("#pick-error")).to_contain_text(
        "You can choose up to 3 tickets per order"
    )
    await expect(seat(page, "A-1-4")).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#selection-count")).to_have_text("3 seats · €150.00")
    await expect(page.locator("#bar-note")).to_have_text("At most 3 per order.")

    # the standing stepper stops at the limit and says which one
    more = page.get_by_role("button", name="One more ticket in Standing")
    note = page.locator("#qty-note-GA")
    await more.click()
    await more.click()
    await expect(note).to_be_hidden()
    await more.click()
    await expect(note).to_have_text("At most 3 per order.")
    await more.click()
    await expect(page.locator("#qty-GA")).to_have_value("3")
    await expect(note).to_have_text("At most 3 per order.")
    await expect(page.locator("#selection-count")).to_have_text("3 tickets · €105.00")
    terrace = page.get_by_role("button", name="One more ticket in Terrace")
    for _ in range(3):
        await terrace.click()
    await expect(page.locator("#qty-GB")).to_have_value("2")
    await expect(page.locator("#qty-note-GB")).to_have_text("Only 2 tickets left in Terrace.")
    await expect(note).to_be_hidden()  # one order is one section: Standing went back to 0
    await page.locator("#qty-note-GB").scroll_into_view_if_needed()
    await page.screenshot(path=str(SHOTS / "boxoffice-stepper-limit-phone.png"))
    await page.locator("#hold-button").click()
    await expect(page.locator("#view-held")).to_be_visible()
    await expect(page.locator("#held-seats")).to_contain_text("2 standing tickets, Terrace")

    # ops lower the limit while the page is open: it follows at its next refresh
    await page.locator("#release-button").click()
    async with admin.patch(
        f"/api/admin/events/{event_id}", json={"max_seats_per_order": 2}
    ) as response:
        assert response.status == 200
    await expect(page.locator("#max-seats")).to_have_text(
        "Up to 2 tickets per order.", timeout=30_000
    )
    await expect(page.locator("#best-qty-A option")).to_have_count(2)
    await more.click()
    await more.click()
    await expect(page.locator("#qty-GA")).to_have_value("2")
    await expect(note).to_have_text("At most 2 per order.")


async def test_unreachable_hold_and_best_seats_leave_the_buttons_working(
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
) -> None:
    """The connection drops under a hold and under a best-seats call: each says so and gives the
    buttons back, and the next try holds."""
    event_id = await create_event(admin, rate_per_min=6000)
    page = await admitted_seat_page(browser, base_url, event_id)
    base = f"**/api/events/{event_id}"
    unreachable = "We couldn't reach Boxoffice. Check your connection and try again."

    dropped: list[str] = []

    async def drop(route: Route) -> None:
        dropped.append(route.request.url.rsplit("/", 1)[-1])
        await route.abort("internetdisconnected")

    hold, best = page.locator("#hold-button"), page.locator("#best-A")
    await page.route(f"{base}/holds", drop)
    await seat(page, "A-1-3").click()
    await hold.click()
    await expect(page.locator("#pick-error")).to_have_text(unreachable)
    await expect(hold).to_have_text("Hold these seats")
    await expect(hold).to_be_enabled()
    await expect(best).to_be_enabled()
    await page.unroute(f"{base}/holds", drop)

    assert dropped == ["holds"]
    await page.route(f"{base}/best-seats", drop)
    await best.click()  # clears the old message at once, before it calls
    await expect(page.locator("#pick-error")).to_have_text(unreachable)
    assert dropped == ["holds", "best-seats"]
    await expect(best).to_be_enabled()
    await expect(hold).to_be_enabled()
    await page.unroute(f"{base}/best-seats", drop)

    await hold.click()
    await expect(page.locator("#view-held")).to_be_visible()
    await expect(page.locator("#held-seats")).to_have_text("Floor, Row 1, seat 3")
