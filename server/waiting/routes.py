"""The fan's queue: the bot challenge, join, status (polling fallback), leave, and the
websocket; each fan request is rate limited per visitor and per client address."""

from __future__ import annotations

import msgspec
from aiohttp import web

from server.core.errors import BadRequest, DomainError, RateLimited
from server.core.http import json_response
from server.core.identity import add_cookie, visitor_id
from server.core.ids import parse_queue_id
from server.core.messages import JoinRequest
from server.core.metrics import METRICS
from server.core.origins import check_origin
from server.core.settings import SETTINGS
from server.core.tokens import PlaceClaims, TokenError
from server.waiting import sources
from server.waiting.challenge import GUARD
from server.waiting.fanout import HUB, Conn
from server.waiting.room import ROOM, Standing
from server.waiting.session import Socket, conversation

routes = web.RouteTableDef()

PLACE_COOKIE_MAX_AGE = 24 * 3600


_join_body = msgspec.json.Decoder(JoinRequest)


@routes.get("/api/events/{event_id}/challenge")
async def challenge(request: web.Request) -> web.Response:
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    guard, visitor = request.app[GUARD], visitor_id(request)
    address = guard.address(request)
    await guard.limit("challenge", ev.id, visitor, address)
    response = json_response(await guard.issue(ev.id, ev.challenge, visitor, address))
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.post("/api/events/{event_id}/queue")
async def join(request: web.Request) -> web.Response:
    room, guard, visitor = request.app[ROOM], request.app[GUARD], visitor_id(request)
    ev = await room.cache.require(request.match_info["event_id"])
    address = guard.address(request)
    counts = guard.counts("join", ev.id, visitor, address)
    raw = await request.read()
    try:
        solution = _join_body.decode(raw).altcha if raw.strip() else None
    except msgspec.MsgspecError:  # refused (400/422), and an attempt all the same
        await guard.count("join", counts)
        raise
    kept = _kept(request, ev.id, visitor)
    if solution is not None or kept is not None:
        # Checking a solution costs a PBKDF2 derivation, restoring a kept place a script of its
        # own: the attempt is counted before them. Otherwise join.lua counts it.
        await guard.count("join", counts)
        counts = []
    proof = guard.proof(ev.id, ev.challenge, solution)
    try:
        source = sources.recorded(address)
        standing = await room.join(ev, visitor, proof, kept, source, counts)
    except DomainError as exc:
        if exc.code == "challenge_failed":
            await guard.failed(ev.id)
        raise
    request.app[METRICS].joined(standing.status.event_id, standing.status.state)
    return _answer(request, standing)


@routes.get("/api/queue/{queue_id}")
async def status(request: web.Request) -> web.Response:
    room, guard, visitor = request.app[ROOM], request.app[GUARD], visitor_id(request)
    queue_id = request.match_info["queue_id"]
    event_id = parse_queue_id(queue_id)
    counts = guard.counts("status", event_id, visitor, guard.address(request))  # by status.lua
    kept = _kept(request, event_id, visitor)
    return _answer(request, await room.status(queue_id, visitor, kept, counts))


def place_cookie(event_id: str) -> str:
    """The cookie in which the fan's browser keeps its place at one event (signed)."""
    return f"bo_place_{event_id}"


def _kept(request: web.Request, event_id: str, visitor: str) -> PlaceClaims | None:
    """The place this visitor's browser kept for the event, if its cookie verifies."""
    token = request.cookies.get(place_cookie(event_id))
    if token is None:
        return None
    try:
        return request.app[ROOM].signer.verify_place(token, event_id=event_id, visitor_id=visitor)
    except TokenError:
        return None


def _answer(request: web.Request, standing: Standing) -> web.Response:
    """The fan's status; the browser keeps the place it names (a day at most)."""
    response = json_response(standing.status)
    if standing.kept is not None:
        secure = request.secure or request.app[SETTINGS].mode == "production"
        name = place_cookie(standing.status.event_id)
        add_cookie(response, name, standing.kept, PLACE_COOKIE_MAX_AGE, secure)
    return response


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
    guard = request.app[GUARD]
    await guard.limit("ws", event_id, visitor_id(request), guard.address(request))
    ws = Socket()
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
        conn = Conn(ws, event_id, queue_id, place.visitor_id, transport=request.transport)
        hub.add(conn)  # removed by the conversation, which aiohttp runs once this returned
    finally:
        hub.unreserve(queue_id)
    ws.converse(conversation(conn, hub, room, place))
    return ws
