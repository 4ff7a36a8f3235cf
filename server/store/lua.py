"""The one registry of the Lua scripts in queue/ (shipped as package data): each file is one
atomic operation, its `--#include <lib>` lines filled from queue/lib/, registered once per
client. Registered scripts fall back from EVALSHA to loading the script on NOSCRIPT, in a
pipeline too (the Batcher runs a call that met NOSCRIPT again on its own, which loads the
script), so a SCRIPT FLUSH, a Redis restart or a failover to a replica heals by itself."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable
from functools import cache
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection as Connection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server import assets

AnyRedis = Redis | RedisCluster
log = logging.getLogger("boxoffice.redis")

INCLUDE = "--#include "


@cache
def script_source(name: str) -> str:
    """A script's text with its `--#include <lib>` lines replaced by queue/lib/<lib>.lua."""
    lines = []
    for line in (assets.QUEUE / f"{name}.lua").read_text().splitlines():
        if line.startswith(INCLUDE):
            lib = line[len(INCLUDE) :].strip()
            lines.append((assets.QUEUE / "lib" / f"{lib}.lua").read_text())
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def register(client: AnyRedis, *names: str) -> dict[str, AsyncScript]:
    """These scripts of queue/, registered on one client."""
    return {name: client.register_script(script_source(name)) for name in names}


def time_arg(now_ms: int | None) -> str:
    """The time ARGV of a script: "" lets the script read Redis TIME."""
    return "" if now_ms is None else str(now_ms)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


MAX_IN_FLIGHT = 4  # batches of one Batcher on their way to Redis at once
IDLE_SECONDS = 2.0  # a kept connection idle longer is closed, not reused


