"""The fan's queue: join, status (polling fallback), leave, and the websocket."""

from __future__ import annotations

import logging

import msgspec
from aiohttp import WSMsgType, web

from server.core.errors import BadRequest, RateLimited
from server.core.http import json_response
from server.core.identity import visitor_id
from server.core.ids import parse_queue_id
from server.core.keys import EventKeys
from server.core.messages import ErrorMsg, PongMsg, client_decoder
from server.core.metrics import METRICS
from server.core.origins import check_origin
from server.core.settings import SETTINGS
from server.waiting.fanout import HUB, Conn, Hub
from server.waiting.room import ROOM

log = logging.getLogger("boxoffice.queue")
routes = web.RouteTableDef()

MAX_BAD_FRAMES = 20
WS_MAX_MESSAGE = 4096


@routes.post("/api/events/{event_id}/queue")
async def join(request: web.Request) -> web.Response:
    status = await request.app[ROOM].join(request.match_info["event_id"], visitor_id(request))
    request.app[METRICS].joins.labels(status.event_id, status.state).inc()
    return json_response(status)


@routes.get("/api/queue/{queue_id}")
async def status(request: web.Request) -> web.Response:
    room = request.app[ROOM]
    return json_response(await room.status(request.match_info["queue_id"], visitor_id(request)))


@routes.delete("/api/queue/{queue_id}")
async def leave(request: web.Request) -> web.Response:
    await request.app[ROOM].leave(request.match_info["queue_id"], visitor_id(request))
    return web.Response(status=204)


@routes.get("/api/queue/{queue_id}/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    room, hub = request.app[ROOM], request.app[HUB]
    queue_id = request.match_info["queue_id"]
    event_id = parse_queue_id(queue_id)
    check_origin(request, request.app[SETTINGS].public_url)
    # permessage-deflate off: ~7x less memory per socket and a 3x faster broadcast.
    ws = web.WebSocketResponse(compress=False, heartbeat=25, max_msg_size=WS_MAX_MESSAGE)
    if not ws.can_prepare(request).ok:
        raise BadRequest("this path expects a websocket upgrade", code="websocket_expected")
    place = await room.place(queue_id, visitor_id(request), touch=True)
    if not hub.reserve(queue_id):
        raise RateLimited(
            "too many open sockets for this place; close another tab",
            code="too_many_sockets",
            retry_after=5,
        )
    try:
        await ws.prepare(request)
        conn = Conn(ws, event_id, queue_id, place.visitor_id)
        hub.add(conn)
    finally:
        hub.unreserve(queue_id)
    try:
        if place.state in ("waiting", "prequeue"):
            # Read again now that the socket is registered: an admission announced while the
            # upgrade was in flight reached no socket, and this read sees it.
            place = await room.scripts.status(EventKeys(event_id), queue_id)
        if await hub.greet(conn, place):
            await _serve(conn, hub)
    finally:
        hub.remove(conn)
        if not conn.admitted:
            try:
                await room.touch(event_id, [queue_id])  # the grace period runs from now
            except Exception as exc:
                log.debug("touch on close failed: %s", exc)
    if not ws.closed:
        await ws.close()
    return ws


async def _serve(conn: Conn, hub: Hub) -> None:
    bad = 0
    async for msg in conn.ws:
        if msg.type == WSMsgType.TEXT:
            try:
                client_decoder.decode(msg.data)
            except msgspec.MsgspecError as exc:
                bad += 1
                await hub.send(conn, ErrorMsg("bad_message", f"not a known message: {exc}"))
            else:
                await hub.send(conn, PongMsg())
        elif msg.type == WSMsgType.BINARY:
            bad += 1
            await hub.send(conn, ErrorMsg("bad_message", "binary frames are not accepted"))
        elif msg.type == WSMsgType.ERROR:
            break
        if bad > MAX_BAD_FRAMES:
            await conn.ws.close(code=1008, message=b"too many bad messages")
            break
