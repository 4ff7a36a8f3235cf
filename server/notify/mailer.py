"""The mailer of one process: it learns which mails are owed, and sends each exactly once.

Design — "within 30 s of paid, one mail per order across redelivery and restarts":

* PostgreSQL decides, Redis only wakes. A mail is owed when a row exists in `mails`
  (server.notify.ledger); the row for an order's confirmation is unique on (order_id, kind),
  so however often anyone asks for it, one row exists.
* Two ways create that row, both idempotent. (1) The fast path: this process's consumer of
  each live event's `reservations` stream, in its own consumer group `notify` (the relay's is
  `seat-sync`), adds the row when an `order_paid` entry arrives — well under a second after the
  commit — and sends at once. An entry is acknowledged after its row exists, so a consumer that
  dies leaves it pending and another claims it (XAUTOCLAIM after 30 s). (2) The safety net: a
  sweep every SWEEP_SECONDS adds rows for paid orders of the last RECENT minutes that have
  none (and for the whole CATCH_UP window at start and every FULL_SWEEP_SECONDS). It covers
  what the stream cannot: events no longer live (sold out, closed) whose streams nobody reads,
  a Redis that lost its streams, a stream trimmed past an entry, a mailer that was down.
* Sending: a process claims due rows (`UPDATE … FOR UPDATE SKIP LOCKED`, state `sending`, a
  lease of ledger.LEASE) before any SMTP traffic and marks the row `sent` once the server
  accepted the message. Up to SEND_CONCURRENCY mails are in flight at once, over SMTP
  connections kept open between mails (transport.py). A transient failure (server down, 4xx,
  timeout) puts the row back `due` after a growing pause (2, 4, 8 … 300 s), so "SMTP down,
  then back" delivers once, later.
  A 5xx for the recipient or message is final (`failed`).
* The edge that remains is SMTP's own: if the server accepted the message and this process
  died (or lost the connection before reading the server's "250") before marking it sent, the
  lease runs out and the mail is sent again — at least once, never lost. Every attempt carries
  the same Message-ID, so receiving systems that collapse duplicates by Message-ID do so.

Without BOXOFFICE_SMTP_URL (dev only) the transport writes .eml files (transport.py)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

from aiohttp import web

from server.booking import ledger as orders_ledger
from server.core.keys import EventKeys
from server.core.loops import Loop
from server.core.metrics import Metrics
from server.core.settings import Settings, mail_from
from server.notify import compose, ledger
from server.notify.transport import Transport, is_permanent, retry_delay
from server.notify.views import OrderView, order_view
from server.store import catalogs, db
from server.store.lua import AnyRedis
from server.store.streams import read_group

log = logging.getLogger("boxoffice.mail")

GROUP = "notify"
SWEEP_SECONDS = 5.0
FULL_SWEEP_SECONDS = 600.0
PENDING_IDLE_MS = 30_000  # a stream entry unacknowledged this long is taken from its consumer
# Mails one process delivers side by side: their SMTP round trips (a relay is often 50-200 ms
# away) overlap instead of adding up. Composing them (QR codes, PDF) takes turns in one thread of
# its own: more threads would not compose faster (the GIL) but would take more turns from the
# event loop, which in a process of every role also serves fans. One at a time, a relay 50 ms
# away held a process to 13 mails a second.
SEND_CONCURRENCY = 8


class Mailer:
    def __init__(
        self,
        settings: Settings,
        redis: AnyRedis,
        pool: db.Pool,
        live: Callable[[], list[db.EventRow]],
        transport: Transport,
        metrics: Metrics | None = None,
    ) -> None:
        self.redis = redis
        self.metrics = metrics or Metrics()
        self.pool = pool
        self.live = live
        self.transport = transport
        self.base = (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")
        self.sender = mail_from(settings)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}"
        self._groups: set[str] = set()
        self._full_swept_at: float | None = None
        self._slots = asyncio.Semaphore(SEND_CONCURRENCY)
        self._composer = ThreadPoolExecutor(1, thread_name_prefix="mail-compose")

    def loops(self) -> list[Loop]:
        return [
            ("mail-stream", self.stream_step),
            ("mail-sweep", self.sweep_step),
            ("mail-send", self.send_step),
        ]

    # ---- learning what is owed ---------------------------------------------------------------

    async def stream_step(self) -> float:
        live = [ev.id for ev in self.live()]
        if not live:
            return 1.0
        if await self.consume(live):
            await self.send_due()
        return 0.0

    async def consume(self, event_ids: list[str], block_ms: int = 1000) -> int:
        """Rows for new `order_paid` / `resend` entries of these events' streams (and entries
        another consumer left pending); the number of rows added."""
        streams = [EventKeys(event_id).reservations for event_id in event_ids]
        return await read_group(
            self.redis, GROUP, self.consumer, self._groups, streams, self._entry,
            pending_idle_ms=PENDING_IDLE_MS, block_ms=block_ms,
        )  # fmt: skip

    async def _entry(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> int:
        kind = fields.get(b"kind")
        added = False
        if kind == b"order_paid":
            try:
                order_id = json.loads(fields[b"payload"])["order_id"]
            except (ValueError, KeyError, TypeError):
                order_id = None  # not ours to fix; acknowledged so it cannot block the stream
                log.warning("malformed order_paid entry %r", entry_id, extra={"stream": stream})
            if isinstance(order_id, str):
                added = await ledger.add_confirmation(self.pool, order_id)
        elif kind == b"resend" and fields.get(b"outbox_id", b"").isdigit():
            # Hook for "resend my tickets": POST /api/orders/resend records an outbox row of kind
            # `resend` with payload {"email"}; the relay publishes it here. The sweep finds the
            # same rows in PostgreSQL whatever stream (if any) they were published to.
            added = await ledger.add_resend(self.pool, int(fields[b"outbox_id"]))
        await self.redis.xack(stream, GROUP, entry_id)
        return int(added)

    async def sweep_step(self) -> float:
        now = time.monotonic()
        full = self._full_swept_at is None or now - self._full_swept_at >= FULL_SWEEP_SECONDS
        added = await ledger.sweep(self.pool, ledger.CATCH_UP if full else ledger.RECENT)
        if full:
            self._full_swept_at = now
        if added:
            log.info("mail owed, found by the sweep", extra={"mails": added})
        owed = await ledger.backlog(self.pool)
        self.metrics.mail_backlog.set(owed.owed)
        self.metrics.mail_oldest.set(owed.oldest_seconds)
        return SWEEP_SECONDS

    # ---- sending -----------------------------------------------------------------------------

    async def send_step(self) -> float:
        return 0.0 if await self.send_due() else 1.0

    async def send_due(self, limit: int = SEND_CONCURRENCY) -> int:
        """Claim the mails that are due (at most `limit`) and deliver them side by side, at most
        SEND_CONCURRENCY at once in this process; how many were claimed. Returns when all are
        delivered or given back, so no delivery outlives the loop turn that claimed it."""
        jobs = await ledger.claim(self.pool, limit)
        results = await asyncio.gather(
            *(self._deliver_in_slot(j) for j in jobs), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(jobs)

    async def close(self) -> None:
        self._composer.shutdown(wait=False, cancel_futures=True)
        await self.transport.close()

    async def _deliver_in_slot(self, job: ledger.MailJob) -> None:
        async with self._slots:
            await self.deliver(job)

    async def deliver(self, job: ledger.MailJob) -> None:
        msg_id = compose.message_id(job.kind, job.ref, self.sender)
        try:
            if job.kind == "confirmation":
                assert job.order_id is not None
                message = await self.confirmation(job.order_id, msg_id)
                if message is None:
                    await ledger.finish(self.pool, job, "skipped", "order is no longer paid")
                    self.metrics.mails.labels(job.kind, "skipped").inc()
                    return
                await self.transport.send(message, compose.recipient(job.email).addr_spec)
            elif not await self.send_resend(job.email, msg_id):
                await ledger.finish(self.pool, job, "skipped", "no paid orders for this address")
                self.metrics.mails.labels(job.kind, "skipped").inc()
                return
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            extra = {"mail": job.id, "kind": job.kind, "attempt": job.attempts}
            if is_permanent(exc):
                log.warning("mail refused for good: %s", why, extra=extra)
                await ledger.finish(self.pool, job, "failed", why)
                self.metrics.mails.labels(job.kind, "failed").inc()
            else:
                delay = retry_delay(job.attempts)
                log.warning("mail not sent, retry in %s s: %s", delay, why, extra=extra)
                await ledger.retry(self.pool, job, why, delay)
                self.metrics.mails.labels(job.kind, "retry").inc()
            return
        waited = await ledger.sent(self.pool, job, msg_id)
        self.metrics.mails.labels(job.kind, "sent").inc()
        self.metrics.mail_delivery.labels(job.kind).observe(waited)
        log.info("mail sent", extra={"mail": job.id, "kind": job.kind, "order_id": job.order_id})

    async def _view(self, order_id: str) -> OrderView | None:
        order = await orders_ledger.get_order(self.pool, order_id)
        if order is None or order.status != "paid":
            return None
        event = await self._event(order.event_id)
        if event is None:
            return None
        return order_view(order, event, self.base)

    async def _event(self, event_id: str) -> db.EventRow | None:
        """A live event from the process's list (refreshed every 5 s), else from PostgreSQL:
        a sale's mails do not each read their event and its sections again."""
        for event in self.live():
            if event.id == event_id:
                return event
        return await db.get_event(self.pool, event_id)

    async def confirmation(self, order_id: str, msg_id: str) -> EmailMessage | None:
        """The confirmation of a paid order (None if it is not paid, e.g. refunded since).
        Rendering (PDF, QR codes) runs in the composing thread so the event loop keeps serving."""
        view = await self._view(order_id)
        if view is None:
            return None
        lang = catalogs.known(await orders_ledger.order_language(self.pool, order_id))
        make = functools.partial(compose.confirmation, view, self.sender, msg_id, lang)
        return await asyncio.get_running_loop().run_in_executor(self._composer, make)

    async def send_resend(self, email: str, msg_id: str | None = None) -> bool:
        """Mail `email` the list of its paid orders with their links; False (nothing sent) if
        it has none. Called for each resend request the mailer finds (see _entry)."""
        views = [
            view
            for order_id in await ledger.paid_order_ids(self.pool, email)
            if (view := await self._view(order_id)) is not None
        ]
        if not views:
            return False
        to = compose.recipient(email)
        msg_id = msg_id or compose.message_id("resend", f"{time.time_ns()}", self.sender)
        message = compose.resend(email, views, self.sender, msg_id)
        await self.transport.send(message, to.addr_spec)
        return True


MAILER = web.AppKey("mailer", Mailer)
