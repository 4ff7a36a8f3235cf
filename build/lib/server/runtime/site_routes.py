"""Public routes: events, fan pages, health, metrics."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from server.ops import catalog
from server.store import db
from server.runtime.appkeys import BOOKING, METRICS, POOL, REDIS, ROOM
from server.core.errors import Invalid, error_response
from server.core.messages import encoder
from server.core.metrics import CONTENT_TYPE
from server.runtime.openapi import document
from server.waiting.room import check_event_id

STATIC = Path(__file__).resolve().parent.parent / "static"
routes = web.RouteTableDef()


async def read_body(request: web.Request) -> bytes:
    """A request's body, which must not be empty (it is decoded by the caller's Struct)."""
    body = await request.read()
    if not body:
        raise Invalid("a JSON body is required", code="body_required")
    return body


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=encoder.encode(data), status=status, content_type="application/json")


@routes.get("/api/events")
async def list_events(request: web.Request) -> web.Response:
    rows = await db.list_events(request.app[POOL])
    booking = request.app[BOOKING]
    return json_response(
        [catalog.present(ev, available=(await booking.seat_map(ev.id)).available) for ev in rows]
    )


@routes.get("/api/events/{event_id}")
async def get_event(request: web.Request) -> web.Response:
    ev = await request.app[ROOM].cache.require(request.match_info["event_id"])
    seat_map = await request.app[BOOKING].seat_map(ev.id)
    return json_response(catalog.present(ev, available=seat_map.available))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    problems = []
    try:
        await request.app[REDIS].ping()
    except Exception as exc:
        problems.append(f"redis: {exc}")
    try:
        await db.ping(request.app[POOL])
    except Exception as exc:
        problems.append(f"postgresql: {exc}")
    if problems:
        return error_response(503, "not_ready", "; ".join(problems), retry_after=5)
    return json_response({"status": "ready"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=document(), content_type="application/json")


def _page(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return _page("index.html")


@routes.get("/admin")
async def admin_console(request: web.Request) -> web.FileResponse:
    return _page("admin/index.html")


@routes.get("/e/{event_id}")
async def waiting_page(request: web.Request) -> web.FileResponse:
    await request.app[ROOM].cache.require(check_event_id(request.match_info["event_id"]))
    return _page("waiting.html")


@routes.get("/e/{event_id}/seats")
async def seats_page(request: web.Request) -> web.FileResponse:
    await request.app[ROOM].cache.require(check_event_id(request.match_info["event_id"]))
    return _page("seats.html")
