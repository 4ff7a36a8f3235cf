"""The Redis client of an app process, for each way of naming Redis in the settings:

- `REDIS_URL`: one server, through a blocking connection pool (waits for a free connection
  instead of failing under a burst);
- `REDIS_CLUSTER_NODES`: a Redis Cluster (`RedisCluster`: finds every shard from the startup
  nodes, follows MOVED/ASK, and after a failover refreshes the slot map and retries);
- `REDIS_SENTINELS` + `BOXOFFICE_REDIS_SENTINEL_MASTER`: one primary watched by Sentinels
  (`master_for`: every new connection asks the sentinels where the primary is now).

Everything above this module is typed against `AnyRedis` and works on each."""

from __future__ import annotations

import asyncio
from typing import Any, TypeGuard

import hiredis
from aiohttp import web
from redis import exceptions
from redis.asyncio import BlockingConnectionPool, Connection, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.driver_info import DriverInfo
from redis.maint_notifications import MaintNotificationsConfig

from server.core.settings import Settings, parse_nodes
from server.store.lua import AnyRedis, close_batcher

SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
RETRY_ON: list[type[Exception]] = [exceptions.ConnectionError, exceptions.TimeoutError]


def _retry(attempts: int) -> Retry:
    """Retries of one command on a dropped connection, with growing jittered pauses (50 ms to
    1 s): long enough together to ride out a failover of a few seconds."""
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), attempts)


def sharded(client: AnyRedis) -> TypeGuard[RedisCluster]:
    """Whether an event's news travels on sharded pub/sub (SPUBLISH/SSUBSCRIBE, Redis >= 7): on
    a cluster, where a classic PUBLISH is copied to every node and a pattern subscription cannot
    follow sharded channels. One Redis keeps PUBLISH and one pattern subscription for every
    event (any Redis version)."""
    return isinstance(client, RedisCluster)


async def publish_news(client: AnyRedis, channel: str, data: bytes) -> None:
    """Publish on one event's news channel (EventKeys.channel), sharded on a cluster."""
    if sharded(client):
        await client.spublish(channel, data)
    else:
        await client.publish(channel, data)


PIPELINE_HEADROOM = 16  # connections per server left for pipelines and pub/sub beyond the gate


class _Packing:
    """Commands packed by hiredis in C, as redis-py's blocking client does when hiredis is
    installed: its asyncio connection packs every argument in Python, a third of a pipelined
    script call's client CPU (loadtest/bench_booking.py, the race). Values redis-py would
    refuse (a bool, None) are refused here too (DataError)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT LOAD": two words on the wire
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # buffers redis-py takes as they are; hiredis wants bytes
            pass
        as_bytes: Any = tuple(
            bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args
        )
        try:
            return [hiredis.pack_command(as_bytes)]
        except TypeError as exc:
            raise exceptions.DataError(str(exc)) from None


class PackedConnection(_Packing, Connection):
    """TCP (redis://)."""


class PackedSSLConnection(_Packing, SSLConnection):
    """TLS (rediss://)."""


class PackedUnixConnection(_Packing, UnixDomainSocketConnection):
    """A Unix socket (unix://)."""


def packed_class(url: str) -> type[AbstractConnection]:
    """The packed connection for a Redis URL's scheme. Chosen here, not by redis-py: since 8.2
    a connection class given to from_url wins over the one the scheme implies, so a rediss://
    URL would otherwise get a plain TCP connection (no TLS)."""
    scheme = url.partition("://")[0].lower()
    if scheme == "rediss":
        return PackedSSLConnection
    if scheme == "unix":
        return PackedUnixConnection
    return PackedConnection


# What every connection tells Redis about its client (CLIENT SETINFO), resolved once: left to
# redis-py, each new connection asks importlib.metadata for its version, a scan of every
# installed package's metadata that held the event loop 10-30 ms per connection (the Batcher
# opens one after an idle spell; the bench's longest stalls beside 10,000 sockets).
DRIVER = DriverInfo()

# redis-py 8.1 turns maintenance notifications on ("auto") for a RESP3 pool whose connections
# name a host, as the one-Redis pool's do, and while they are on, its pool stops checking a kept
# connection when handing it out (redis/redis-py#4252, fixed by #4260 after 8.1.0): a connection
# the server closed (Redis restarted, CLIENT KILL) is handed out and fails its command with
# "Connection closed by server", one per idle connection (test_faults: a request after Redis
# came back empty answered 503). The notifications are a feature of managed Redis (Enterprise,
# Cloud) planned maintenance; Redis and Valkey send none. Off, the check is back: such a
# connection is reconnected before use. The Sentinels' primary's pool (no host until it
# connects) never turned them on; it is told the same, so that no later redis-py does.
NO_MAINT_NOTIFICATIONS = MaintNotificationsConfig(enabled=False)


def blocking_pool(url: str, max_connections: int, **options: Any) -> BlockingConnectionPool:
    """A pool of packed connections to the Redis at `url` that waits for a free connection
    instead of failing under a burst."""
    return BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        connection_class=packed_class(url),
        driver_info=DRIVER,
        maint_notifications_config=NO_MAINT_NOTIFICATIONS,
        **options,
    )


