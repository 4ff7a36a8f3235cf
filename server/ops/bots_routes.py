"""Ops against bots: the challenge counters, the price now, the top sources of places, and
purging the waiting places of one source (a dry-run count first; the purge is audited).
Every route needs the admin token; the policy itself is a PATCH field like the others."""

from __future__ import annotations

from aiohttp import web

from server.core.bodies import read_json
from server.core.errors import Invalid
from server.core.http import json_response
from server.ops.admin_guard import admin_only, step_up
from server.store import audit
from server.store.db import POOL
from server.waiting import sources
from server.waiting.room import ROOM

routes = web.RouteTableDef()


@routes.get("/api/admin/events/{event_id}/bots")
async def bots(request: web.Request) -> web.Response:
    """Challenges issued, solved and failed, the cost level now, and the top sources by places
    taken (?limit=1..100, default 20) with their waiting places and current level."""
    await admin_only(request)
    room = request.app[ROOM]
    ev = await room.cache.require(request.match_info["event_id"])
    raw = request.query.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= sources.TOP_MOST:
        raise Invalid(f"limit: a whole number from 1 to {sources.TOP_MOST}")
    view = await sources.view(room.redis, room.scripts, ev.id, ev.challenge, int(raw))
    return json_response(view)


@routes.post("/api/admin/events/{event_id}/sources/purge")
async def purge_source(request: web.Request) -> web.Response:
    """Body {"source": "<address>", "confirm": false|true}: without confirm, how many waiting
    places the source holds (nothing changes); with it, those places are removed at once and
    the purge is written to the audit trail."""
    p = await admin_only(request)
    room = request.app[ROOM]
    ev = await room.cache.require(request.match_info["event_id"])
    body = await read_json(request, sources.PurgeRequest)
    p = await step_up(request, p, body.confirm)  # removing places is high-risk, counting not
    source = sources.check_source(body.source)
    count = await sources.purge(room.scripts, ev.id, source, dry_run=not body.confirm)
    if body.confirm:
        change = {"purge_source": (None, {"source": source, "purged": count})}
        await audit.record(
            request.app[POOL], ev.id, p.who, "purge_source", change, step_up=p.stepped_up
        )
    return json_response(
        sources.PurgeResult(ev.id, source, waiting=count, purged=count if body.confirm else 0)
    )
