"""After the sale in a real headless Chromium: the door page, signed in with a `checkin`-only
token, listing its events and scanning a ticket's QR code through Chromium's fake camera (a .y4m
clip made here from the code), the order page opened from its
secret link in a browser with no cookie, and the event page telling a buyer they have tickets."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image
from playwright.async_api import ViewportSize, expect

from server.core import qr
from server.core.tokens import new_id

from .helpers import (
    ADMIN,
    ADMIN_TOKEN,
    Fan,
    admitted,
    bearer,
    checkin_token,
    create_event,
    launch,
    visitor,
)
from .test_browser import PHONE, TIMEOUT_MS

pytestmark = pytest.mark.browser

Client = TestClient[Any, Any]
WIDTH, HEIGHT = 640, 480


def qr_clip(code: str, path: Path, frames: int = 5) -> Path:
    """A YUV4MPEG2 (4:2:0) clip whose every frame shows the code's QR, black on white, centred:
    what Chromium's fake camera plays in a loop."""
    drawn = Image.open(io.BytesIO(qr.png(code, scale=1, border=0)))  # a pixel a module
    matrix = [
        [drawn.getpixel((c, r)) == 0 for c in range(drawn.width)] for r in range(drawn.height)
    ]
    modules = len(matrix) + 8  # a 4-module quiet zone each side
    scale = min(WIDTH, HEIGHT) * 9 // 10 // modules
    left, top = (WIDTH - modules * scale) // 2, (HEIGHT - modules * scale) // 2
    luma = bytearray(b"\xff" * (WIDTH * HEIGHT))
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if not dark:
                continue
            for y in range(top + (r + 4) * scale, top + (r + 5) * scale):
                start = y * WIDTH + left + (c + 4) * scale
                luma[start : start + scale] = b"\x00" * scale
    chroma = b"\x80" * (WIDTH // 2 * HEIGHT // 2)
    frame = b"FRAME\n" + bytes(luma) + chroma + chroma
    header = f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + frame * frames)
    return path


async def bought(client: Client, event_id: str, seats: list[str]) -> tuple[Fan, dict[str, Any]]:
    vid = new_id()
    headers = visitor(vid)
    _, token = await admitted(client, event_id, headers)
    fan = Fan(client, vid, bearer(headers, token))
    return fan, await fan.buy(event_id, {"seats": seats})


async def test_door_page_scans_a_ticket_through_the_fake_camera(
    fans: Client, chromium_path: str, tmp_path: Path, pg: asyncpg.Pool
) -> None:
    other = await create_event(fans, rate_per_min=60000, name="Other Tour", id="other-door")
    ev = await create_event(fans, rate_per_min=60000)
    _, order = await bought(fans, ev["id"], ["A-1-1"])
    code = order["tickets"][0]["code"]
    clip = qr_clip(code, tmp_path / "ticket.y4m")
    door_token = await checkin_token(fans, "door-phone")  # the scope the README gives the door
    camera = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    async for browser in launch(chromium_path, *camera):
        page = await browser.new_page(viewport=PHONE)
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(str(fans.make_url(f"/door?event={ev['id']}")))
        await page.fill("#token", door_token)
        await page.click("#signin-form button[type=submit]")
        await expect(page.locator("#view-scan")).to_be_visible()
        await expect(page.locator("#event option")).to_have_count(2)
        await expect(page.locator(f"#event option[value='{other['id']}']")).to_contain_text(
            "Other Tour"
        )
        await expect(page.locator("#event")).to_have_value(ev["id"])
        await expect(page.locator("#count-expected")).to_have_text("1")
        await page.click("#camera-button")
        await expect(page.locator("#result-word")).to_have_text("Admitted")
        await expect(page.locator("#result")).to_have_attribute("data-tone", "ok")
        await expect(page.locator("#result-seat")).to_have_text("Section A · Row 1 · Seat 1")
        await expect(page.locator("#count-admitted")).to_have_text("1")
        note = await page.locator("#camera-note").text_content()
        print(f"door page decoder: {note}")
        # The same QR stays in front of the camera: once the repeat pause is over it is scanned
        # again and refused.
        await expect(page.locator("#result-word")).to_have_text("Already in")
        await expect(page.locator("#result")).to_have_attribute("data-tone", "bad")

        # A typed code that is not a ticket: red.
        await page.fill("#code", "not-a-ticket")
        await page.click("#manual-button")
        await expect(page.locator("#result-word")).to_have_text("Not a ticket")
        await page.screenshot(path=str(tmp_path / "door.png"))

        # The token is kept for this tab: a reload stays signed in.
        await page.reload()
        await expect(page.locator("#view-scan")).to_be_visible()
    checked = await pg.fetchval("SELECT checked_in_at FROM tickets WHERE code = $1", code)
    assert checked is not None
    results = await pg.fetch("SELECT result FROM checkin_log ORDER BY id")
    assert [r["result"] for r in results][:2] == ["admitted", "already_checked_in"]


