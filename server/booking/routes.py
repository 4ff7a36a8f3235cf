"""Booking routes: seat map, holds, checkout, orders (own, or by their link's key), resend
requests, dev payments and the Stripe webhook."""

from __future__ import annotations

from aiohttp import web

from server.booking.service import BOOKING
from server.core import client_address
from server.core.bodies import read_json
from server.core.errors import Conflict
from server.core.http import json_response
from server.core.identity import bearer, visitor_id
from server.core.messages import (
    Accepted,
    BestSeatsRequest,
    CheckoutRequest,
    HoldRequest,
    PayRequest,
    ResendRequest,
)
from server.payments import stripe_webhooks
from server.store import catalogs

routes = web.RouteTableDef()
webhook_routes = web.RouteTableDef()  # served by the web and the payments role


@routes.get("/api/events/{event_id}/seats")
async def seat_map(request: web.Request) -> web.Response:
    body = await request.app[BOOKING].seat_maps.encoded(request.match_info["event_id"])
    return web.Response(body=body, content_type="application/json")


@routes.get("/api/events/{event_id}/seats/status")
async def seat_status(request: web.Request) -> web.Response:
    """The compact seat map; `?since=<version>` of an earlier answer: only the seats changed."""
    since = request.query.get("since")
    body = await request.app[BOOKING].seat_maps.compact(request.match_info["event_id"], since)
    return web.Response(body=body, content_type="application/json")


@routes.post("/api/events/{event_id}/holds")
async def create_hold(request: web.Request) -> web.Response:
    booking = request.app[BOOKING]
    event_id = request.match_info["event_id"]
    await booking.cache.require(event_id)
    claims = booking.holds.access(bearer(request), event_id, visitor_id(request))
    body = await read_json(request, HoldRequest)
    return json_response(await booking.holds.hold(event_id, claims, body), status=201)


@routes.post("/api/events/{event_id}/best-seats")
async def best_seats(request: web.Request) -> web.Response:
    """The best N adjacent free seats of a section: a suggestion the fan then holds."""
    booking = request.app[BOOKING]
    event_id = request.match_info["event_id"]
    await booking.cache.require(event_id)
    claims = booking.holds.access(bearer(request), event_id, visitor_id(request))
    body = await read_json(request, BestSeatsRequest)
    return json_response(await booking.holds.best(event_id, claims, body))


@routes.delete("/api/holds/{hold_id}")
async def release_hold(request: web.Request) -> web.Response:
    await request.app[BOOKING].holds.release(request.match_info["hold_id"], visitor_id(request))
    return web.Response(status=204)


@routes.post("/api/holds/{hold_id}/checkout")
async def checkout(request: web.Request) -> web.Response:
    orders = request.app[BOOKING].orders
    # The body is checked before anything else: a refused checkout must not spend the hold's
    # one-time extension (Orders.checkout extends it).
    body = await read_json(request, CheckoutRequest)
    lang = catalogs.language_of(request)  # the order's mails are written in it
    order = await orders.checkout(request.match_info["hold_id"], visitor_id(request), body, lang)
    return json_response(order, status=201)


@routes.get("/api/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    """The visitor's own order, or any order with its link's key (?key=, no cookie needed)."""
    orders = request.app[BOOKING].orders
    key = request.query.get("key")
    order = await orders.order(request.match_info["order_id"], visitor_id(request), key)
    return json_response(order)


@routes.post("/api/orders/resend")
async def resend_tickets(request: web.Request) -> web.Response:
    """Mail the paid orders of an email again: 202 whatever the email."""
    body = await read_json(request, ResendRequest)
    await request.app[BOOKING].resend.request(body.email, client_address.of(request))
    return json_response(Accepted(), status=202)


@routes.get("/api/events/{event_id}/my-orders")
async def my_orders(request: web.Request) -> web.Response:
    """This visitor's paid orders of the event, with their links (the event page's "you have
    tickets")."""
    orders = request.app[BOOKING].orders
    return json_response(await orders.mine(request.match_info["event_id"], visitor_id(request)))


@routes.get("/api/orders/{order_id}/tickets/{number}.svg")
async def ticket_qr(request: web.Request) -> web.Response:
    orders = request.app[BOOKING].orders
    match = request.match_info
    svg = await orders.ticket_svg(
        match["order_id"], visitor_id(request), match["number"], request.query.get("key")
    )
    return web.Response(
        body=svg,
        content_type="image/svg+xml",
        headers={"Cache-Control": "private, max-age=86400"},
    )


@routes.post("/api/orders/{order_id}/pay")
async def pay(request: web.Request) -> web.Response:
    orders = request.app[BOOKING].orders
    body = await read_json(request, PayRequest)
    order = await orders.pay_dev(request.match_info["order_id"], visitor_id(request), body)
    return json_response(order)


@webhook_routes.post("/api/webhooks/stripe")
async def stripe_webhook(request: web.Request) -> web.Response:
    booking = request.app[BOOKING]
    secret = booking.settings.stripe_webhook_secret
    if not secret:
        raise Conflict("Stripe is not configured on this server", code="stripe_not_configured")
    raw = await request.read()
    event = stripe_webhooks.parse(raw, request.headers.get("Stripe-Signature"), secret)
    result = event if isinstance(event, str) else await booking.settlement.apply(event)
    return json_response({"received": True, "result": result})
