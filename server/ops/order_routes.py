"""After the sale, ops' side: order search, refunds, bulk cancels and check-in at the door.
Every route is governed by its entry in server/ops/permissions.py; refunds and cancels are
audited with the operator's name and whether a fresh code confirmed them. The door reads only
what it needs (the events to pick from, its counter), so a `checkin` token needs no more."""

from __future__ import annotations

import msgspec
from aiohttp import web

from server.booking import checkins, ledger
from server.booking.service import BOOKING
from server.core.bodies import decode, read_json
from server.core.errors import Conflict, Invalid
from server.core.http import json_response
from server.core.messages import CancelRequest, CheckinRequest, DoorCount, RefundRequest
from server.core.metrics import METRICS
from server.ops import catalog
from server.ops.admin_guard import admin_only, step_up
from server.ops.permissions import cancel_is_high_risk
from server.store import db
from server.store.db import POOL

routes = web.RouteTableDef()


SEARCH_FIELDS = ("event_id", "email", "seat", "code", "order_id", "status")
MAX_RESULTS = 500


def order_query(query: dict[str, str]) -> ledger.OrderQuery:
    """The search's filters from a query string: each at most 254 characters, empty = any."""
    unknown = set(query) - {*SEARCH_FIELDS, "limit"}
    if unknown:
        raise Invalid(f"unknown filter(s): {', '.join(sorted(unknown))}", code="bad_filter")
    given: dict[str, str | int] = {}
    for name in SEARCH_FIELDS:
        value = query.get(name, "").strip()
        if len(value) > 254:
            raise Invalid(f"{name}: at most 254 characters", code="bad_filter")
        if value:
            given[name] = value
    raw = query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_RESULTS:
        raise Invalid(f"limit: a whole number from 1 to {MAX_RESULTS}", code="bad_filter")
    given["limit"] = int(raw)
    return msgspec.convert(given, ledger.OrderQuery)


@routes.get("/api/admin/orders")
async def search_orders(request: web.Request) -> web.Response:
    """Orders matching every filter given (event_id, email, seat, code, order_id, status),
    newest first."""
    await admin_only(request)
    booking = request.app[BOOKING]
    rows = await ledger.search_orders(booking.pool, order_query(dict(request.query)))
    return json_response([booking.orders.present(o) for o in rows])


@routes.post("/api/admin/orders/cancel")
async def cancel_orders(request: web.Request) -> web.Response:
    """Bulk cancel: `?dry_run=1` answers the count (and which orders) without changing
    anything; without it each refundable order is refunded. An `expected_count` that no longer
    matches refuses the whole cancel (409 count_changed)."""
    p = await admin_only(request)
    body = await read_json(request, CancelRequest)
    refunds = request.app[BOOKING].refunds
    dry_run = request.query.get("dry_run", "0")
    if dry_run not in ("0", "1", "true", "false"):
        raise Invalid("dry_run: 1 or 0", code="bad_filter")
    plan = await refunds.plan(body.order_ids)
    if dry_run in ("1", "true"):
        return json_response(plan)
    p = await step_up(request, p, cancel_is_high_risk(dry_run=False))
    if body.expected_count is not None and body.expected_count != plan.count:
        raise Conflict(
            f"{plan.count} orders are refundable now, not {body.expected_count}; count again",
            code="count_changed",
            extra={"count": plan.count},
        )
    reason = body.reason or "cancelled by the box office"
    result = await refunds.cancel(body.order_ids, p.who, reason, step_up=p.stepped_up)
    metrics = request.app[METRICS]
    metrics.refunds.labels("refunded").inc(len(result.refunded))
    metrics.refunds.labels("refused").inc(len(result.refused))
    return json_response(result)


@routes.post("/api/admin/orders/{order_id}/refund")
async def refund_order(request: web.Request) -> web.Response:
    """Refund a whole paid order through its provider (idempotent)."""
    p = await admin_only(request)
    raw = await request.read()
    body = decode(raw, RefundRequest) if raw.strip() else RefundRequest()
    booking = request.app[BOOKING]
    metrics = request.app[METRICS]
    try:
        outcome, order = await booking.refunds.refund(
            request.match_info["order_id"], p.who, body.reason, step_up=p.stepped_up
        )
    except Conflict as exc:
        if exc.code == "refund_refused":
            metrics.refunds.labels("refused").inc()
        raise
    metrics.refunds.labels(outcome).inc()
    return json_response(booking.orders.present(order))


@routes.post("/api/events/{event_id}/checkins")
async def check_in(request: web.Request) -> web.Response:
    """Scan a ticket at this event's door: admitted once; refusals are 409/422 errors."""
    p = await admin_only(request)
    booking = request.app[BOOKING]
    ev = await booking.cache.require(request.match_info["event_id"])
    body = await read_json(request, CheckinRequest)
    scan = await booking.checkins.scan(ev.id, body.code, p.who)
    request.app[METRICS].checkins.labels(ev.id, scan.result).inc()
    return json_response(checkins.answer(scan))


@routes.get("/api/admin/door/events")
async def door_events(request: web.Request) -> web.Response:
    """The events a door may pick, closed sales included (their doors still open): id, name,
    venue, start and time zone — nothing of the sale."""
    await admin_only(request)
    rows = await db.list_events(request.app[POOL], include_closed=True)
    return json_response([catalog.door_event(ev) for ev in rows])


@routes.get("/api/events/{event_id}/checkins")
async def door_count(request: web.Request) -> web.Response:
    """The door's counter: tickets admitted at this event's door, of tickets of paid orders."""
    await admin_only(request)
    booking = request.app[BOOKING]
    ev = await booking.cache.require(request.match_info["event_id"])
    counts = await booking.checkins.counts(ev.id)
    return json_response(DoorCount(ev.id, counts.checked_in, counts.expected))
