"""Orders in PostgreSQL: creation, the confirming transaction that is the final arbiter,
guarded status changes, payment follow-ups and the outbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec

from server.core import rules
from server.core.tokens import new_id
from server.store.db import Pool


class OrderLine(msgspec.Struct, frozen=True):
    section_id: str
    seat_id: str | None
    quantity: int
    price: int


class TicketRow(msgspec.Struct, frozen=True):
    code: str
    section_id: str
    seat_id: str | None
    number: int
    checked_in_at: datetime | None = None


class OrderRow(msgspec.Struct, frozen=True):
    id: str
    event_id: str
    hold_id: str
    visitor_id: str
    queue_id: str
    email: str
    status: str
    amount: int
    currency: str
    provider: str
    payment_id: str | None
    client_secret: str | None
    expires_at: datetime
    status_reason: str | None
    created_at: datetime
    paid_at: datetime | None
    order_key: str | None = None  # the secret of the order's link, set when it is paid
    refunded_at: datetime | None = None
    refund_attempts: int = 0
    buyer: str = ""  # rules.buyer_email(email): whom the per-buyer limit counts
    lines: list[OrderLine] = []
    tickets: list[TicketRow] = []

    @property
    def seats(self) -> list[str]:
        return [line.seat_id for line in self.lines if line.seat_id is not None]

    @property
    def ga(self) -> tuple[str, int]:
        for line in self.lines:
            if line.seat_id is None:
                return line.section_id, line.quantity
        return "", 0


class PaymentAction(msgspec.Struct, frozen=True):
    id: int
    order_id: str
    action: str
    provider: str
    payment_id: str | None
    attempts: int


Confirmation = Literal[
    "paid", "already_paid", "seats_taken", "buyer_limit", "not_pending", "missing"
]

ORDER_COLUMNS = (
    "id, event_id, hold_id, visitor_id, queue_id, email, status, amount, currency, provider,"
    " payment_id, client_secret, expires_at, status_reason, created_at, paid_at, order_key,"
    " refunded_at, refund_attempts, buyer"
)


async def _load(
    conn: Any, where: str, value: str, lock: bool = False, event_id: str | None = None
) -> OrderRow | None:
    """One order with its lines and tickets. The tables are partitioned by event (migration
    011): given the event, the order is read from its partition alone; its lines and tickets
    always are."""
    suffix = " FOR UPDATE" if lock else ""
    sql = f"SELECT {ORDER_COLUMNS} FROM orders WHERE {where} = $1"
    if event_id is None:
        row = await conn.fetchrow(sql + suffix, value)
    else:  # a separate statement: a prepared plan prunes on `event_id = $2` alone
        row = await conn.fetchrow(sql + " AND event_id = $2" + suffix, value, event_id)
    if row is None:
        return None
    lines = await conn.fetch(
        "SELECT section_id, seat_id, quantity, price FROM order_lines WHERE order_id = $1"
        " AND event_id = $2 ORDER BY line_no",
        row["id"],
        row["event_id"],
    )
    tickets = await conn.fetch(
        "SELECT code, section_id, seat_id, number, checked_in_at FROM tickets WHERE order_id = $1"
        " AND event_id = $2 ORDER BY number",
        row["id"],
        row["event_id"],
    )
    data = dict(row)
    data["lines"] = [dict(r) for r in lines]
    data["tickets"] = [dict(r) for r in tickets]
    return msgspec.convert(data, OrderRow)


async def get_order(pool: Pool, order_id: str) -> OrderRow | None:
    async with pool.acquire() as conn:
        return await _load(conn, "id", order_id)


async def load_for_update(conn: Any, order_id: str, event_id: str | None = None) -> OrderRow | None:
    """The order, its row locked until the caller's transaction ends."""
    return await _load(conn, "id", order_id, lock=True, event_id=event_id)


async def get_orders(pool: Pool, order_ids: list[str]) -> list[OrderRow]:
    """These orders (those that exist), newest first."""
    async with pool.acquire() as conn:
        ids = await conn.fetch(
            "SELECT id FROM orders WHERE id = ANY($1::text[]) ORDER BY created_at DESC, id",
            order_ids,
        )
        found = [await _load(conn, "id", r["id"]) for r in ids]
    return [o for o in found if o is not None]


class OrderQuery(msgspec.Struct, frozen=True):
    """Order search of the ops console: every given field must match (email case-blind)."""

    event_id: str | None = None
    email: str | None = None
    seat: str | None = None
    code: str | None = None
    order_id: str | None = None
    status: str | None = None
    limit: int = 100


