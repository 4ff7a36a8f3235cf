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
    JoinRequest,
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
from server.ops.accounts import MAX_EMAIL, Issued, OperatorView
from server.ops.admin_routes import AdmitNow
from server.ops.autopilot import AutopilotPatch, EtaPreview
from server.ops.console_routes import AutopilotView
from server.ops.live import LiveHistory, LiveSample
from server.ops.operator_routes import (
    CodeBody,
    Ended,
    Enrolment,
    OperatorCreate,
    OperatorPatch,
    PasswordChange,
    RecoveryCodes,
    SessionView,
    SignIn,
    SignInOptions,
    TokenCreate,
)
from server.ops.sessions import SESSION_COOKIE, TOKEN_NAME, NewToken, TokenView
from server.store.audit import AuditEntry
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
    "name": TOKEN_NAME.pattern,
}
# Path parameters matched by a rule rather than one pattern: an operator's email is trimmed and
# lower-cased, then must be one whole address (server/ops/accounts.py), else 404.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "email": {"type": "string", "format": "email", "maxLength": MAX_EMAIL},
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

# (method, path, summary, request body type, status, response type, auth). auth: None (none
# needed), "access" (an admitted fan's access token), "admin" (a bearer token — the shared admin
# token or a scoped API token — or a console session; permissions.py says which roles and
# scopes), "session" (a signed-in operator's own session only: no token).
OPERATIONS: list[tuple[str, str, str, Any, int, Any, str | None]] = [
    ("get", "/api/events", "Events on sale or upcoming", None, 200, list[Event], None),
    ("get", "/api/events/{event_id}", "One event", None, 200, Event, None),
    ("get", "/api/events/{event_id}/challenge", "A bot-check challenge (ALTCHA, as its widget fetches it); its cost may rise with pressure", None, 200, None, None),
    ("post", "/api/events/{event_id}/queue", "Join the queue (idempotent per visitor); optional body: the challenge's solution", JoinRequest, 200, QueueStatus, None),
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
    ("get", "/api/admin/events/{event_id}/audit", "Audit trail of settings changes, newest first (?limit=1..500)", None, 200, list[AuditEntry], "admin"),
    ("get", "/api/admin/events/{event_id}/live", "Websocket: one live sample a second; authenticated before the upgrade (session cookie, or a token in Sec-WebSocket-Protocol bearer.<token> or Authorization, never the URL; Origin checked)", None, 101, None, "admin"),
    ("get", "/api/admin/events/{event_id}/eta", "ETA preview; ?clear_by= gives the rate that clears the line by then", None, 200, EtaPreview, "admin"),
    ("get", "/api/admin/events/{event_id}/bots", "Bot challenge counters, cost level now, top sources by places (?limit=)", None, 200, BotsView, "admin"),
    ("post", "/api/admin/events/{event_id}/sources/purge", "Count (dry run) or, with confirm, remove the waiting places of one source; audited", PurgeRequest, 200, PurgeResult, "admin"),
    ("get", "/api/admin/events/{event_id}/autopilot", "Autopilot settings", None, 200, AutopilotView, "admin"),
    ("patch", "/api/admin/events/{event_id}/autopilot", "Turn the autopilot on or off, set its bounds", AutopilotPatch, 200, AutopilotView, "admin"),
    ("get", "/api/admin/orders", "Order search: ?event_id=&email=&seat=&code=&order_id=&status=&limit=", None, 200, list[Order], "admin"),
    ("post", "/api/admin/orders/{order_id}/refund", "Refund a whole paid order through its provider (idempotent)", RefundRequest, 200, Order, "admin"),
    ("post", "/api/admin/orders/cancel", "Bulk cancel: ?dry_run=1 answers the count (BulkPlan); else refunds each (BulkCancelResult)", CancelRequest, 200, BulkCancelResult, "admin"),
    ("get", "/api/admin/door/events", "The events a door may pick (id, name, venue, start, time zone; closed sales too): what a checkin token reads", None, 200, list[DoorEvent], "admin"),
    ("get", "/api/events/{event_id}/checkins", "The door's counter: tickets checked in, of tickets of paid orders", None, 200, DoorCount, "admin"),
    ("post", "/api/events/{event_id}/checkins", "Check a ticket in at the door: 200 admitted; 409 already_checked_in, ticket_refunded, wrong_event; 422 invalid_ticket", CheckinRequest, 200, Checkin, "admin"),
    ("get", "/api/admin/sign-in-options", "What the console's sign-in page offers (no credential needed)", None, 200, SignInOptions, None),
    ("post", "/api/admin/session", "Sign in: email, password, code → the session cookie and its CSRF token; any wrong part 401 sign_in_failed", SignIn, 200, SessionView, None),
    ("get", "/api/admin/session", "The signed-in operator, and the CSRF token again", None, 200, SessionView, "session"),
    ("delete", "/api/admin/session", "Sign out", None, 204, None, "session"),
    ("delete", "/api/admin/sessions", "Sign out everywhere: end every session of this operator", None, 200, Ended, "session"),
    ("post", "/api/admin/account/password", "Change one's password (the current one, a new one); other sessions end", PasswordChange, 204, None, "session"),
    ("post", "/api/admin/account/totp", "Start enrolling a new authenticator: its secret and QR code", None, 200, Enrolment, "session"),
    ("post", "/api/admin/account/totp/confirm", "Confirm the new authenticator with a code: new recovery codes, shown once", CodeBody, 200, RecoveryCodes, "session"),
    ("post", "/api/admin/account/recovery-codes", "New recovery codes, shown once (a fresh code in X-Boxoffice-OTP)", None, 200, RecoveryCodes, "session"),
    ("get", "/api/admin/operators", "Operators (owners)", None, 200, list[OperatorView], "admin"),
    ("post", "/api/admin/operators", "Invite an operator (owners; the shared admin token bootstraps): a temporary password and authenticator secret, shown once", OperatorCreate, 201, Issued, "admin"),
    ("patch", "/api/admin/operators/{email}", "Change an operator's role, disable or enable them (owners); 409 last_owner", OperatorPatch, 200, OperatorView, "admin"),
    ("post", "/api/admin/operators/{email}/reset", "A new temporary password and authenticator secret, shown once; sessions end (owners)", None, 200, Issued, "admin"),
    ("get", "/api/admin/tokens", "Scoped API tokens (owners)", None, 200, list[TokenView], "admin"),
    ("post", "/api/admin/tokens", "Create a scoped API token (owners): its secret, shown once; 409 token_exists", TokenCreate, 201, NewToken, "admin"),
    ("delete", "/api/admin/tokens/{name}", "Revoke a token (owners); its live sockets close", None, 204, None, "admin"),
    ("get", "/api/admin/audit", "Changes to operators and tokens, newest first (owners; ?limit=1..500)", None, 200, list[AuditEntry], "admin"),
    ("get", "/api/openapi.json", "This description of the API (OpenAPI 3.1)", None, 200, None, None),
    ("get", "/healthz", "Liveness", None, 200, None, None),
    ("get", "/readyz", "Readiness: Redis and PostgreSQL reachable", None, 200, None, None),
    ("get", "/metrics", "Prometheus metrics", None, 200, None, None),
]  # fmt: skip

