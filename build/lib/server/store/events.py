"""Events as the service reads them: rows from PostgreSQL kept per process for a few seconds,
and the event's state at a moment (the rule itself is server.core.rules.event_state)."""

from __future__ import annotations

import asyncio
import time

from server.core import rules
from server.core.clock import now_ms, to_ms
from server.core.errors import DATABASE_DOWN, NotFound
from server.core.ids import check_event_id
from server.store import db


def event_state(ev: db.EventRow, now: int | None = None) -> rules.EventState:
    return rules.event_state(
        now_ms() if now is None else now,
        to_ms(ev.prequeue_opens_at),
        to_ms(ev.sale_starts_at),
        closed=ev.closed,
        sold_out=ev.sold_out,
    )


MAX_CACHED = 10_000


class EventCache:
    """Events read from PostgreSQL, kept per process for a few seconds."""

    def __init__(self, pool: db.Pool, ttl: float = 5.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._events: dict[str, tuple[float, db.EventRow | None]] = {}
        self._lock = asyncio.Lock()

    async def get(self, event_id: str) -> db.EventRow | None:
        hit = self._events.get(event_id)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        try:
            row = await db.get_event(self._pool, event_id)
        except DATABASE_DOWN:
            if hit is None:
                raise
            # PostgreSQL unreachable: a known event keeps serving (joins and waiting go on);
            # re-stamped so a dead database is tried once per TTL, not on every request.
            self._events[event_id] = (time.monotonic(), hit[1])
            return hit[1]
        if row is None and len(self._events) >= MAX_CACHED:
            self._forget_unknown()  # random ids must not grow memory without bound
        self._events[event_id] = (time.monotonic(), row)
        return row

    def _forget_unknown(self) -> None:
        for key in [k for k, (_, row) in self._events.items() if row is None]:
            del self._events[key]

    async def require(self, event_id: str) -> db.EventRow:
        row = await self.get(check_event_id(event_id))
        if row is None:
            raise NotFound("no such event", code="event_not_found")
        return row

    def invalidate(self, event_id: str) -> None:
        self._events.pop(event_id, None)

    async def refresh_all(self) -> list[db.EventRow]:
        async with self._lock:
            rows = await db.list_events(self._pool)
            stamp = time.monotonic()
            for row in rows:
                self._events[row.id] = (stamp, row)
            return rows
