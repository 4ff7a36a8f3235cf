"""Ticket QR codes: GET /api/orders/{id}/tickets/{n}.svg through the real app, Redis and
PostgreSQL — only for the order's own visitor, only once paid, only for its own tickets; and the
PNG of the mail and PDF, module for module segno's."""

from __future__ import annotations

import io
from typing import Any
from xml.etree import ElementTree

import pytest
import segno
from aiohttp.test_utils import TestClient
from PIL import Image

from server.booking.tickets import ticket_png

from .helpers import admitted_headers, checkout, create_event, created, hold, pay, visitor

Client = TestClient[Any, Any]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(
    "code",
    [
        "A",
        "ord-1-abcdefghijklmnop",
        "Q2xFr0m-Real-1d_xx-12-" + "x" * 16,
        "Z" * 64 + "-999999-" + "m" * 16,
    ],
)
@pytest.mark.parametrize("scale", [1, 8])
def test_the_png_has_segnos_own_pixels(code: str, scale: int) -> None:
    """Pillow draws the PNG (segno's writer is pure Python): the same image as segno's, pixel for
    pixel, a 1-bit PNG with the 2-module quiet zone."""
    ours = Image.open(io.BytesIO(ticket_png(code, scale)))
    buf = io.BytesIO()
    segno.make(code, error="m").save(buf, kind="png", scale=scale, border=2)
    reference = Image.open(buf).convert("1")
    assert ours.format == "PNG" and ours.mode == "1"
    assert (
        ours.size == reference.size == ((len(segno.make(code, error="m").matrix) + 4) * scale,) * 2
    )
    assert ours.tobytes() == reference.tobytes()


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


def _expected_svg(code: str) -> bytes:
    buf = io.BytesIO()
    segno.make(code, error="m").save(buf, kind="svg", scale=4, border=2)
    return buf.getvalue()


async def test_paid_ticket_qr_is_the_svg_of_its_code(fans: Client) -> None:
    fan, order = await _paid(fans, ["A-1-1", "A-1-2"])
    assert len(order["tickets"]) == 2
    for n, ticket in enumerate(order["tickets"], start=1):
        response = await fans.get(f"/api/orders/{order['order_id']}/tickets/{n}.svg", headers=fan)
        assert response.status == 200, await response.text()
        assert response.content_type == "image/svg+xml"
        assert response.headers["Cache-Control"] == "private, max-age=86400"
        body = await response.read()
        assert body == _expected_svg(ticket["code"])
        root = ElementTree.fromstring(body)
        assert root.tag == f"{SVG}svg"
        assert root.find(f".//{SVG}path") is not None
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
