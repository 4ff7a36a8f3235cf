"""Public catalog routes: the events on sale or upcoming, and one event."""

from __future__ import annotations

from aiohttp import web

from server.booking.service import BOOKING
from server.core.http import json_response
from server.ops import catalog
from server.store import db
from server.store.db import POOL
from server.waiting.room import ROOM

routes = web.RouteTableDef()


@routes.get("/api/events")
async def list_events(request: web.Request) -> web.Response:
    rows = await db.list_events(request.app[POOL])
    booking = request.app[BOOKING]
    return json_response(
        [
            catalog.present(ev, available=(await booking.seat_maps.get(ev.id)).available)
            for ev in rows
        ]
    )


@routes.get("/api/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    seat_map = await request.app[BOOKING].seat_maps.get(ev.id)
    return json_response(catalog.present(ev, available=seat_map.available))
