"""Ticket QR codes: GET /api/orders/{id}/tickets/{n}.svg through the real app, Redis and
PostgreSQL — only for the order's own visitor, only once paid, only for its own tickets; and the
PNG of the mail and PDF. Each is read back by a QR decoder (zxing-cpp's reader)."""

from __future__ import annotations

import io
import re
from typing import Any
from xml.etree import ElementTree

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image, ImageDraw

from server.booking.tickets import ticket_png

from .helpers import (
    admitted_headers,
    checkout,
    create_event,
    created,
    hold,
    pay,
    read_qr,
    visitor,
)

Client = TestClient[Any, Any]
SVG = "{http://www.w3.org/2000/svg}"
RECT = re.compile(r"M(\d+(?:\.\d+)?) (\d+(?:\.\d+)?)h(\d+(?:\.\d+)?)v(\d+(?:\.\d+)?)h-[\d.]+Z")


def svg_raster(body: bytes) -> Image.Image:
    """The SVG drawn as pixels: its white ground and the dark rectangles of its path."""
    root = ElementTree.fromstring(body)
    assert root.tag == f"{SVG}svg"
    width, height = int(root.attrib["width"]), int(root.attrib["height"])
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    paths = [e.attrib["d"] for e in root.iter(f"{SVG}path")]
    assert len(paths) == 1
    rects = RECT.findall(paths[0])
    assert rects and RECT.sub("", paths[0]).strip() == ""  # rectangles, nothing else
    for x, y, w, h in rects:
        left, top = float(x), float(y)
        draw.rectangle((left, top, left + float(w) - 1, top + float(h) - 1), fill=0)
    return image


CODES = [
    "A",
    "ord-1-abcdefghijklmnop",
    "Q2xFr0m-Real-1d_xx-12-" + "x" * 16,
    "Z" * 64 + "-999999-" + "m" * 16,
]


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("scale", [2, 8])
def test_the_png_reads_back_as_its_code(code: str, scale: int) -> None:
    """A 1-bit PNG, `scale` pixels a module, with a 2-module white border, that a decoder reads
    as the code at error correction level M."""
    png = Image.open(io.BytesIO(ticket_png(code, scale)))
    assert png.format == "PNG" and png.mode == "1"
    assert png.size[0] == png.size[1] and png.size[0] % scale == 0
    modules = png.size[0] // scale - 4
    assert modules >= 21 and (modules - 21) % 4 == 0  # a QR version's size: 21, 25, 29 ...
    ground = png.convert("L")
    edge = 2 * scale
    assert ground.crop((0, 0, png.size[0], edge)).getextrema() == (255, 255)  # the border
    assert ground.crop((0, 0, edge, png.size[1])).getextrema() == (255, 255)
    assert read_qr(png) == (code, "M")


async def _order(fans: Client, seats: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """A fan who held the seats and checked out: their headers and the pending order."""
    ev = await create_event(fans, rate_per_min=60000)
    fan = await admitted_headers(fans, ev["id"])
    held = created(await hold(fans, ev["id"], fan, {"seats": seats}))
    return fan, created(await checkout(fans, held["hold_id"], fan))


async def _paid(fans: Client, seats: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    fan, order = await _order(fans, seats)
    body = created(await pay(fans, order["order_id"], fan), 200)
    assert body["status"] == "paid"
    return fan, body


async def test_paid_ticket_qr_is_the_svg_of_its_code(fans: Client) -> None:
    fan, order = await _paid(fans, ["A-1-1", "A-1-2"])
    assert len(order["tickets"]) == 2
    for n, ticket in enumerate(order["tickets"], start=1):
        response = await fans.get(f"/api/orders/{order['order_id']}/tickets/{n}.svg", headers=fan)
        assert response.status == 200, await response.text()
        assert response.content_type == "image/svg+xml"
        assert response.headers["Cache-Control"] == "private, max-age=86400"
        body = await response.read()
        assert read_qr(svg_raster(body)) == (ticket["code"], "M")
    first = await fans.get(f"/api/orders/{order['order_id']}/tickets/1.svg", headers=fan)
    second = await fans.get(f"/api/orders/{order['order_id']}/tickets/2.svg", headers=fan)
    assert await first.read() != await second.read()


async def test_another_visitor_gets_403(fans: Client) -> None:
    _, order = await _paid(fans, ["A-3-1"])
    response = await fans.get(f"/api/orders/{order['order_id']}/tickets/1.svg", headers=visitor())
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"


async def test_unknown_ticket_or_order_gets_404(fans: Client) -> None:
    fan, order = await _paid(fans, ["A-4-1"])
    base = f"/api/orders/{order['order_id']}/tickets"
    for number in ("2", "0", "abc", "9" * 40):
        response = await fans.get(f"{base}/{number}.svg", headers=fan)
        assert response.status == 404, number
        assert (await response.json())["error"] == "ticket_not_found"
    missing = await fans.get("/api/orders/no-such-order/tickets/1.svg", headers=fan)
    assert missing.status == 404
    assert (await missing.json())["error"] == "order_not_found"


async def test_unpaid_order_gets_409(fans: Client) -> None:
    fan, order = await _order(fans, ["A-5-1"])
    assert order["status"] == "pending"
    response = await fans.get(f"/api/orders/{order['order_id']}/tickets/1.svg", headers=fan)
    assert response.status == 409
    assert (await response.json())["error"] == "order_not_paid"
