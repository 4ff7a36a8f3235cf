"""Background tasks of one app process, started and stopped in one place: every domain object
hands over its loops (name, step) and this runs each with server.core.loops.forever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from server.core.loops import Loop, forever


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, loops: Iterable[Loop]) -> None:
        for name, step in loops:
            self._tasks.append(asyncio.create_task(forever(name, step), name=name))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