class WaitingCluster(RedisCluster):
    """A cluster client whose commands wait for a free connection under a burst, as the
    BlockingConnectionPool of one Redis does: redis-py's cluster node pools raise
    MaxConnectionsError instead. At most `limit` commands are in flight (so no node's pool can
    be exhausted by them); pipelines and pub/sub use the headroom above that. Its connections
    are PackedConnections too: redis-py's cluster client takes no connection class (only TLS
    switches it), so the nodes it knows and the ones it will find are given ours."""

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = asyncio.Semaphore(limit)
        self.nodes_manager.connection_kwargs["connection_class"] = PackedConnection
        for node in self.nodes_manager.startup_nodes.values():
            node.connection_class = PackedConnection

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._gate:
            return await super().execute_command(*args, **kwargs)


class WaitingRedis(Redis):
    """The same gate for the Sentinel-managed client, whose pool raises when it is full."""

    _gate: asyncio.Semaphore | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._gate is None:
            limit = self.connection_pool.max_connections - PIPELINE_HEADROOM
            self._gate = asyncio.Semaphore(max(1, limit))
        async with self._gate:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


def make_redis(settings: Settings) -> AnyRedis:
    if settings.redis_cluster_nodes:
        return WaitingCluster(
            limit=settings.redis_max_connections,
            startup_nodes=[ClusterNode(h, p) for h, p in parse_nodes(settings.redis_cluster_nodes)],
            max_connections=settings.redis_max_connections + PIPELINE_HEADROOM,
            retry=_retry(6),
            retry_on_error=RETRY_ON,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            health_check_interval=10,
            driver_info=DRIVER,
        )
    if settings.redis_sentinels:
        sentinel = Sentinel(
            parse_nodes(settings.redis_sentinels),
            socket_timeout=CONNECT_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            driver_info=DRIVER,
        )
        client: Redis = sentinel.master_for(
            settings.redis_sentinel_master,
            redis_class=WaitingRedis,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            health_check_interval=10,
            retry=_retry(6),
            retry_on_error=RETRY_ON,
            max_connections=settings.redis_max_connections + PIPELINE_HEADROOM,
            driver_info=DRIVER,
            maint_notifications_config=NO_MAINT_NOTIFICATIONS,
        )
        return client
    pool = blocking_pool(
        settings.redis_url,
        settings.redis_max_connections,
        timeout=5,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=10,
    )
    return Redis(connection_pool=pool)


async def close_redis(client: AnyRedis) -> None:
    """Close a client made here: the connections its Batcher kept, then its pool, and for the
    Sentinels' primary the clients that asked the Sentinels. A client given its pool (one
    Redis) leaves the pool open when closed unless told: each app that stopped left its idle
    connections open (in the test suite's shared Redis, hundreds)."""
    await close_batcher(client)
    if isinstance(client, RedisCluster):
        await client.aclose()
        return
    await client.aclose(close_connection_pool=True)
    if isinstance(client.connection_pool, SentinelConnectionPool):
        await client.connection_pool.sentinel_manager.aclose()


REDIS: web.AppKey[AnyRedis] = web.AppKey("redis")
