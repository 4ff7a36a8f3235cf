"""The schema's migrations, applied in order by server.store.db.migrate (SQL files, and Python
modules for online ones); the short transactions online migrations take their locks in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

LOCK_TIMEOUT = "500ms"  # below deadlock_timeout (1 s): our wait gives way, never a writer's
TRIES = 100
T = TypeVar("T")


async def short_transaction(conn: Any, run: Callable[[], Awaitable[T]], what: str) -> T:
    """`run` in its own transaction that gives way to the app's writers (lock_timeout below
    deadlock_timeout), retried with a growing pause; `what` names the migration if it keeps
    waiting."""
    for attempt in range(TRIES):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                return await run()
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            await asyncio.sleep(min(1.0, 0.01 * 2**attempt))
    raise RuntimeError(f"{what}: kept waiting on locks; run migrate again to resume")
