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
    """No seat map is built here: `available` comes from counters (SeatMaps.available)."""
    rows = await db.list_events(request.app[POOL])
    left = await request.app[BOOKING].seat_maps.available(rows)
    return json_response(
        [catalog.present(ev, available=n) for ev, n in zip(rows, left, strict=True)]
    )


@routes.get("/api/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    [left] = await request.app[BOOKING].seat_maps.available([ev])
    return json_response(catalog.present(ev, available=left))
