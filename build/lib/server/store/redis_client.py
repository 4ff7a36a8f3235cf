"""The Redis client of an app process: a blocking connection pool (waits for a free connection
instead of failing under a burst)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from server.core.settings import Settings


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


REDIS = web.AppKey("redis", Redis)
