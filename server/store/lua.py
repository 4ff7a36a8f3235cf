"""The one registry of the Lua scripts in queue/ (shipped as package data): each file is one
atomic operation, its `--#include <lib>` lines filled from queue/lib/, registered once per
client. Registered scripts fall back from EVALSHA to loading the script on NOSCRIPT, in a
pipeline too (on one Redis, redis-py loads them before the pipeline runs; on a cluster the
Batcher runs a call that met NOSCRIPT again on its own, which loads the script), so a SCRIPT FLUSH, a Redis restart or a failover to a replica heals by itself."""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from server import assets

AnyRedis = Redis | RedisCluster

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


class Batcher:
    """Calls of one script made in the same event-loop turn travel to Redis in one pipeline:
    under a crowd, hundreds of joins cost a few round trips instead of one each. On a cluster the
    pipeline is a cluster pipeline: the calls of a batch may concern several events, and each
    call's keys share one slot, so it sends each shard its own calls."""

    def __init__(self, client: AnyRedis, script: AsyncScript) -> None:
        self._client = client
        self._script = script
        self._pending: list[tuple[list[str], list[str | int], asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def __call__(self, keys: list[str], args: list[str | int]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            if isinstance(self._client, RedisCluster):
                # redis-py refuses pipe.evalsha() on a cluster pipeline; the plain command is
                # routed by its keys' slot like any other.
                async with self._client.pipeline(transaction=False) as cpipe:
                    for keys, args, _ in batch:
                        cpipe.execute_command("EVALSHA", self._script.sha, len(keys), *keys, *args)
                    results = await cpipe.execute(raise_on_error=False)
            else:
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, args, _ in batch:
                        await self._script(keys=keys, args=args, client=pipe)
                    results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            results = [exc] * len(batch)
        for (keys, args, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, NoScriptError):
                try:  # the script alone: EVALSHA, and on NOSCRIPT it is loaded and run again
                    result = await self._script(keys=keys, args=args)
                except Exception as exc:
                    result = exc
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
