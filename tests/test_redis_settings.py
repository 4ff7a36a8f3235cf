"""Naming Redis in the settings (REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS), the client
each gives, and which Redis failures answer 503 rather than 500. No server needed."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection

from server.core.errors import REDIS_DOWN
from server.core.settings import SettingsError, from_env, parse_nodes
from server.store.redis_client import DRIVER, make_redis, sharded


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("10.0.0.5:7000", [("10.0.0.5", 7000)]),
        ("a:7000,b:7001, c:7002", [("a", 7000), ("b", 7001), ("c", 7002)]),
        ("[::1]:6379", [("::1", 6379)]),
        ("redis-0.redis.svc:6379", [("redis-0.redis.svc", 6379)]),
    ],
)
def test_nodes_parse(text: str, nodes: list[tuple[str, int]]) -> None:
    assert parse_nodes(text) == nodes


@pytest.mark.parametrize(
    "text",
    ["", "host", "host:", ":7000", "host:0", "host:65536", "host:70x", "a:1,,b:2", "a:1;b:2"],
)
def test_malformed_nodes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_nodes(text)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"REDIS_CLUSTER_NODES": "a:1,b"}, "redis_cluster_nodes"),
        ({"REDIS_SENTINELS": "s1:26379"}, "redis_sentinel_master"),
        ({"BOXOFFICE_REDIS_SENTINEL_MASTER": "main"}, "redis_sentinel_master"),
        ({"REDIS_SENTINELS": "s1:x", "BOXOFFICE_REDIS_SENTINEL_MASTER": "m"}, "redis_sentinels"),
        (
            {
                "REDIS_CLUSTER_NODES": "a:1",
                "REDIS_SENTINELS": "s:2",
                "BOXOFFICE_REDIS_SENTINEL_MASTER": "m",
            },
            "redis_cluster_nodes",
        ),
    ],
)
def test_bad_redis_settings_stop_startup(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        from_env(env)


@pytest.mark.parametrize(
    ("env", "kind", "is_sharded"),
    [
        ({"REDIS_URL": "redis://127.0.0.1:1/0"}, Redis, False),
        ({"REDIS_CLUSTER_NODES": "127.0.0.1:1,127.0.0.1:2"}, RedisCluster, True),
        # REDIS_URL is not used when cluster nodes are named
        ({"REDIS_URL": "redis://x:1/0", "REDIS_CLUSTER_NODES": "127.0.0.1:1"}, RedisCluster, True),
        ({"REDIS_SENTINELS": "127.0.0.1:1", "BOXOFFICE_REDIS_SENTINEL_MASTER": "m"}, Redis, False),
    ],
)
async def test_client_for_each_way_of_naming_redis(
    env: dict[str, str], kind: type, is_sharded: bool
) -> None:
    settings = from_env({**env, "DATABASE_URL": "postgresql://x/y"})
    assert settings.redis_configured and not settings.embedded
    client = make_redis(settings)  # connects lazily: nothing listens on these ports
    try:
        assert isinstance(client, kind)
        assert sharded(client) is is_sharded
        # every connection it opens names its client from one DriverInfo, resolved once
        pool_kwargs = (
            client.nodes_manager.connection_kwargs
            if isinstance(client, RedisCluster)
            else client.connection_pool.connection_kwargs
        )
        assert pool_kwargs["driver_info"] is DRIVER
    finally:
        await client.aclose()


def test_no_redis_named_means_embedded() -> None:
    settings = from_env({"DATABASE_URL": "postgresql://x/y"})
    assert not settings.redis_configured and settings.embedded


async def test_a_write_on_a_connection_closed_underneath_is_redis_down() -> None:
    """redis-py's own connection, closed (no writer), written to: a ConnectionError, which the
    error middleware answers 503 redis_unavailable (REDIS_DOWN). redis-py 8.1 leaked an
    AttributeError here (redis/redis-py#4287), fixed in 8.2, the least the project takes."""
    connection = Connection(host="127.0.0.1", port=1)
    with pytest.raises(REDIS_DOWN):
        await connection._send_packed_command([b"PING\r\n"])
