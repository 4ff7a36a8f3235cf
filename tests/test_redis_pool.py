"""The app's pool of connections to one real Redis (server.store.redis_client.blocking_pool): a
kept connection the server closed (Redis restarted, or CLIENT KILL) is reconnected when the pool
hands it out, so no command fails on it. redis-py 8.1 skips that check when maintenance
notifications are on, which it does by default (redis/redis-py#4252): after Redis came back
empty, requests answered 503 until every idle connection had failed once. And closing the
client (close_redis) closes the pool's connections: a client given its pool leaves it open."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from server.store.redis_client import blocking_pool, close_redis

from .helpers import eventually

KEPT = 12
RUN = uuid.uuid4().hex[:8]  # the names are this run's alone
NAME, CLOSED = f"bo-test-kept-{RUN}", f"bo-test-closed-{RUN}"


async def test_a_kept_connection_the_server_closed_is_replaced_before_use(
    server_urls: tuple[str, str], redis: Redis
) -> None:
    client = Redis(connection_pool=blocking_pool(server_urls[0], 32, client_name=NAME))
    try:
        # KEPT commands at once: the pool keeps KEPT idle connections afterwards.
        await asyncio.gather(*(client.blpop(["bo:test:never"], 0.05) for _ in range(KEPT)))
        assert len(client.connection_pool._available_connections) == KEPT
        # The server is shared with other tests: the pool's connections are the ones it named.
        kept = [int(c["id"]) for c in await redis.client_list() if c["name"] == NAME]
        assert len(kept) == KEPT
        for client_id in kept:
            await redis.client_kill_filter(_id=str(client_id))
        # Gone on the server's side; the loop turns of these polls read the closes on ours.
        await eventually(lambda: named(redis, 0), "the kept connections killed")
        # At once, so that each command is handed a kept connection of its own.
        answers = await asyncio.gather(*(client.incr("bo:test:n") for _ in range(KEPT)))
        assert sorted(answers) == list(range(1, KEPT + 1))
    finally:
        await close_redis(client)


async def test_closing_the_client_closes_its_pools_connections(
    server_urls: tuple[str, str], redis: Redis
) -> None:
    client = Redis(connection_pool=blocking_pool(server_urls[0], 32, client_name=CLOSED))
    try:
        await asyncio.gather(*(client.blpop(["bo:test:never"], 0.05) for _ in range(4)))
        assert await named(redis, 4, CLOSED)
    finally:
        await close_redis(client)
    await eventually(lambda: named(redis, 0, CLOSED), "the pool's connections closed")


async def named(redis: Redis, count: int, name: str = NAME) -> bool:
    """Whether the server has `count` connections of that name."""
    return sum(1 for c in await redis.client_list() if c["name"] == name) == count