class Batcher:
    """Script calls made in the same event-loop turn travel to Redis in one write, whatever the
    script: under a crowd, hundreds of joins, rate-limit checks or holds cost a few round trips
    instead of one each. One batcher per client (`batcher`); `Batched` is one script's handle on
    it. Each call is a plain EVALSHA (redis-py's pipelined script objects would first ask SCRIPT
    EXISTS, one more round trip per batch); a call that meets NOSCRIPT runs again on its own,
    which loads the script.

    On one Redis (directly or through Sentinels) a batch is written on a connection the batcher
    keeps for itself (at most MAX_IN_FLIGHT) and its replies are read under one deadline: the
    pool's per-command bookkeeping, a task per write and a timer per reply cost more client CPU
    than the call (loadtest/bench_booking.py, the race). A connection that fails is dropped,
    never reused; one reused after a pause that fails before any reply (Redis restarted or
    failed over meanwhile, so nothing ran) is replaced once. On a cluster the batch is a cluster
    pipeline: its calls may concern several events, and each call's keys share one slot, so it
    sends each shard its own calls."""

    def __init__(self, client: AnyRedis) -> None:
        self._client = client
        self._pending: list[_Call] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self._idle: list[tuple[Connection, float]] = []  # one Redis: (connection, idle since)
        # The loop of the client's connections, found at the first call: CPython 3.11's
        # asyncio.get_running_loop() makes a getpid() system call each time (2-3 us here).
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(
        self, script: AsyncScript, keys: list[str], args: list[str | int]
    ) -> asyncio.Future[Any]:
        """The script's answer, to await (a future: no task or coroutine per call)."""
        loop = self._loop or self._bind()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        self._schedule(loop)
        return future

    def _bind(self) -> asyncio.AbstractEventLoop:
        self._loop = asyncio.get_running_loop()
        return self._loop

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """A flush at the next loop turn, unless one is due or MAX_IN_FLIGHT pipelines are on
        their way (then the calls wait for the first of them to come back: a bigger batch)."""
        if not self._scheduled and len(self._flushes) < MAX_IN_FLIGHT:
            self._scheduled = True
            loop.call_soon(self._start_flush)

    def _start_flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushed)

    def _flushed(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        if self._pending:
            self._schedule(task.get_loop())

    async def _flush(self, batch: list[_Call]) -> None:
        try:
            await self._answer(batch)
        finally:  # cancelled (the loop is closing) or failed: no caller waits forever
            for *_, future in batch:
                if not future.done():
                    future.cancel()

    async def _answer(self, batch: list[_Call]) -> None:
        try:
            if isinstance(self._client, RedisCluster):
                results = await self._pipelined(self._client, batch)
            else:
                results = await self._direct(self._client, batch)
        except Exception as exc:
            results = [exc] * len(batch)
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError) and not future.done():
                try:  # the script alone: EVALSHA, and on NOSCRIPT it is loaded and run again
                    result = await script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            if future.done():  # its caller gave up (cancelled) meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    @staticmethod
    async def _pipelined(client: RedisCluster, batch: list[_Call]) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            for script, keys, args, _ in batch:
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def _direct(self, client: Redis, batch: list[_Call]) -> list[Any]:
        conn, reused = await self._connection(client)
        while True:
            replies: list[Any] = []
            try:
                await self._exchange(client, conn, batch, replies)
            except BaseException as exc:
                await conn.disconnect(nowait=True)  # replies may still be on their way: never reuse
                dropped = isinstance(exc, ConnectionError | RedisConnectionError)
                if not (dropped and reused and not replies):
                    raise
                log.info(
                    "a kept Redis connection failed before its first reply (%s); once more", exc
                )
                conn, reused = await self._connect(client), False
                continue
            self._idle.append((conn, time.monotonic()))
            return replies

    @staticmethod
    async def _exchange(
        client: Redis, conn: Connection, batch: list[_Call], replies: list[Any]
    ) -> None:
        """Write every call at once, then read each reply into `replies` (an error reply is
        its exception), all under the pool's socket timeout."""
        packed = [
            chunk
            for script, keys, args, _ in batch
            for chunk in conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
        ]
        deadline = client.connection_pool.connection_kwargs.get("socket_timeout") or None
        try:
            async with asyncio.timeout(deadline):
                await conn.send_packed_command(packed, check_health=False)
                for _ in batch:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
        except TimeoutError:
            raise RedisTimeoutError(f"no reply from Redis in {deadline} s") from None

    async def _connection(self, client: Redis) -> tuple[Connection, bool]:
        """A kept connection (and True), or a new one: kept ones idle over IDLE_SECONDS are
        closed rather than trusted."""
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if now - since <= IDLE_SECONDS:
                return conn, True
            await conn.disconnect(nowait=True)
        return await self._connect(client), False

    @staticmethod
    async def _connect(client: Redis) -> Connection:
        """A connection of the client's kind (one server, or the primary the Sentinels name)
        outside its pool, with no per-command timeout (a batch has one deadline of its own) and
        no health check (a kept connection idle over IDLE_SECONDS is closed, not checked): each
        reply read would otherwise reset the check's clock."""
        conn: Connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        conn.socket_timeout = None
        conn.health_check_interval = 0
        await conn.connect()  # type: ignore[no-untyped-call]
        return conn

    async def close(self) -> None:
        """Close the kept connections (the client's own pool is closed with the client)."""
        idle, self._idle = self._idle, []
        self._loop = None
        for conn, _ in idle:
            await conn.disconnect(nowait=True)


_Call = tuple[AsyncScript, list[str], list[str | int], "asyncio.Future[Any]"]
_BATCHERS: weakref.WeakKeyDictionary[AnyRedis, Batcher] = weakref.WeakKeyDictionary()


def batcher(client: AnyRedis) -> Batcher:
    """The one Batcher of a client."""
    found = _BATCHERS.get(client)
    if found is None:
        found = _BATCHERS[client] = Batcher(client)
    return found


async def close_batcher(client: AnyRedis) -> None:
    """Close the connections the client's Batcher kept (before the client itself closes)."""
    found = _BATCHERS.pop(client, None)
    if found is not None:
        await found.close()


class Batched:
    """One registered script called through its client's Batcher: `await s(keys, args)`."""

    __slots__ = ("_batcher", "_script")

    def __init__(self, client: AnyRedis, script: AsyncScript) -> None:
        self._batcher = batcher(client)
        self._script = script

    def __call__(self, keys: list[str], args: list[str | int]) -> Awaitable[Any]:
        return self._batcher.run(self._script, keys, args)


def register_batched(client: AnyRedis, *names: str) -> dict[str, Batched]:
    """These scripts of queue/, registered on one client and called through its Batcher."""
    return {name: Batched(client, script) for name, script in register(client, *names).items()}