async def search_orders(pool: Pool, q: OrderQuery) -> list[OrderRow]:
    ids = await pool.fetch(
        "SELECT o.id FROM orders o WHERE ($1::text IS NULL OR o.event_id = $1)"
        " AND ($2::text IS NULL OR lower(o.email) = lower($2))"
        " AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id"
        "      AND l.seat_id = $3 AND l.event_id = o.event_id))"
        " AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM tickets t WHERE t.order_id = o.id"
        "      AND t.event_id = o.event_id"
        "      AND t.code = $4))"
        " AND ($5::text IS NULL OR o.id = $5)"
        " AND ($6::text IS NULL OR o.status = $6)"
        " ORDER BY o.created_at DESC, o.id LIMIT $7",
        q.event_id, q.email, q.seat, q.code, q.order_id, q.status, q.limit,
    )  # fmt: skip
    return await get_orders(pool, [r["id"] for r in ids])


async def paid_orders_of_visitor(pool: Pool, event_id: str, visitor_id: str) -> list[OrderRow]:
    ids = await pool.fetch(
        "SELECT id FROM orders WHERE event_id = $1 AND visitor_id = $2 AND status = 'paid'",
        event_id,
        visitor_id,
    )
    return await get_orders(pool, [r["id"] for r in ids])


async def paid_orders_by_email(pool: Pool, email: str, limit: int = 50) -> dict[str, list[str]]:
    """event id -> ids of the paid orders of this email (case-blind), newest first."""
    rows = await pool.fetch(
        "SELECT event_id, id FROM orders WHERE lower(email) = lower($1) AND status = 'paid'"
        " ORDER BY paid_at DESC LIMIT $2",
        email,
        limit,
    )
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["event_id"], []).append(r["id"])
    return out


async def get_order_by_payment(pool: Pool, payment_id: str) -> OrderRow | None:
    async with pool.acquire() as conn:
        return await _load(conn, "payment_id", payment_id)


async def create_order(
    pool: Pool,
    *,
    order_id: str,
    event_id: str,
    hold_id: str,
    visitor_id: str,
    queue_id: str,
    email: str,
    amount: int,
    currency: str,
    provider: str,
    expires_at: datetime,
    lines: list[OrderLine],
) -> tuple[OrderRow, bool]:
    """One order per hold: a second checkout of the same hold gets the first order back. The
    order counts against the buyer its email names (rules.buyer_email)."""
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            "INSERT INTO orders (id, event_id, hold_id, visitor_id, queue_id, email, amount,"
            " currency, provider, expires_at, buyer) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
            # No conflict target: the hold is unique per event in the partitioned table
            # (migration 011) and on its own before it; this runs on both.
            " ON CONFLICT DO NOTHING RETURNING id",
            order_id, event_id, hold_id, visitor_id, queue_id, email, amount, currency,
            provider, expires_at, rules.buyer_email(email),
        )  # fmt: skip
        if created is not None:
            await conn.executemany(
                "INSERT INTO order_lines (order_id, line_no, event_id, section_id, seat_id,"
                " quantity, price) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                [
                    (order_id, i, event_id, ln.section_id, ln.seat_id, ln.quantity, ln.price)
                    for i, ln in enumerate(lines)
                ],
            )
        order = await _load(conn, "hold_id", hold_id, event_id=event_id)
    assert order is not None
    return order, created is not None


async def tickets_bought(
    conn: Any, event_id: str, *, buyer: str | None = None, visitor_id: str | None = None
) -> int:
    """Tickets in the event's paid orders of one buyer (normalised email) or one visitor."""
    column, value = ("buyer", buyer) if buyer is not None else ("visitor_id", visitor_id)
    got = await conn.fetchval(
        "SELECT coalesce(sum(l.quantity), 0) FROM orders o JOIN order_lines l"
        " ON l.order_id = o.id AND l.event_id = o.event_id"
        f" WHERE o.event_id = $1 AND o.status = 'paid' AND o.{column} = $2",
        event_id,
        value,
    )
    return int(got)


def order_tickets(order: OrderRow) -> int:
    return sum(line.quantity for line in order.lines)