# Operations whose body may be left out: a join without a challenge solution, a refund without
# a reason.
OPTIONAL_BODY = {
    ("post", "/api/events/{event_id}/queue"),
    ("post", "/api/admin/orders/{order_id}/refund"),
}

# What each value of an operation's auth asks for: alternatives, any one suffices.
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "access": [{"access": []}],
    "admin": [{"admin": []}, {"session": []}],
    "session": [{"session": []}],
}

# Answers that share a path with another: the bulk cancel's dry run (?dry_run=1).
OTHER_ANSWERS: list[Any] = [BulkPlan]

WEBSOCKET_TYPES = [
    StatusMsg, TickMsg, AdmittedMsg, ClosedMsg, ConfirmedMsg, PongMsg, ErrorMsg, PingMsg,
]  # fmt: skip
# The messages of each websocket. The live feed also opens with {"type": "ready", "event_id",
# "interval_ms"} and answers {"type": "ping"} with {"type": "pong"}; it closes with 4401 once
# its session or token has ended.
WEBSOCKET_MESSAGES: dict[str, list[Any]] = {
    "/api/queue/{queue_id}/ws": WEBSOCKET_TYPES,
    "/api/admin/events/{event_id}/live": [LiveHistory, LiveSample, PongMsg, ErrorMsg, PingMsg],
}


def _content(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


@cache
def document() -> bytes:
    types: list[Any] = [ErrorBody, *WEBSOCKET_TYPES, LiveHistory, LiveSample, *OTHER_ANSWERS]
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
                    "schema": PATH_SCHEMAS.get(p)
                    or {"type": "string", "pattern": ids.schema_pattern(PATH_PATTERNS[p])},
                }
                for p in params
            ]
        if body is not None:
            required = (method, path) not in OPTIONAL_BODY
            spec["requestBody"] = {"required": required, "content": _content(ref_of[body])}
        ok: dict[str, Any] = {"description": "success"}
        if answer is not None:
            ok["content"] = _content(ref_of[answer])
        spec["responses"][str(status)] = ok
        if status == 101:  # a websocket: the handshake itself is outside what OpenAPI describes
            spec["x-websocket"] = True
            spec["x-websocket-messages"] = [ref_of[t] for t in WEBSOCKET_MESSAGES[path]]
            spec["responses"]["400"] = {
                "description": "a plain GET, without the websocket handshake",
                "content": _content(ref_of[ErrorBody]),
            }
        spec["responses"]["default"] = {
            "description": "error",
            "content": _content(ref_of[ErrorBody]),
        }
        if auth:
            spec["security"] = SECURITY[auth]
        paths.setdefault(path, {})[method] = spec
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Boxoffice", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "admin": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "BOXOFFICE_ADMIN_TOKEN while configured, or a scoped API token",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "a signed-in operator's session (POST /api/admin/session);"
                    " unsafe methods also send X-CSRF-Token, high-risk ones X-Boxoffice-OTP",
                },
                "access": {"type": "http", "scheme": "bearer", "description": "access token"},
            },
        },
        "x-websocket-messages": [ref_of[t] for t in WEBSOCKET_TYPES],
    }
    return msgspec.json.encode(doc)
