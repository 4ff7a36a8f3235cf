"""Ops: create events, change live settings, read stats. Every route needs the admin token."""

from __future__ import annotations

import msgspec
from aiohttp import web

from server.booking.service import BOOKING
from server.core.bodies import read_json
from server.core.errors import Invalid
from server.core.http import json_response
from server.core.keys import EventKeys
from server.core.messages import EventCreate, EventPatch
from server.ops import catalog
from server.ops.admin_guard import require_admin
from server.store import audit, db
from server.store.db import POOL
from server.waiting.admission import ADMISSION
from server.waiting.room import ROOM

routes = web.RouteTableDef()


class AdmitNow(msgspec.Struct, forbid_unknown_fields=True):
    count: int = msgspec.field(default=1)


async def admin_only(request: web.Request) -> None:
    """401 without the admin token, 429 while the client's address is throttled."""
    await require_admin(request)


@routes.get("/api/admin/events")
async def list_events(request: web.Request) -> web.Response:
    await admin_only(request)
    rows = await db.list_events(request.app[POOL], include_closed=True)
    return json_response([catalog.present(ev, with_settings=True) for ev in rows])


@routes.post("/api/admin/events")
async def create_event(request: web.Request) -> web.Response:
    await admin_only(request)
    who = audit.operator(request)
    body = await read_json(request, EventCreate)
    ev = await catalog.create(request.app[ROOM], body, who)
    return json_response(catalog.present(ev, with_settings=True), status=201)


@routes.get("/api/admin/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    await admin_only(request)
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    return json_response(catalog.present(ev, with_settings=True))


@routes.patch("/api/admin/events/{event_id}")
async def patch_event(request: web.Request) -> web.Response:
    await admin_only(request)
    who = audit.operator(request)
    patch = await read_json(request, EventPatch)
    ev = await request.app[ROOM].change(request.match_info["event_id"], patch, who=who)
    return json_response(catalog.present(ev, with_settings=True))


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
    await admin_only(request)
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    booking = request.app[BOOKING]
    restored = await booking.inventory.rebuild(EventKeys(ev.id), booking.pool, force=True)
    return json_response({"event_id": ev.id, "holds_restored": restored})


@routes.post("/api/admin/events/{event_id}/admit")
async def admit_now(request: web.Request) -> web.Response:
    """Admit the next N visitors now, beyond the bucket (never beyond max_active)."""
    await admin_only(request)
    who = audit.operator(request)
    body = await read_json(request, AdmitNow)
    if not 1 <= body.count <= 10_000:
        raise Invalid("count: between 1 and 10000")
    room = request.app[ROOM]
    ev = await room.cache.require(request.match_info["event_id"])
    admitted = await request.app[ADMISSION].admit_now(ev.id, body.count)
    change = {"admit_now": (None, {"requested": body.count, "admitted": admitted})}
    await audit.record(request.app[POOL], ev.id, who, "admit_now", change)
    return json_response({"admitted": admitted})
