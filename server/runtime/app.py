"""create_app(): routes, middlewares and cleanup contexts. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web

from server import assets
from server.booking import routes as booking_routes
from server.booking.inventory import Inventory
from server.booking.relay import Relay
from server.booking.service import BOOKING, Booking
from server.core.errors import Handler, error_middleware
from server.core.identity import visitor_middleware
from server.core.metrics import METRICS, Metrics
from server.core.settings import SETTINGS, Settings
from server.core.tokens import Signer
from server.ops import admin_routes, console_routes, event_routes
from server.payments import make_provider
from server.runtime import site_routes
from server.runtime.tasks import TICKER, Ticker
from server.store import db
from server.store.db import POOL
from server.store.redis_client import REDIS, make_redis
from server.waiting import routes as queue_routes
from server.waiting.challenge import GUARD, Guard
from server.waiting.fanout import HUB, Hub
from server.waiting.line import Scripts
from server.waiting.room import ROOM, EventCache, Room


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = make_redis(app[SETTINGS])
    app[REDIS] = client
    yield
    await client.aclose()


async def _postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = await db.create_pool(app[SETTINGS].database_url, app[SETTINGS].database_pool_size)
    await db.migrate(pool)
    app[POOL] = pool
    yield
    await pool.close()


async def _room_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    room = Room(
        settings,
        app[REDIS],
        Scripts(app[REDIS]),
        app[POOL],
        EventCache(app[POOL]),
        Signer(settings.secret),
    )
    metrics = Metrics(lambda: room.snapshots)
    hub = Hub(room, metrics)
    provider = make_provider(settings)
    booking = Booking(room, Inventory(app[REDIS]), provider, room.signer)
    ticker = Ticker(room, hub, metrics, booking, Relay(booking))
    app[ROOM], app[METRICS], app[HUB], app[TICKER] = room, metrics, hub, ticker
    app[BOOKING] = booking
    app[GUARD] = Guard(app[REDIS], room.signer.subkey("altcha"), settings.trusted_proxies)
    tasks = [asyncio.create_task(make()) for make in ticker.tasks()]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await hub.close_everything()
    await provider.close()


@web.middleware
async def timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    if not route.endswith("/ws"):
        request.app[METRICS].requests.labels(request.method, route, response.status).observe(
            time.perf_counter() - started
        )
    return response


def create_app(settings: Settings) -> web.Application:
    if not settings.redis_url or not settings.database_url or not settings.secret:
        raise ValueError("create_app needs redis_url, database_url and secret")
    signer = Signer(settings.secret)
    app = web.Application(
        middlewares=[
            timing_middleware,
            error_middleware,
            visitor_middleware(signer, secure=settings.mode == "production"),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_redis_ctx, _postgres_ctx, _room_ctx])
    app.add_routes(site_routes.routes)
    app.add_routes(event_routes.routes)
    app.add_routes(queue_routes.routes)
    app.add_routes(admin_routes.routes)
    app.add_routes(booking_routes.routes)
    console_routes.setup(app)
    app.router.add_static("/static/", assets.STATIC, name="static")
    return app
