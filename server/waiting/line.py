"""The Lua scripts of queue/, registered once per Redis client, behind typed async wrappers.

Each wrapper passes every key in KEYS (built by server.keys) and time as "" (Redis TIME) unless
the caller drives time itself, as tests do. Registered scripts fall back from EVALSHA to loading
the script on NOSCRIPT, so a SCRIPT FLUSH or a Redis restart heals by itself."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from server import assets
from server.core.keys import EventKeys

SCRIPTS_DIR = assets.QUEUE
SCRIPT_NAMES = ("join", "status", "leave", "reap", "open_sale", "admit")

AnyRedis = Redis | RedisCluster


INCLUDE = "--#include "


def script_source(name: str) -> str:
    """A script's text with its `--#include <lib>` lines replaced by queue/lib/<lib>.lua."""
    lines = []
    for line in (SCRIPTS_DIR / f"{name}.lua").read_text().splitlines():
        if line.startswith(INCLUDE):
            lines.append((SCRIPTS_DIR / "lib" / f"{line[len(INCLUDE) :].strip()}.lua").read_text())
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def time_arg(now_ms: int | None) -> str:
    """The time ARGV of a script: "" lets the script read Redis TIME."""
    return "" if now_ms is None else str(now_ms)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Place(msgspec.Struct, frozen=True):
    """Where a queue entry stands; rank is 0-based, -1 when not waiting in the line."""

    state: str
    queue_id: str
    visitor_id: str
    ticket: int
    rank: int
    session_expires_ms: int


class Admitted(msgspec.Struct, frozen=True, array_like=True):
    queue_id: str
    visitor_id: str
    expires_ms: int


class Snapshot(msgspec.Struct, frozen=True):
    """What one admission step saw and did."""

    found: bool
    opened: bool = False
    paused: bool = False
    closed: bool = False
    sold_out: bool = False
    serving: int = 0
    admitted_total: int = 0
    waiting: int = 0
    prequeue: int = 0
    active: int = 0
    admitted_last_window: int = 0
    window_ms: int = 0
    now_ms: int = 0
    admitted: tuple[Admitted, ...] = ()


class Batcher:
    """Calls of one script made in the same event-loop turn travel to Redis in one pipeline:
    under a crowd, hundreds of joins cost a few round trips instead of one each."""

    def __init__(self, client: Redis, script: AsyncScript) -> None:
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
            async with self._client.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                try:
                    result = await self._script(keys=keys, args=args)  # reloads the script
                except Exception as exc:
                    result = exc
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class Scripts:
    """All queue scripts registered on one client."""

    BATCHED = ("join", "status")

    def __init__(self, client: AnyRedis) -> None:
        self._s: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }
        self._batched: dict[str, Batcher] = {}
        if isinstance(client, Redis):
            self._batched = {name: Batcher(client, self._s[name]) for name in self.BATCHED}

    async def _run(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        batched = self._batched.get(name)
        if batched is not None:
            return await batched(keys, args)
        return await self._s[name](keys=keys, args=args)

    async def join(
        self,
        k: EventKeys,
        visitor_id: str,
        new_queue_id: str,
        now_ms: int | None = None,
        proof: str = "",
        nonce: str = "-",
    ) -> Place:
        """proof and nonce: see join.lua ARGV[4] and server.waiting.challenge.Proof."""
        keys = [k.cfg, k.visitors, k.owner, k.tickets, k.pre, k.line, k.seen, k.active, k.seq]
        keys += [k.stats, k.spent(nonce)]
        r = await self._run("join", keys, [visitor_id, new_queue_id, time_arg(now_ms), proof])
        return Place(as_text(r[0]), as_text(r[1]), visitor_id, int(r[2]), int(r[3]), int(r[4]))

    async def status(
        self, k: EventKeys, queue_id: str, touch: bool = False, now_ms: int | None = None
    ) -> Place:
        keys = [k.cfg, k.owner, k.tickets, k.pre, k.line, k.seen, k.active]
        r = await self._run("status", keys, [queue_id, "1" if touch else "0", time_arg(now_ms)])
        return Place(as_text(r[0]), queue_id, as_text(r[1]), int(r[2]), int(r[3]), int(r[4]))

    async def leave(self, k: EventKeys, queue_id: str, reason: str = "left") -> bool:
        keys = [k.visitors, k.owner, k.pre, k.line, k.seen, k.active, k.stats]
        return bool(await self._run("leave", keys, [queue_id, reason]))

    async def reap(
        self, k: EventKeys, grace_ms: int, limit: int = 1000, now_ms: int | None = None
    ) -> int:
        keys = [k.pre, k.line, k.seen, k.stats]
        return int(await self._run("reap", keys, [grace_ms, limit, time_arg(now_ms)]))

    async def open_sale(self, k: EventKeys, seed: int, now_ms: int | None = None) -> int:
        keys = [k.cfg, k.pre, k.line, k.tickets, k.seq]
        return int(await self._run("open_sale", keys, [seed, time_arg(now_ms)]))

    async def admit(
        self, k: EventKeys, max_batch: int = 500, extra: int = 0, now_ms: int | None = None
    ) -> Snapshot:
        keys = [k.cfg, k.line, k.active, k.bucket, k.stats, k.admits, k.owner, k.seen, k.pre]
        r = await self._run("admit", keys, [time_arg(now_ms), max_batch, k.channel, extra])
        if not r[0]:
            return Snapshot(found=False)
        flat = r[13:]
        admitted = tuple(
            Admitted(as_text(flat[i]), as_text(flat[i + 1]), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        )
        flags = [bool(x) for x in r[1:5]]
        figures = [int(x) for x in r[5:13]]
        return Snapshot(
            found=True,
            opened=flags[0],
            paused=flags[1],
            closed=flags[2],
            sold_out=flags[3],
            serving=figures[0],
            admitted_total=figures[1],
            waiting=figures[2],
            prequeue=figures[3],
            active=figures[4],
            admitted_last_window=figures[5],
            window_ms=figures[6],
            now_ms=figures[7],
            admitted=admitted,
        )
