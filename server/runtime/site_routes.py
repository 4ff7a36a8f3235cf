"""Site routes: fan pages, static files, health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from server import assets
from server.core.errors import NotFound, error_response
from server.core.http import json_response
from server.core.ids import check_event_id
from server.core.metrics import CONTENT_TYPE, METRICS
from server.runtime.openapi import document
from server.runtime.translations import page_response
from server.store import db
from server.store.db import POOL
from server.store.redis_client import REDIS
from server.waiting.room import ROOM

routes = web.RouteTableDef()  # every role: health, readiness, metrics, the API description
pages = web.RouteTableDef()  # the web role: fan pages and the console page


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


@pages.get("/static/{path:.+}")
async def static_file(request: web.Request) -> web.FileResponse:
    """A file under static/ (NGINX serves these itself in front of the app). Anything else —
    a missing file, a folder, a path leaving the folder — is a 404 (an HTML page, see
    server.runtime.pages), not aiohttp's static route's empty 404."""
    wanted = (assets.STATIC / request.match_info["path"]).resolve()
    if not wanted.is_relative_to(assets.STATIC) or not wanted.is_file():
        raise NotFound("no such file", code="not_found")
    return web.FileResponse(wanted)


@pages.get("/")
async def index(request: web.Request) -> web.Response:
    return page_response(request, "index.html")


@pages.get("/admin")
async def admin_console(request: web.Request) -> web.FileResponse:
    """The console (English only; the fan pages are the translated ones)."""
    return web.FileResponse(
        assets.STATIC / "admin/index.html", headers={"Cache-Control": "no-cache"}
    )


@pages.get("/orders/{order_id}")
async def order_page(request: web.Request) -> web.Response:
    """The fan's order page; it reads the order with the link's key (no cookie needed)."""
    return page_response(request, "order.html")


@pages.get("/door")
async def door_page(request: web.Request) -> web.Response:
    return page_response(request, "door.html")


@pages.get("/e/{event_id}")
async def waiting_page(request: web.Request) -> web.Response:
    await request.app[ROOM].cache.require(check_event_id(request.match_info["event_id"]))
    return page_response(request, "waiting.html")


@pages.get("/e/{event_id}/seats")
async def seats_page(request: web.Request) -> web.Response:
    await request.app[ROOM].cache.require(check_event_id(request.match_info["event_id"]))
    return page_response(request, "seats.html")
