"""The app's pool of connections to one real Redis (server.store.redis_client.blocking_pool): a
kept connection the server closed (Redis restarted, or CLIENT KILL) is reconnected when the pool
hands it out, so no command fails on it. redis-py 8.1 skips that check when maintenance
notifications are on, which it does by default (redis/redis-py#4252): after Redis came back
empty, requests answered 503 until every idle connection had failed once. And closing the
client (close_redis) closes the pool's connections: a client given its pool leaves it open."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from server.store.redis_client import blocking_pool, close_redis

from .helpers import eventually

KEPT = 12
NAME = "bo-test-kept-pool"


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
        await asyncio.sleep(0.2)  # the servers' FINs reach this process's sockets
        answers = [await client.incr("bo:test:n") for _ in range(KEPT)]  # one per kept connection
        assert answers == list(range(1, KEPT + 1))
    finally:
        await close_redis(client)


async def test_closing_the_client_closes_its_pools_connections(
    server_urls: tuple[str, str], redis: Redis
) -> None:
    name = "bo-test-closed-pool"
    client = Redis(connection_pool=blocking_pool(server_urls[0], 32, client_name=name))
    await asyncio.gather(*(client.blpop(["bo:test:never"], 0.05) for _ in range(4)))

    async def left(count: int) -> bool:
        return sum(1 for c in await redis.client_list() if c["name"] == name) == count

    assert await left(4)
    await close_redis(client)
    await eventually(lambda: left(0), "the pool's connections closed")
