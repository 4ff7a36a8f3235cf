"""The generated description of the public API, served at GET /api/openapi.json."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec

from server.core import ids
from server.core.errors import ErrorBody
from server.core.messages import (
    Accepted,
    AdmittedMsg,
    BestSeats,
    BestSeatsRequest,
    BulkCancelResult,
    BulkPlan,
    CancelRequest,
    Checkin,
    CheckinRequest,
    CheckoutRequest,
    ClosedMsg,
    ConfirmedMsg,
    DoorCount,
    DoorEvent,
    ErrorMsg,
    Event,
    EventCreate,
    EventPatch,
    Hold,
    HoldRequest,
    Order,
    PayRequest,
    PingMsg,
    PongMsg,
    QueueStatus,
    RefundRequest,
    ResendRequest,
    SeatAttributes,
    SeatMap,
    SeatsPatch,
    SeatStatusMap,
    Stats,
    StatusMsg,
    TickMsg,
)
from server.ops.admin_routes import AdmitNow
from server.ops.autopilot import AutopilotPatch
from server.waiting.sources import BotsView, PurgeRequest, PurgeResult

REF = "#/components/schemas/{name}"

# What each path parameter full-matches; anything else is answered 404 (or 400 for a malformed
# queue or hold id) before it reaches Redis or PostgreSQL.
PATH_PATTERNS = {
    "event_id": ids.EVENT_ID_BODY,
    "queue_id": ids.PLACE_ID_BODY,
    "hold_id": ids.PLACE_ID_BODY,
    "order_id": ids.URLSAFE_22,
    "number": ids.TICKET_NUMBER_BODY,
}

# A section is seated (rows by seats_per_row) or standing (capacity), never both nor neither.
SECTION_KINDS = {
    "oneOf": [
        {
            "title": "seated",
            "required": ["rows", "seats_per_row"],
            "properties": {
                "rows": {"type": "integer"},
                "seats_per_row": {"type": "integer"},
                "capacity": {"type": "null"},
            },
        },
        {
            "title": "standing",
            "required": ["capacity"],
            "properties": {
                "capacity": {"type": "integer"},
                "rows": {"type": "null"},
                "seats_per_row": {"type": "null"},
            },
        },
    ]
}

# (method, path, summary, request body type, status, response type, auth)
OPERATIONS: list[tuple[str, str, str, Any, int, Any, str | None]] = [
    ("get", "/api/events", "Events on sale or upcoming", None, 200, list[Event], None),
    ("get", "/api/events/{event_id}", "One event", None, 200, Event, None),
    ("post", "/api/events/{event_id}/queue", "Join the queue (idempotent per visitor)", None, 200, QueueStatus, None),
    ("get", "/api/queue/{queue_id}", "Queue status (polling fallback)", None, 200, QueueStatus, None),
    ("delete", "/api/queue/{queue_id}", "Leave the queue", None, 204, None, None),
    ("get", "/api/queue/{queue_id}/ws", "Websocket: status, tick, admitted, closed, pong", None, 101, None, None),
    ("get", "/api/events/{event_id}/seats", "Seat map: sections, rows, seats with status", None, 200, SeatMap, None),
    ("get", "/api/events/{event_id}/seats/status", "Compact seat map (a letter a seat); ?since=<version> of an earlier answer: only the seats changed", None, 200, SeatStatusMap, None),
    ("post", "/api/events/{event_id}/holds", "Hold seats or a standing quantity (access token)", HoldRequest, 201, Hold, "access"),
    ("post", "/api/events/{event_id}/best-seats", "Best N adjacent free seats of a section (access token): a suggestion to hold; 409 no_adjacent_seats", BestSeatsRequest, 200, BestSeats, "access"),
    ("delete", "/api/holds/{hold_id}", "Release a hold", None, 204, None, None),
    ("post", "/api/holds/{hold_id}/checkout", "Create the order and payment (idempotent per hold)", CheckoutRequest, 201, Order, None),
    ("get", "/api/orders/{order_id}", "An order, with ticket codes once paid; ?key=<order_key> opens it on any device", None, 200, Order, None),
    ("get", "/api/orders/{order_id}/tickets/{number}.svg", "QR code (SVG) of one ticket of a paid order (?key= as above)", None, 200, None, None),
    ("post", "/api/orders/resend", "Mail an email's paid orders again: 202 whatever the email (rate-limited)", ResendRequest, 202, Accepted, None),
    ("get", "/api/events/{event_id}/my-orders", "This visitor's paid orders of the event, with their links", None, 200, list[Order], None),
    ("post", "/api/orders/{order_id}/pay", "Pay with a test card (dev provider only)", PayRequest, 200, Order, None),
    ("post", "/api/webhooks/stripe", "Stripe webhook (signature verified on the raw body)", None, 200, None, None),
    ("get", "/api/admin/events", "All events with settings", None, 200, list[Event], "admin"),
    ("post", "/api/admin/events", "Create an event", EventCreate, 201, Event, "admin"),
    ("get", "/api/admin/events/{event_id}", "One event with settings", None, 200, Event, "admin"),
    ("patch", "/api/admin/events/{event_id}", "Change live settings, the name and venue; until the sale starts also its times (then 409 sale_started)", EventPatch, 200, Event, "admin"),
    ("patch", "/api/admin/events/{event_id}/seats", "Mark assigned seats accessible or not (audited)", SeatsPatch, 200, SeatAttributes, "admin"),
    ("get", "/api/admin/events/{event_id}/stats", "Live figures", None, 200, Stats, "admin"),
    ("post", "/api/admin/events/{event_id}/admit", "Admit the next N now (body {count})", AdmitNow, 200, None, "admin"),
    ("post", "/api/admin/events/{event_id}/rebuild-inventory", "Rebuild seat state from PostgreSQL", None, 200, None, "admin"),
    ("get", "/api/admin/events/{event_id}/audit", "Audit trail of settings changes, newest first", None, 200, None, "admin"),
    ("get", "/api/admin/events/{event_id}/live", "Websocket: one live sample a second (auth in the first message)", None, 101, None, None),
    ("get", "/api/admin/events/{event_id}/eta", "ETA preview; ?clear_by= gives the rate that clears the line by then", None, 200, None, "admin"),
    ("get", "/api/admin/events/{event_id}/bots", "Bot challenge counters, cost level now, top sources by places (?limit=)", None, 200, BotsView, "admin"),
    ("post", "/api/admin/events/{event_id}/sources/purge", "Count (dry run) or, with confirm, remove the waiting places of one source; audited", PurgeRequest, 200, PurgeResult, "admin"),
    ("get", "/api/admin/events/{event_id}/autopilot", "Autopilot settings", None, 200, None, "admin"),
    ("patch", "/api/admin/events/{event_id}/autopilot", "Turn the autopilot on or off, set its bounds", AutopilotPatch, 200, None, "admin"),
    ("get", "/api/admin/orders", "Order search: ?event_id=&email=&seat=&code=&order_id=&status=&limit=", None, 200, list[Order], "admin"),
    ("post", "/api/admin/orders/{order_id}/refund", "Refund a whole paid order through its provider (idempotent)", RefundRequest, 200, Order, "admin"),
    ("post", "/api/admin/orders/cancel", "Bulk cancel: ?dry_run=1 answers the count (BulkPlan); else refunds each (BulkCancelResult)", CancelRequest, 200, BulkCancelResult, "admin"),
    ("get", "/api/admin/door/events", "The events a door may pick (id, name, venue, start, time zone; closed sales too): what a checkin token reads", None, 200, list[DoorEvent], "admin"),
    ("get", "/api/events/{event_id}/checkins", "The door's counter: tickets checked in, of tickets of paid orders", None, 200, DoorCount, "admin"),
    ("post", "/api/events/{event_id}/checkins", "Check a ticket in at the door: 200 admitted; 409 already_checked_in, ticket_refunded, wrong_event; 422 invalid_ticket", CheckinRequest, 200, Checkin, "admin"),
    ("get", "/healthz", "Liveness", None, 200, None, None),
    ("get", "/readyz", "Readiness: Redis and PostgreSQL reachable", None, 200, None, None),
    ("get", "/metrics", "Prometheus metrics", None, 200, None, None),
]  # fmt: skip

# Answers that share a path with another: the bulk cancel's dry run (?dry_run=1).
OTHER_ANSWERS: list[Any] = [BulkPlan]

WEBSOCKET_TYPES = [
    StatusMsg, TickMsg, AdmittedMsg, ClosedMsg, ConfirmedMsg, PongMsg, ErrorMsg, PingMsg,
]  # fmt: skip


def _content(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


@cache
def document() -> bytes:
    types: list[Any] = [ErrorBody, *WEBSOCKET_TYPES, *OTHER_ANSWERS]
    for op in OPERATIONS:
        types.extend(t for t in (op[3], op[5]) if t is not None)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(types, refs, strict=True))
    components["SectionIn"].update(SECTION_KINDS)
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, answer, auth in OPERATIONS:
        spec: dict[str, Any] = {"summary": summary, "responses": {}}
        params = re.findall(r"\{(\w+)\}", path)
        if params:
            spec["parameters"] = [
                {
                    "name": p,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": ids.schema_pattern(PATH_PATTERNS[p])},
                }
                for p in params
            ]
        if body is not None:
            spec["requestBody"] = {"required": True, "content": _content(ref_of[body])}
        ok: dict[str, Any] = {"description": "success"}
        if answer is not None:
            ok["content"] = _content(ref_of[answer])
        spec["responses"][str(status)] = ok
        if status == 101:  # a websocket: the handshake itself is outside what OpenAPI describes
            spec["x-websocket"] = True
            spec["responses"]["400"] = {
                "description": "a plain GET, without the websocket handshake",
                "content": _content(ref_of[ErrorBody]),
            }
        spec["responses"]["default"] = {
            "description": "error",
            "content": _content(ref_of[ErrorBody]),
        }
        if auth:
            spec["security"] = [{auth: []}]
        paths.setdefault(path, {})[method] = spec
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Boxoffice", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer", "description": "admin token"},
                "access": {"type": "http", "scheme": "bearer", "description": "access token"},
            },
        },
        "x-websocket-messages": [ref_of[t] for t in WEBSOCKET_TYPES],
    }
    return msgspec.json.encode(doc)
