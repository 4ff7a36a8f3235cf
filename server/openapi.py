"""The generated description of the public API, served at GET /api/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from .errors import ErrorBody
from .messages import (
    AdmittedMsg,
    ClosedMsg,
    ErrorMsg,
    Event,
    EventCreate,
    EventPatch,
    PingMsg,
    PongMsg,
    QueueStatus,
    Stats,
    StatusMsg,
    TickMsg,
)

REF = "#/components/schemas/{name}"

# (method, path, summary, request body type, status, response type, auth)
OPERATIONS: list[tuple[str, str, str, Any, int, Any, str | None]] = [
    ("get", "/api/events", "Events on sale or upcoming", None, 200, list[Event], None),
    ("get", "/api/events/{event_id}", "One event", None, 200, Event, None),
    ("post", "/api/events/{event_id}/queue", "Join the queue (idempotent per visitor)", None, 200, QueueStatus, None),
    ("get", "/api/queue/{queue_id}", "Queue status (polling fallback)", None, 200, QueueStatus, None),
    ("delete", "/api/queue/{queue_id}", "Leave the queue", None, 204, None, None),
    ("get", "/api/queue/{queue_id}/ws", "Websocket: status, tick, admitted, closed, pong", None, 101, None, None),
    ("get", "/api/admin/events", "All events with settings", None, 200, list[Event], "admin"),
    ("post", "/api/admin/events", "Create an event", EventCreate, 201, Event, "admin"),
    ("get", "/api/admin/events/{event_id}", "One event with settings", None, 200, Event, "admin"),
    ("patch", "/api/admin/events/{event_id}", "Change live settings", EventPatch, 200, Event, "admin"),
    ("get", "/api/admin/events/{event_id}/stats", "Live figures", None, 200, Stats, "admin"),
    ("get", "/healthz", "Liveness", None, 200, None, None),
    ("get", "/readyz", "Readiness: Redis and PostgreSQL reachable", None, 200, None, None),
    ("get", "/metrics", "Prometheus metrics", None, 200, None, None),
]  # fmt: skip

WEBSOCKET_TYPES = [StatusMsg, TickMsg, AdmittedMsg, ClosedMsg, PongMsg, ErrorMsg, PingMsg]


def _content(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


@cache
def document() -> bytes:
    types: list[Any] = [ErrorBody, *WEBSOCKET_TYPES]
    for op in OPERATIONS:
        types.extend(t for t in (op[3], op[5]) if t is not None)
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    ref_of = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, body, status, answer, auth in OPERATIONS:
        spec: dict[str, Any] = {"summary": summary, "responses": {}}
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            spec["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if body is not None:
            spec["requestBody"] = {"required": True, "content": _content(ref_of[body])}
        ok: dict[str, Any] = {"description": "success"}
        if answer is not None:
            ok["content"] = _content(ref_of[answer])
        spec["responses"][str(status)] = ok
        spec["responses"]["default"] = {
            "description": "error",
            "content": _content(ref_of[ErrorBody]),
        }
        if auth:
            spec["security"] = [{"bearer": []}]
        paths.setdefault(path, {})[method] = spec
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Boxoffice", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "x-websocket-messages": [ref_of[t] for t in WEBSOCKET_TYPES],
    }
    return msgspec.json.encode(doc)
