"""create_app(): routes, middlewares and cleanup contexts. Wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from server.booking import routes as booking_routes
from server.booking.service import BOOKING, Booking
from server.core import client_address
from server.core.bodies import json_only_middleware
from server.core.errors import Handler, error_middleware
from server.core.identity import visitor_middleware
from server.core.loops import Loop
from server.core.metrics import METRICS, Metrics
from server.core.settings import SETTINGS, Settings
from server.core.tokens import Signer
from server.notify.mailer import MAILER, Mailer
from server.notify.transport import make_transport
from server.ops import (
    admin_routes,
    bots_routes,
    console_routes,
    event_routes,
    operator_routes,
    order_routes,
)
from server.ops.admin_guard import admin_guard_ctx
from server.ops.autopilot import AUTOPILOT, Autopilot
from server.ops.live import LIVE, LiveCollector, LiveHub
from server.payments.registry import make_providers
from server.runtime import site_routes
from server.runtime.pages import page_errors_middleware
from server.runtime.tasks import BackgroundTasks
from server.store import db, planner_stats
from server.store.db import POOL
from server.store.redis_client import REDIS, close_redis, make_redis
from server.waiting import routes as queue_routes
from server.waiting.admission import ADMISSION, Admission
from server.waiting.challenge import GUARD, Guard
from server.waiting.fanout import HUB, Hub
from server.waiting.news import News
from server.waiting.room import ROOM, Room

log = logging.getLogger("boxoffice.app")
CLOSE_SECONDS = 5.0  # most a stop waits for the Redis client or the PostgreSQL pool to close


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = make_redis(app[SETTINGS])
    app[REDIS] = client
    yield
    try:
        await asyncio.wait_for(close_redis(client), CLOSE_SECONDS)
    except TimeoutError:
        log.warning("Redis client did not close in time")


async def _postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await db.create_pool(
        settings.database_url, settings.database_pool_size, settings.database_pooler
    )
    if settings.database_pooler == "none":
        await db.migrate(pool)
    else:  # behind a pooler no app process runs DDL: `python -m server migrate` did, directly
        await db.require_current(pool)
    app[POOL] = pool
    yield
    # A stop is bounded: close waits for connections still in use, and is cut short (the pool
    # then terminates them) rather than hold the process past its grace period.
    try:
        await asyncio.wait_for(pool.close(), CLOSE_SECONDS)
    except TimeoutError:
        log.warning("PostgreSQL pool did not close in time; terminated")


async def _domains_ctx(app: web.Application) -> AsyncIterator[None]:
    """The waiting room, booking, ops and mail objects of this process, and their background
    loops."""
    settings, redis, pool = app[SETTINGS], app[REDIS], app[POOL]
    room = Room.of(settings, redis, pool)
    metrics = Metrics()
    for role in settings.role_set:
        metrics.roles.labels(role).set(1)
    hub = Hub(room, metrics)
    admission = Admission(room, hub, metrics)
    providers = make_providers(settings)
    booking = Booking(room, providers, lambda: admission.live)
    live = LiveHub(room, booking, metrics)
    metrics.registry.register(LiveCollector(live, lambda: admission.live))
    pilot = Autopilot(room)
    mailer = Mailer(
        settings, redis, pool, lambda: admission.live, make_transport(settings), metrics
    )
    app[ROOM], app[METRICS], app[HUB], app[ADMISSION] = room, metrics, hub, admission
    app[BOOKING], app[LIVE], app[AUTOPILOT], app[MAILER] = booking, live, pilot, mailer
    app[GUARD] = Guard(app[REDIS], room.signer.subkey("altcha"))
    tasks = BackgroundTasks()
    loops = role_loops(
        settings.role_set, admission, hub, News(room, hub, admission), booking, pilot, mailer
    )
    # Every role probes its loop (/metrics says how long it was blocked) and may analyze the
    # event partitions that grew (one process at a time does).
    tasks.start([("stalls", metrics.stalls.step), *planner_stats.loops(pool), *loops])
    yield
    await tasks.stop()
    with contextlib.suppress(Exception):
        await pilot.release()
    await providers.close()
    await mailer.close()


def role_loops(
    roles: frozenset[str],
    admission: Admission,
    hub: Hub,
    news: News,
    booking: Booking,
    pilot: Autopilot,
    mailer: Mailer,
) -> list[Loop]:
    """The background loops a process with these roles runs."""
    loops: list[Loop] = []
    if "web" in roles:
        loops += [*hub.loops(), *news.loops()]
    if "admission" in roles or "web" in roles:
        loops += admission.loops(admit="admission" in roles)
    elif "relay" in roles or "notifier" in roles:
        loops.append(admission.events_loop())  # their stream consumers read the live events'
    if "admission" in roles:
        loops += [*booking.availability.loops(), *pilot.loops()]
    if "relay" in roles:
        loops += booking.relay.loops()
    if "payments" in roles:
        loops += booking.settlement.loops()
    if "notifier" in roles:
        loops += mailer.loops()
    return loops


async def _close_sockets(app: web.Application) -> None:
    """Close every websocket before aiohttp waits for open requests to end (on_shutdown), so a
    stop takes milliseconds and fans see 1001 (going away) and reconnect elsewhere."""
    await app[HUB].close_everything()
    await app[LIVE].close()


@web.middleware
async def timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    if not route.endswith("/ws"):
        request.app[METRICS].request_timer(request.method, route, response.status).observe(
            time.perf_counter() - started
        )
    return response


def create_app(settings: Settings) -> web.Application:
    if not settings.redis_configured or not settings.database_url or not settings.secret:
        raise ValueError(
            "create_app needs a Redis (URL, cluster or sentinels), database_url, secret"
        )
    signer = Signer(settings.secret)
    app = web.Application(
        middlewares=[
            timing_middleware,
            page_errors_middleware,
            error_middleware,
            json_only_middleware,
            visitor_middleware(signer, secure=settings.mode == "production"),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[client_address.TRUSTED_PROXIES] = client_address.parse_networks(settings.trusted_proxies)
    app.cleanup_ctx.extend([_redis_ctx, admin_guard_ctx, _postgres_ctx, _domains_ctx])
    app.on_shutdown.append(_close_sockets)
    app.add_routes(site_routes.routes)  # health, readiness and metrics in every role
    roles = settings.role_set
    if "web" in roles:
        app.add_routes(event_routes.routes)
        app.add_routes(queue_routes.routes)
        app.add_routes(admin_routes.routes)
        app.add_routes(booking_routes.routes)
        app.add_routes(console_routes.routes)
        app.add_routes(bots_routes.routes)
        app.add_routes(order_routes.routes)
        app.add_routes(operator_routes.routes)
        app.add_routes(site_routes.pages)
    if roles & {"web", "payments"}:
        app.add_routes(booking_routes.webhook_routes)
    return app
