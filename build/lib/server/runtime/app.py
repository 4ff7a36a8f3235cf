"""create_app(): routes, middlewares and cleanup contexts. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from server.ops import admin_routes, console_routes
from server.booking import routes
from server.runtime import site_routes
from server.waiting import routes
from server.store import db
from server.runtime.appkeys import BOOKING, HUB, METRICS, POOL, REDIS, ROOM, SETTINGS, TICKER
from server.booking.service import Booking
from server.core.errors import Handler, error_middleware
from server.waiting.fanout import Hub
from server.core.identity import visitor_middleware
from server.booking.inventory import Inventory
from server.core.metrics import Metrics
from server.payments import make_provider
from server.booking.relay import Relay
from server.waiting.room import EventCache, Room
from server.waiting.line import Scripts
from server.core.settings import Settings
from server.runtime.tasks import Ticker
from server.core.tokens import Signer


def make_redis(settings: Settings) -> Redis:
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,
        socket_timeout=5,
        socket_connect_timeout=2,
        health_check_interval=10,
    )
    return Redis(connection_pool=pool)


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
    app.add_routes(api_public.routes)
    app.add_routes(api_queue.routes)
    app.add_routes(api_admin.routes)
    app.add_routes(api_booking.routes)
    api_console.setup(app)
    app.router.add_static("/static/", api_public.STATIC, name="static")
    return app