async def _buyer_limit(conn: Any, order: OrderRow) -> bool:
    """Whether paying this order takes its buyer past the event's limit. Confirmations of one
    buyer of one event are serialised by an advisory lock held to the end of the transaction,
    so two orders paid at once cannot both pass."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", order.event_id, order.buyer
    )
    settings = await conn.fetchrow(
        "SELECT max_tickets_per_buyer, max_seats_per_order FROM events WHERE id = $1",
        order.event_id,
    )
    limit = rules.buyer_limit(settings["max_tickets_per_buyer"], settings["max_seats_per_order"])
    bought = await tickets_bought(conn, order.event_id, buyer=order.buyer)
    return rules.over_buyer_limit(bought, order_tickets(order), limit)


async def set_payment(
    pool: Pool, order_id: str, payment_id: str, client_secret: str | None
) -> None:
    await pool.execute(
        "UPDATE orders SET payment_id = $2, client_secret = $3, updated_at = now()"
        " WHERE id = $1 AND payment_id IS NULL",
        order_id,
        payment_id,
        client_secret,
    )


async def confirm(
    pool: Pool,
    order_id: str,
    ticket_code: Callable[[str, int], str],
    captured: bool,
    event_id: str | None = None,
) -> tuple[Confirmation, OrderRow | None]:
    """The arbiter. In one transaction: pending -> paid, seats into sold_seats (primary key
    (event, seat)), standing units under the capacity CHECK, tickets, an outbox row and the
    capture to do after commit. If any seat is gone, or the order would take its buyer past the
    event's per-buyer limit, the order becomes voided instead, and the payment is voided (or
    refunded if it was already captured). Given the order's event, every statement reads and
    writes that event's partitions alone."""
    async with pool.acquire() as conn, conn.transaction():
        order = await _load(conn, "id", order_id, lock=True, event_id=event_id)
        if order is None:
            return "missing", None
        if order.status == "paid":
            return "already_paid", order
        if order.status != "pending":
            return "not_pending", order
        if await _buyer_limit(conn, order):
            await conn.execute(
                "UPDATE orders SET status = 'voided', status_reason = 'buyer_limit',"
                " updated_at = now() WHERE id = $1 AND event_id = $2",
                order_id,
                order.event_id,
            )
            await _add_action(conn, order, "refund" if captured else "void")
            return "buyer_limit", await _load(conn, "id", order_id, event_id=order.event_id)
        try:
            async with conn.transaction():
                await _take_inventory(conn, order)
        except (asyncpg.UniqueViolationError, asyncpg.CheckViolationError, _SoldOut):
            await conn.execute(
                "UPDATE orders SET status = 'voided', status_reason = 'seats_taken',"
                " updated_at = now() WHERE id = $1 AND event_id = $2",
                order_id,
                order.event_id,
            )
            await _add_action(conn, order, "refund" if captured else "void")
            return "seats_taken", await _load(conn, "id", order_id, event_id=order.event_id)
        await conn.execute(
            "UPDATE orders SET status = 'paid', paid_at = now(), status_reason = NULL,"
            " order_key = coalesce(order_key, $2), updated_at = now() WHERE id = $1"
            " AND event_id = $3",
            order_id,
            new_id(),  # 128 random bits: the secret of the order's link
            order.event_id,
        )
        numbered = _ticket_lines(order)
        await conn.executemany(
            "INSERT INTO tickets (code, order_id, event_id, section_id, seat_id, number)"
            " VALUES ($1,$2,$3,$4,$5,$6)",
            [
                (ticket_code(order_id, n), order_id, order.event_id, section, seat, n)
                for n, (section, seat) in enumerate(numbered, start=1)
            ],
        )
        ga_section, quantity = order.ga
        payload = {
            "order_id": order_id,
            "hold_id": order.hold_id,
            "queue_id": order.queue_id,
            "visitor_id": order.visitor_id,
            "seats": order.seats,
            "ga_section": ga_section,
            "quantity": quantity,
        }
        await conn.execute(
            "INSERT INTO outbox (event_id, kind, payload) VALUES ($1, 'order_paid', $2::jsonb)",
            order.event_id,
            json.dumps(payload),
        )
        if not captured:
            await _add_action(conn, order, "capture")
        return "paid", await _load(conn, "id", order_id, event_id=order.event_id)


class _SoldOut(Exception):
    pass


async def _take_inventory(conn: Any, order: OrderRow) -> None:
    seats = order.seats
    if seats:
        await conn.executemany(
            "INSERT INTO sold_seats (event_id, seat_id, order_id) VALUES ($1, $2, $3)",
            [(order.event_id, seat, order.id) for seat in seats],
        )
    section, quantity = order.ga
    if quantity:
        taken = await conn.fetchval(
            "UPDATE ga_sales SET sold = sold + $3 WHERE event_id = $1 AND section_id = $2"
            " AND sold + $3 <= capacity RETURNING sold",
            order.event_id,
            section,
            quantity,
        )
        if taken is None:
            raise _SoldOut


