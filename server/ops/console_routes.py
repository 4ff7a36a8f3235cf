"""Routes of the ops console: audit trail, live feed (websocket), ETA preview, autopilot.

Every route needs the admin token. The live feed checks it before the websocket upgrade, from
`Sec-WebSocket-Protocol` (offer `boxoffice.admin` and `bearer.<token>`; the server answers
`boxoffice.admin`, never the token) or an `Authorization: Bearer` header — never the URL — and
checks the handshake's Origin (server.core.origins). Wrong tokens are throttled per client
address like the rest of the admin API (server/ops/admin_guard.py)."""

from __future__ import annotations

import contextlib
import math
from datetime import UTC, datetime

import msgspec
from aiohttp import WSMsgType, web

from server.core import client_address
from server.core.bodies import read_json
from server.core.clock import now_ms, to_ms
from server.core.errors import BadRequest, Invalid
from server.core.http import json_response
from server.core.identity import bearer
from server.core.ids import check_event_id
from server.core.keys import EventKeys
from server.core.messages import PingMsg
from server.core.origins import check_origin
from server.core.settings import SETTINGS
from server.ops import autopilot
from server.ops.admin_guard import ADMIN_GUARD
from server.ops.admin_routes import admin_only
from server.ops.autopilot import AUTOPILOT
from server.ops.live import LIVE
from server.store import audit
from server.store.db import POOL
from server.waiting.room import ROOM

routes = web.RouteTableDef()


WS_PROTOCOL = "boxoffice.admin"
BEARER_PROTOCOL = "bearer."
MAX_AUDIT = 500

_client = msgspec.json.Decoder(PingMsg)


# ---- audit ----------------------------------------------------------------------------------------


@routes.get("/api/admin/events/{event_id}/audit")
async def audit_trail(request: web.Request) -> web.Response:
    """The event's settings changes, newest first (?limit=1..500, default 100)."""
    await admin_only(request)
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT:
        raise Invalid(f"limit: a whole number from 1 to {MAX_AUDIT}")
    return json_response(await audit.entries(request.app[POOL], ev.id, int(raw)))


# ---- ETA preview ----------------------------------------------------------------------------------


def _clear_by(raw: str | None) -> datetime | None:
    if raw is None or raw == "":
        return None
    text = raw.strip().replace(" ", "+")  # an unescaped '+' in a query string arrives as ' '
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Invalid("clear_by: an RFC 3339 time, like 2026-12-01T10:30:00Z") from None
    if when.tzinfo is None:
        raise Invalid("clear_by: give the time with its offset (Z or +hh:mm)")
    return when.astimezone(UTC)


@routes.get("/api/admin/events/{event_id}/eta")
async def eta(request: web.Request) -> web.Response:
    """How long the last fan in line waits at the measured and configured rates; with
    ?clear_by=<RFC 3339>, the rate that admits everyone in line by then."""
    await admin_only(request)
    room = request.app[ROOM]
    ev = await room.cache.require(request.match_info["event_id"])
    clear_by = _clear_by(request.query.get("clear_by"))
    k = EventKeys(ev.id)
    async with room.redis.pipeline(transaction=False) as pipe:
        pipe.zcard(k.line)
        pipe.zcard(k.pre)
        waiting, prequeue = await pipe.execute()
    now = now_ms()
    seconds_until = None
    if clear_by is not None:
        seconds_until = math.floor((to_ms(clear_by) - now) / 1000)
    preview = autopilot.eta_preview(
        ev.id,
        int(waiting),
        int(prequeue),
        ev.rate_per_min,
        room.measured_rate(ev.id),
        ev.paused,
        max(0, math.ceil((to_ms(ev.sale_starts_at) - now) / 1000)),
        clear_by,
        seconds_until,
    )
    return json_response(preview)


# ---- autopilot ------------------------------------------------------------------------------------


class AutopilotView(msgspec.Struct, frozen=True):
    event_id: str
    config: autopilot.AutopilotConfig
    paused_by_autopilot: bool
    leader_here: bool
    last_decision: autopilot.Decision | None


async def _autopilot_view(request: web.Request, event_id: str) -> AutopilotView:
    config, paused_by_me = await autopilot.load(request.app[POOL], event_id)
    pilot = request.app[AUTOPILOT]
    seen = pilot.seen.get(event_id)
    return AutopilotView(
        event_id, config, paused_by_me, pilot.leader, seen.last if seen is not None else None
    )


@routes.get("/api/admin/events/{event_id}/autopilot")
async def get_autopilot(request: web.Request) -> web.Response:
    await admin_only(request)
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    return json_response(await _autopilot_view(request, ev.id))


@routes.patch("/api/admin/events/{event_id}/autopilot")
async def patch_autopilot(request: web.Request) -> web.Response:
    """Turn the autopilot on or off and set its bounds; audited like every settings change."""
    await admin_only(request)
    who = audit.operator(request)
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    patch = await read_json(request, autopilot.AutopilotPatch)
    await autopilot.configure(request.app[POOL], ev.id, patch, who)
    return json_response(await _autopilot_view(request, ev.id))


# ---- live feed ------------------------------------------------------------------------------------


def _protocol_token(request: web.Request) -> str | None:
    for part in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        part = part.strip()
        if part.startswith(BEARER_PROTOCOL):
            return part[len(BEARER_PROTOCOL) :]
    return None


@routes.get("/api/admin/events/{event_id}/live")
async def live(request: web.Request) -> web.WebSocketResponse:
    """Pushes one sample of the sale per second (and the recent history on connect)."""
    event_id = request.match_info["event_id"]
    # Everything is decided before the upgrade, with an HTTP answer: a throttled address (429),
    # a missing or wrong token (401), a page of another site (403), a plain GET (400), an
    # unknown event (404). No socket opens unauthenticated.
    await request.app[ADMIN_GUARD].check(
        client_address.of(request), _protocol_token(request) or bearer(request)
    )
    check_origin(request, request.app[SETTINGS].public_url)
    ws = web.WebSocketResponse(
        compress=False, heartbeat=25, max_msg_size=4096, protocols=(WS_PROTOCOL,)
    )
    if not ws.can_prepare(request).ok:
        raise BadRequest("this path expects a websocket upgrade", code="websocket_expected")
    ev = await request.app[ROOM].cache.require(check_event_id(event_id))
    await ws.prepare(request)
    hub = request.app[LIVE]
    await ws.send_json({"type": "ready", "event_id": ev.id, "interval_ms": 1000})
    feed = await hub.watch(ev.id, ws)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            with contextlib.suppress(msgspec.DecodeError):
                if isinstance(_client.decode(msg.data), PingMsg):
                    await ws.send_json({"type": "pong"})
    finally:
        hub.leave(feed, ws)
    return ws
