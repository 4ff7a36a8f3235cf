""" "Resend my tickets": a fan gives an email; the same 202 answers whether or not it has orders.
When it has paid orders, one outbox row of kind `resend` per event is written — payload
{"email", "order_ids"} — and the outbox relay publishes it to that event's `reservations`
stream, where the mail consumer picks it up. Rate-limited per email and per client address
(queue/rate_limit.lua) before anything is looked up."""

from __future__ import annotations

import hashlib
import json
import logging

from server.booking import ledger
from server.booking.inventory import Inventory
from server.core.errors import RateLimited
from server.core.keys import resend_rate
from server.store import db

log = logging.getLogger("boxoffice.resend")

PER_EMAIL = 3  # requests per email per window
PER_ADDRESS = 10  # requests per client address per window
WINDOW_MS = 3_600_000


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Resend:
    def __init__(self, pool: db.Pool, inventory: Inventory) -> None:
        self.pool = pool
        self.inventory = inventory

    async def request(self, email: str, address: str) -> int:
        """Record a resend request; the number of outbox rows written (never shown to the
        asker). Raises RateLimited (429 with Retry-After) beyond the limits."""
        email = email.strip().lower()
        for kind, value, limit in (("addr", address, PER_ADDRESS), ("email", email, PER_EMAIL)):
            allowed, reset_ms = await self.inventory.allow(
                resend_rate(kind, _digest(value)), limit, WINDOW_MS
            )
            if not allowed:
                raise RateLimited(
                    "too many requests to resend tickets; try again later",
                    retry_after=max(1, reset_ms // 1000),
                )
        by_event = await ledger.paid_orders_by_email(self.pool, email)
        if by_event:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    "INSERT INTO outbox (event_id, kind, payload) VALUES ($1, 'resend', $2::jsonb)",
                    [
                        (event_id, json.dumps({"email": email, "order_ids": ids}))
                        for event_id, ids in by_event.items()
                    ],
                )
        log.info("tickets resend requested", extra={"events": len(by_event)})
        return len(by_event)