async def test_order_page_opens_from_its_link_without_a_cookie_and_event_page_knows_the_buyer(
    fans: Client, chromium_path: str
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    vid = new_id()
    queue_id, token = await admitted(fans, ev["id"], visitor(vid))
    fan = Fan(fans, vid, bearer(visitor(vid), token))
    order = await fan.buy(ev["id"], {"seats": ["A-2-1", "A-2-2"]})
    async for browser in launch(chromium_path):
        stranger = await browser.new_context(viewport=PHONE)  # another device: no cookie
        page = await stranger.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(str(fans.make_url(order["order_url"])))
        await expect(page.locator("#order-heading")).to_have_text("You're going!")
        await expect(page.locator("#event-name")).to_have_text(ev["name"])
        await expect(page.locator("#tickets li")).to_have_count(2)
        await expect(page.locator("#tickets code").first).to_have_text(order["tickets"][0]["code"])
        loaded = await page.eval_on_selector_all(
            "#tickets img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded == [True, True]

        await page.goto(str(fans.make_url(f"/orders/{order['order_id']}?key=wrong")))
        await expect(page.locator("#error-heading")).to_be_visible()
        await page.fill("#resend-email", "fan@example.com")
        await page.click("#resend-button")
        await expect(page.locator("#resend-done")).to_be_visible()

        # The buyer's own browser (its cookie) on the event page: "you have tickets". The buyer
        # left the line and the sale is paused, so the page waits in line (an admitted buyer's
        # page would move on to the seat map by itself, taking the notice with it).
        paused = await fans.patch(
            f"/api/admin/events/{ev['id']}", json={"paused": True}, headers=ADMIN
        )
        assert paused.status == 200, await paused.text()
        left = await fans.delete(f"/api/queue/{queue_id}", headers=visitor(vid))
        assert left.status == 204, await left.text()
        buyer = await browser.new_context(viewport=PHONE)
        cookie = fan.headers["Cookie"].split("=", 1)[1]
        await buyer.add_cookies(
            [{"name": "bo_visitor", "value": cookie, "url": str(fans.make_url("/"))}]
        )
        page = await buyer.new_page()
        await page.goto(str(fans.make_url(f"/e/{ev['id']}")))
        link = page.locator("#my-tickets a")
        await expect(link).to_have_attribute("href", order["order_url"])
        await expect(page.locator("#my-tickets")).to_be_visible()
        await expect(page.locator("#view-waiting")).to_be_visible()


async def test_console_finds_refunds_and_bulk_cancels_orders(
    fans: Client, chromium_path: str, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans, rate_per_min=60000)
    _, first = await bought(fans, ev["id"], ["A-3-1"])
    _, second = await bought(fans, ev["id"], ["A-3-2"])
    _, third = await bought(fans, ev["id"], ["A-3-3"])
    async for browser in launch(chromium_path):
        page = await browser.new_page(viewport=ViewportSize(width=1400, height=1000))
        page.set_default_timeout(TIMEOUT_MS)
        await page.goto(str(fans.make_url("/admin")))
        await page.fill("#token", ADMIN_TOKEN)
        await page.fill("#operator", "box-office")
        await page.click("#signin-form button[type=submit]")
        await expect(page.locator("#view-events")).to_be_visible()
        await page.goto(str(fans.make_url(f"/admin#event/{ev['id']}")))
        await expect(page.locator("#t-expected")).to_have_text("3")

        await page.select_option("#order-field", "seat")
        await page.fill("#order-query", "A-3-1")
        await page.click("#order-search button[type=submit]")
        row = page.locator(f"#orders-body tr[data-order='{first['order_id']}']")
        await expect(row).to_contain_text("paid")
        await expect(page.locator("#orders-body tr")).to_have_count(1)
        await page.fill("#refund-reason", "fan asked")
        await row.locator("button").click()
        await expect(page.locator("#confirm-text")).to_contain_text(first["order_id"])
        await page.click("#confirm-ok")
        await expect(row).to_contain_text("refunded (fan asked)")
        await expect(page.locator("#t-refunded")).to_have_text("1")
        await expect(page.locator("#audit-body tr[data-action='refund']")).to_contain_text(
            "box-office"
        )

        unknown = "N" * 22  # well formed, but no such order
        ids = [first["order_id"], second["order_id"], third["order_id"], unknown]
        await page.fill("#bulk-ids", "\n".join(ids))
        await page.click("#bulk-form button[type=submit]")
        await expect(page.locator("#bulk-status")).to_contain_text(
            "2 to refund; 1 already refunded, 0 not paid, 1 not found."
        )
        await page.click("#bulk-go")
        await page.click("#confirm-ok")
        await expect(page.locator("#bulk-status")).to_contain_text("Refunded 2; refused 0")
        await expect(page.locator("#t-expected")).to_have_text("0")
    statuses = await pg.fetch("SELECT status FROM orders WHERE event_id = $1", ev["id"])
    assert {r["status"] for r in statuses} == {"refunded"}
