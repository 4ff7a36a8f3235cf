"""The Batcher on one real Redis (server.store.lua): calls of one loop turn go in one write on a
connection the batcher keeps, each caller gets its own reply (or its own error), a kept
connection Redis dropped is replaced once, a silent Redis fails the batch with redis-py's
TimeoutError instead of hanging, and closing the client closes the kept connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.store.lua import MAX_IN_FLIGHT, Batched, batcher
from server.store.redis_client import blocking_pool, close_redis

ECHO = """
-- KEYS: [1] a counter. ARGV: [1] a number. Returns: the number times ten; an error for 13.
if ARGV[1] == '13' then return redis.error_reply('unlucky') end
redis.call('INCR', KEYS[1])
return tonumber(ARGV[1]) * 10
"""


async def clients_connected(redis: Redis) -> int:
    info = await redis.info("clients")
    return int(info["connected_clients"])


async def batcher_ids(redis: Redis) -> list[int]:
    """The ids of every client connection but the one asking."""
    own = await redis.client_id()
    return [int(c["id"]) for c in await redis.client_list() if int(c["id"]) != own]


@pytest.fixture
async def client(server_urls: tuple[str, str]) -> AsyncIterator[Redis]:
    made = Redis(connection_pool=blocking_pool(server_urls[0], 8, socket_timeout=0.5))
    yield made
    await close_redis(made)


async def test_each_caller_gets_its_own_reply_over_few_connections(
    client: Redis, redis: Redis
) -> None:
    call = Batched(client, client.register_script(ECHO))
    before = await clients_connected(redis)
    answers = await asyncio.gather(
        *(call(["bo:test:n"], [i]) for i in range(600) if i != 13), return_exceptions=True
    )
    assert answers == [i * 10 for i in range(600) if i != 13]
    assert await redis.get("bo:test:n") == b"599"
    assert await clients_connected(redis) - before <= MAX_IN_FLIGHT


async def test_an_error_reply_fails_its_caller_only(client: Redis, redis: Redis) -> None:
    call = Batched(client, client.register_script(ECHO))
    answers = await asyncio.gather(
        *(call(["bo:test:n"], [i]) for i in (12, 13, 14)), return_exceptions=True
    )
    assert answers[0] == 120 and answers[2] == 140
    assert isinstance(answers[1], ResponseError) and "unlucky" in str(answers[1])
    assert await call(["bo:test:n"], [1]) == 10  # the connection stays in step


async def test_a_dropped_kept_connection_is_replaced_once(
    client: Redis, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    call = Batched(client, client.register_script(ECHO))
    assert await call(["bo:test:n"], [1]) == 10
    for client_id in await batcher_ids(redis):
        await redis.client_kill_filter(_id=str(client_id))
    caplog.set_level(logging.INFO, logger="boxoffice.redis")
    assert await asyncio.gather(*(call(["bo:test:n"], [i]) for i in range(20, 40))) == [
        i * 10 for i in range(20, 40)
    ]
    assert any("failed before its first reply" in r.getMessage() for r in caplog.records)
    assert await redis.get("bo:test:n") == b"21"  # every call ran exactly once


async def test_a_silent_redis_fails_the_batch_then_heals(client: Redis, redis: Redis) -> None:
    call = Batched(client, client.register_script(ECHO))
    assert await call(["bo:test:n"], [1]) == 10
    await redis.client_pause(1500, all=True)
    try:
        with pytest.raises(RedisTimeoutError):
            await call(["bo:test:n"], [2])
    finally:
        await redis.client_unpause()
    assert await call(["bo:test:n"], [3]) == 30


async def test_closing_the_client_closes_the_kept_connections(
    server_urls: tuple[str, str], redis: Redis
) -> None:
    before = await clients_connected(redis)
    made = Redis(connection_pool=blocking_pool(server_urls[0], 8))
    call = Batched(made, made.register_script(ECHO))
    assert await asyncio.gather(*(call(["bo:test:n"], [i]) for i in range(14, 64))) == [
        i * 10 for i in range(14, 64)
    ]
    assert batcher(made) is batcher(made)
    assert await clients_connected(redis) > before
    await close_redis(made)
    for _ in range(50):
        if await clients_connected(redis) == before:
            break
        await asyncio.sleep(0.05)
    assert await clients_connected(redis) == before
