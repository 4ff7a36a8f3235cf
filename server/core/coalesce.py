"""Lookups made in the same event-loop turn answered together: every request of a crowd that asks
the same kind of question in one turn waits on one query instead of sending its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalesced(Generic[K, V]):
    """`await get(key)`: the keys asked for in one loop turn go to `fetch` together, which
    answers with their values; a key it leaves out gets `missing`. An error of `fetch` is the
    error of every asker of that turn."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], missing: V) -> None:
        self._fetch = fetch
        self._missing = missing
        self._pending: dict[K, list[asyncio.Future[V]]] = {}
        self._runs: set[asyncio.Task[None]] = set()
        # Found at the first call: CPython 3.11's asyncio.get_running_loop() is a getpid()
        # system call each time. One instance serves one app, on one loop.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def get(self, key: K) -> V:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._start)
        future: asyncio.Future[V] = loop.create_future()
        self._pending.setdefault(key, []).append(future)
        return await future

    def _start(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.ensure_future(self._run(batch))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def _run(self, batch: dict[K, list[asyncio.Future[V]]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except Exception as exc:
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, futures in batch.items():
            value = found.get(key, self._missing)
            for future in futures:
                if not future.done():
                    future.set_result(value)