def _ticket_lines(order: OrderRow) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for line in order.lines:
        if line.seat_id is not None:
            out.append((line.section_id, line.seat_id))
        else:
            out.extend((line.section_id, None) for _ in range(line.quantity))
    return out


async def _add_action(conn: Any, order: OrderRow, action: str) -> None:
    if order.provider == "dev":
        return  # nothing to capture or void without a real payment
    await conn.execute(
        "INSERT INTO payment_actions (order_id, action) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        order.id,
        action,
    )


async def change_status(
    pool: Pool,
    order_id: str,
    target: str,
    reason: str,
    *,
    action: str | None = None,
    event_id: str | None = None,
) -> OrderRow | None:
    """pending -> target, guarded: None if the order was no longer pending. Given the order's
    event, only its partitions are touched."""
    if not rules.can_transition("pending", target):
        raise ValueError(f"an order never goes from pending to {target}")
    async with pool.acquire() as conn, conn.transaction():
        sql = (
            "UPDATE orders SET status = $2, status_reason = $3, updated_at = now()"
            " WHERE id = $1 AND status = 'pending'"
        )
        args = [order_id, target, reason]
        if event_id is not None:
            sql, args = sql + " AND event_id = $4", [*args, event_id]
        done = await conn.fetchval(sql + " RETURNING event_id", *args)
        if done is None:
            return None
        order = await _load(conn, "id", order_id, event_id=done)
        assert order is not None
        if action is not None:
            await _add_action(conn, order, action)
        return order


async def expire_due(pool: Pool, grace: timedelta, limit: int = 200) -> list[OrderRow]:
    """Pending orders whose hold and payment window passed (plus grace) become expired."""
    async with pool.acquire() as conn, conn.transaction():
        ids = await conn.fetch(
            "UPDATE orders SET status = 'expired', status_reason = 'payment_window_passed',"
            " updated_at = now() WHERE id IN (SELECT id FROM orders WHERE status = 'pending'"
            " AND expires_at < now() - $1::interval ORDER BY expires_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED) RETURNING id",
            grace,
            limit,
        )
        expired = []
        for r in ids:
            order = await _load(conn, "id", r["id"])
            assert order is not None
            await _add_action(conn, order, "void")
            expired.append(order)
        return expired


async def seen_stripe_event(pool: Pool, event_id: str) -> bool:
    found = await pool.fetchval("SELECT true FROM stripe_events WHERE id = $1", event_id)
    return found is not None


async def record_stripe_event(pool: Pool, event_id: str, kind: str) -> None:
    await pool.execute(
        "INSERT INTO stripe_events (id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        event_id,
        kind,
    )


async def due_actions(
    pool: Pool, limit: int = 50, order_id: str | None = None
) -> list[PaymentAction]:
    """Payment follow-ups not done yet: one order's (right after its commit), or all of them
    (the background loop, with a growing pause between attempts)."""
    rows = await pool.fetch(
        "SELECT a.id, a.order_id, a.action, o.provider, o.payment_id, a.attempts"
        " FROM payment_actions a JOIN orders o ON o.id = a.order_id"
        " WHERE a.done_at IS NULL AND a.attempts < 20 AND ($2::text IS NULL OR a.order_id = $2)"
        " AND ($2::text IS NOT NULL OR"
        "      a.created_at < now() - make_interval(secs => least(300, a.attempts * a.attempts)))"
        " ORDER BY a.id LIMIT $1",
        limit,
        order_id,
    )
    return [msgspec.convert(dict(r), PaymentAction) for r in rows]


async def finish_action(pool: Pool, action_id: int, error: str | None) -> None:
    if error is None:
        await pool.execute("UPDATE payment_actions SET done_at = now() WHERE id = $1", action_id)
    else:
        await pool.execute(
            "UPDATE payment_actions SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
            action_id,
            error[:500],
        )


class OutboxItem(msgspec.Struct, frozen=True):
    id: int
    event_id: str
    kind: str
    payload: str


async def relay_outbox(pool: Pool, publish: Callable[[OutboxItem], Any], limit: int = 100) -> int:
    """Publish unpublished outbox rows; safe with several processes (SKIP LOCKED)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, event_id, kind, payload::text AS payload FROM outbox"
            " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        for r in rows:
            await publish(msgspec.convert(dict(r), OutboxItem))
        if rows:
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1)", [r["id"] for r in rows]
            )
        return len(rows)
