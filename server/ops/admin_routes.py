"""Ops: create events, change live settings, read stats. Every route is governed by its entry in
server/ops/permissions.py through admin_only() (server/ops/admin_guard.py)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from aiohttp import web

from server.booking.service import BOOKING
from server.core.bodies import read_json
from server.core.http import json_response
from server.core.keys import EventKeys
from server.core.messages import EventCreate, EventPatch, SeatsPatch
from server.ops import catalog
from server.ops.admin_guard import admin_only, step_up
from server.ops.permissions import admit_is_high_risk, patch_is_high_risk
from server.store import audit, db
from server.store.db import POOL
from server.waiting.admission import ADMISSION
from server.waiting.room import ROOM

routes = web.RouteTableDef()


class AdmitNow(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1


__all__ = ["admin_only", "routes"]


@routes.get("/api/admin/events")
async def list_events(request: web.Request) -> web.Response:
    await admin_only(request)
    rows = await db.list_events(request.app[POOL], include_closed=True)
    return json_response([catalog.present(ev, with_settings=True) for ev in rows])


@routes.post("/api/admin/events")
async def create_event(request: web.Request) -> web.Response:
    p = await admin_only(request)
    body = await read_json(request, EventCreate)
    ev = await catalog.create(request.app[ROOM], body, p.who, step_up=p.stepped_up)
    return json_response(catalog.present(ev, with_settings=True), status=201)


@routes.get("/api/admin/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    await admin_only(request)
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    return json_response(catalog.present(ev, with_settings=True))


@routes.patch("/api/admin/events/{event_id}")
async def patch_event(request: web.Request) -> web.Response:
    p = await admin_only(request)
    patch = await read_json(request, EventPatch)
    room = request.app[ROOM]
    current = await room.cache.require(request.match_info["event_id"])
    patch = catalog.check_change(current, patch)
    p = await step_up(request, p, patch_is_high_risk(current.rate_per_min, current.closed, patch))
    ev = await room.change(current.id, patch, who=p.who, step_up=p.stepped_up)
    return json_response(catalog.present(ev, with_settings=True))


@routes.patch("/api/admin/events/{event_id}/seats")
async def patch_seats(request: web.Request) -> web.Response:
    """Mark assigned seats accessible or not (audited); the seat map shows it within seconds."""
    p = await admin_only(request)
    body = await read_json(request, SeatsPatch)
    room = request.app[ROOM]
    ev = await room.cache.require(request.match_info["event_id"])
    return json_response(await catalog.set_accessible(room, ev, body, p.who, p.stepped_up))


@routes.get("/api/admin/events/{event_id}/stats")
async def event_stats(request: web.Request) -> web.Response:
    await admin_only(request)
    room = request.app[ROOM]
    ev = await room.cache.require(request.match_info["event_id"])
    booking = request.app[BOOKING]
    return json_response(await catalog.stats(room, booking.inventory, booking.checkins, ev))


@routes.post("/api/admin/events/{event_id}/rebuild-inventory")
async def rebuild_inventory(request: web.Request) -> web.Response:
    """Recompute live seat state from PostgreSQL (keeps live holds of seats not sold)."""
    p = await admin_only(request)
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    booking = request.app[BOOKING]
    restored = await booking.inventory.rebuild(EventKeys(ev.id), booking.pool, force=True)
    change = {"inventory": (None, {"holds_restored": restored})}
    await audit.record(
        request.app[POOL], ev.id, p.who, "rebuild_inventory", change, step_up=p.stepped_up
    )
    return json_response({"event_id": ev.id, "holds_restored": restored})


@routes.post("/api/admin/events/{event_id}/admit")
async def admit_now(request: web.Request) -> web.Response:
    """Admit the next N visitors now, beyond the bucket (never beyond max_active)."""
    p = await admin_only(request)
    body = await read_json(request, AdmitNow)
    p = await step_up(request, p, admit_is_high_risk(body.count))
    room = request.app[ROOM]
    ev = await room.cache.require(request.match_info["event_id"])
    admitted = await request.app[ADMISSION].admit_now(ev.id, body.count)
    change = {"admit_now": (None, {"requested": body.count, "admitted": admitted})}
    await audit.record(request.app[POOL], ev.id, p.who, "admit_now", change, step_up=p.stepped_up)
    return json_response({"admitted": admitted})
