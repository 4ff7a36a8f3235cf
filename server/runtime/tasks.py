"""Background tasks of one app process, started and stopped in one place: every domain object
hands over its loops (name, step) and this runs each with server.core.loops.forever."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from server.core.loops import Loop, forever

log = logging.getLogger("boxoffice.tasks")

# A stop cancels every loop, again every RECANCEL_SECONDS for those still running (on Python
# 3.11 a library can swallow a cancellation: redis-py's pub/sub read racing its own timeout did,
# and a shutdown then waited forever), and gives up on the ones left after STOP_SECONDS.
RECANCEL_SECONDS = 0.5
STOP_SECONDS = 10.0


class BackgroundTasks:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, loops: Iterable[Loop]) -> None:
        for name, step in loops:
            self._tasks.append(asyncio.create_task(forever(name, step), name=name))

    async def stop(self) -> None:
        """Cancel every loop and wait for it to end; never hangs (see RECANCEL_SECONDS)."""
        pending = set(self._tasks)
        deadline = asyncio.get_running_loop().time() + STOP_SECONDS
        while pending and asyncio.get_running_loop().time() < deadline:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.warning("loop %s ended with %r", task.get_name(), task.exception())
        if pending:
            names = ", ".join(sorted(task.get_name() for task in pending))
            log.warning("loops still running %.0f s after their cancel: %s", STOP_SECONDS, names)
        self._tasks.clear()
