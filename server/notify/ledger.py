"""Mails in PostgreSQL (table `mails`, migration 006): what must go out, who is sending it,
what went out. One row per confirmation (unique (order_id, kind)) and per resend request
(unique outbox_id); a row is claimed (state `sending`, a lease) before any SMTP traffic and
marked `sent` after the server accepted it."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

import msgspec

from server.store.db import Pool

# Paid orders (and resend requests) this recent get their mail if they have none yet: covers a
# mailer that was down, events no longer live, a Redis that lost its streams.
CATCH_UP = timedelta(days=7)
# The recent slice the frequent sweep looks at; the whole CATCH_UP window is swept at start
# and every FULL_SWEEP_SECONDS (mailer.py).
RECENT = timedelta(minutes=15)
# How long a claim is exclusive. Longer than one delivery (transport.SEND_TIMEOUT): a row still
# `sending` after its lease belonged to a process that died, and is taken again.
LEASE = timedelta(seconds=120)

MailKind = Literal["confirmation", "resend"]


class MailJob(msgspec.Struct, frozen=True):
    id: int
    kind: MailKind
    order_id: str | None
    outbox_id: int | None
    email: str
    attempts: int  # including this claim: the claim's generation, guards the marks below

    @property
    def ref(self) -> str:
        return self.order_id if self.order_id is not None else str(self.outbox_id)


async def add_confirmation(pool: Pool, order_id: str) -> bool:
    """A confirmation is owed for this order if it is paid (recently); once, whoever asks."""
    created = await pool.fetchval(
        "INSERT INTO mails (kind, order_id, email) SELECT 'confirmation', id, email FROM orders"
        " WHERE id = $1 AND status = 'paid' AND paid_at > now() - $2::interval"
        " ON CONFLICT (order_id, kind) DO NOTHING RETURNING id",
        order_id,
        CATCH_UP,
    )
    return created is not None


async def add_resend(pool: Pool, outbox_id: int) -> bool:
    """A resend request (an outbox row of kind `resend`, payload {"email"}) is owed its mail."""
    created = await pool.fetchval(
        "INSERT INTO mails (kind, outbox_id, email) SELECT 'resend', id, payload->>'email'"
        " FROM outbox WHERE id = $1 AND kind = 'resend'"
        " AND jsonb_typeof(payload->'email') = 'string' AND created_at > now() - $2::interval"
        " ON CONFLICT (outbox_id) DO NOTHING RETURNING id",
        outbox_id,
        CATCH_UP,
    )
    return created is not None


async def sweep(pool: Pool, window: timedelta) -> int:
    """Rows for paid orders and resend requests of the last `window` that have none."""
    async with pool.acquire() as conn, conn.transaction():
        confirmations = await conn.fetch(
            "INSERT INTO mails (kind, order_id, email)"
            " SELECT 'confirmation', o.id, o.email FROM orders o"
            " WHERE o.status = 'paid' AND o.paid_at > now() - $1::interval"
            " AND NOT EXISTS (SELECT 1 FROM mails m"
            "                 WHERE m.order_id = o.id AND m.kind = 'confirmation')"
            " ON CONFLICT (order_id, kind) DO NOTHING RETURNING id",
            window,
        )
        resends = await conn.fetch(
            "INSERT INTO mails (kind, outbox_id, email)"
            " SELECT 'resend', x.id, x.payload->>'email' FROM outbox x"
            " WHERE x.kind = 'resend' AND jsonb_typeof(x.payload->'email') = 'string'"
            " AND x.created_at > now() - $1::interval"
            " AND NOT EXISTS (SELECT 1 FROM mails m WHERE m.outbox_id = x.id)"
            " ON CONFLICT (outbox_id) DO NOTHING RETURNING id",
            window,
        )
    return len(confirmations) + len(resends)


async def claim(pool: Pool, limit: int = 10) -> list[MailJob]:
    """Take up to `limit` mails that are due (or whose sender's lease ran out) for this
    process: state `sending`, attempts + 1, a fresh lease. Safe with any number of processes."""
    rows = await pool.fetch(
        "UPDATE mails SET state = 'sending', attempts = attempts + 1,"
        " lease_until = now() + $2::interval"
        " WHERE id IN (SELECT id FROM mails"
        "   WHERE (state = 'due' AND due_at <= now()) OR (state = 'sending' AND lease_until < now())"
        "   ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, kind, order_id, outbox_id, email, attempts",
        limit,
        LEASE,
    )
    return [msgspec.convert(dict(r), MailJob) for r in sorted(rows, key=lambda r: r["id"])]


async def sent(pool: Pool, job: MailJob, message_id: str) -> float:
    """Marked sent; the seconds since the mail was owed (its row made)."""
    waited = await pool.fetchval(
        "UPDATE mails SET state = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL,"
        " message_id = $2 WHERE id = $1 RETURNING extract(epoch FROM sent_at - created_at)",
        job.id,
        message_id,
    )
    return float(waited or 0.0)


class Backlog(msgspec.Struct, frozen=True):
    owed: int  # mails due or being sent
    oldest_seconds: float  # how long the oldest of them has been owed (0.0 when none)


async def backlog(pool: Pool) -> Backlog:
    """What is owed and not yet sent, read through the partial index of open mails."""
    row = await pool.fetchrow(
        "SELECT count(*) AS owed, coalesce(extract(epoch FROM now() - min(created_at)), 0)"
        " AS oldest FROM mails WHERE state IN ('due', 'sending')"
    )
    assert row is not None
    return Backlog(int(row["owed"]), float(row["oldest"]))


async def retry(pool: Pool, job: MailJob, error: str, delay_seconds: int) -> None:
    """Back to `due` after the delay — unless another process has claimed it since."""
    await pool.execute(
        "UPDATE mails SET state = 'due', due_at = now() + make_interval(secs => $3),"
        " lease_until = NULL, last_error = $2"
        " WHERE id = $1 AND state = 'sending' AND attempts = $4",
        job.id,
        error[:500],
        float(delay_seconds),
        job.attempts,
    )


async def finish(pool: Pool, job: MailJob, state: Literal["failed", "skipped"], why: str) -> None:
    """Never retried: refused for good (`failed`), or nothing to send any more (`skipped`)."""
    await pool.execute(
        "UPDATE mails SET state = $2, lease_until = NULL, last_error = $3"
        " WHERE id = $1 AND state = 'sending' AND attempts = $4",
        job.id,
        state,
        why[:500],
        job.attempts,
    )


async def paid_order_ids(pool: Pool, email: str, limit: int = 50) -> list[str]:
    """The paid orders of one address (case-insensitive), newest first."""
    rows = await pool.fetch(
        "SELECT id FROM orders WHERE lower(email) = lower($1) AND status = 'paid'"
        " ORDER BY paid_at DESC LIMIT $2",
        email,
        limit,
    )
    return [r["id"] for r in rows]
