"""Reading an event's `reservations` stream as one consumer of a consumer group: entries another
consumer left pending too long are claimed first, then new ones are read, one stream per call
(the keys of a call stay in one cluster slot). Redis that lost its groups (a restart, a flush)
gets them created again on the next read."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions

from server.store.lua import AnyRedis

log = logging.getLogger("boxoffice.streams")

Handler = Callable[[str, bytes, dict[bytes, bytes]], Awaitable[int]]


async def ensure_group(client: AnyRedis, stream: str, group: str, known: set[str]) -> None:
    """Create the group on the stream (from its start) unless `known` says it exists."""
    if stream in known:
        return
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    known.add(stream)


async def read_group(
    client: AnyRedis,
    group: str,
    consumer: str,
    known: set[str],
    streams: list[str],
    handle: Handler,
    *,
    pending_idle_ms: int,
    block_ms: int,
) -> int:
    """Hand every claimed and new entry of these streams to `handle`; the sum of its answers."""
    done = 0
    try:
        for stream in streams:
            await ensure_group(client, stream, group, known)
            claimed = await client.xautoclaim(stream, group, consumer, pending_idle_ms, "0-0", 100)
            for entry_id, fields in claimed[1]:
                done += await handle(stream, entry_id, fields)
        for stream in streams:
            batch: Any = await client.xreadgroup(
                group, consumer, {stream: ">"}, count=100, block=block_ms // len(streams) or 1
            )
            for _, entries in batch or []:
                for entry_id, fields in entries:
                    done += await handle(stream, entry_id, fields)
    except redis.exceptions.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        # Redis lost the groups (a restart, a flush): an expected turn of events, not a fault
        # with a traceback; they are created again on the next read.
        known.clear()
        log.info("consumer group %s lost with Redis's data; made again on the next read", group)
    return done
