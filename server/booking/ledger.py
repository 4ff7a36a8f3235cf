"""Orders in PostgreSQL: creation, the confirming transaction that is the final arbiter,
guarded status changes, payment follow-ups and the outbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec

from server.core import rules
from server.core.tokens import new_id
from server.store import audit
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
    card_fingerprint: str | None = None  # the provider's card that paid (set at confirmation)
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
    " refunded_at, refund_attempts, buyer, card_fingerprint"
)


_O_COLUMNS = ", ".join(f"o.{name.strip()}" for name in ORDER_COLUMNS.split(","))


def _children(event: str = "o.event_id") -> str:
    """The order's lines and tickets as JSON columns. `event` names its event: a parameter
    ($n) when the caller knows it, so that the plan reads one partition of each table."""
    return (
        "coalesce((SELECT json_agg(json_build_object('section_id', l.section_id, 'seat_id',"
        " l.seat_id, 'quantity', l.quantity, 'price', l.price) ORDER BY l.line_no)"
        f" FROM order_lines l WHERE l.order_id = o.id AND l.event_id = {event}), '[]') AS lines,"
        " coalesce((SELECT json_agg(json_build_object('code', t.code, 'section_id',"
        " t.section_id, 'seat_id', t.seat_id, 'number', t.number, 'checked_in_at',"
        " t.checked_in_at) ORDER BY t.number) FROM tickets t WHERE t.order_id = o.id"
        f" AND t.event_id = {event}), '[]') AS tickets"
    )


_decode_lines = msgspec.json.Decoder(list[OrderLine])
_decode_tickets = msgspec.json.Decoder(list[TicketRow])


async def _load(
    conn: Any, where: str, value: str, lock: bool = False, event_id: str | None = None
) -> OrderRow | None:
    """One order with its lines and tickets, in one round trip (two to lock it: a statement
    that waited for the lock still reads the rows committed meanwhile with its old snapshot).
    The tables are partitioned by event (migration 014): given the event, the order is read
    from its partition alone (a statement of its own, so that a prepared plan prunes); its
    lines and tickets always are."""
    scope, args = ("", [value]) if event_id is None else (" AND o.event_id = $2", [value, event_id])
    if lock:
        await conn.execute(f"SELECT 1 FROM orders o WHERE o.{where} = $1{scope} FOR UPDATE", *args)
    children = _children() if event_id is None else _children("$2")
    row = await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS}, {children} FROM orders o WHERE o.{where} = $1{scope}", *args
    )
    return None if row is None else _order(dict(row))


def _order(data: dict[str, Any]) -> OrderRow:
    data["lines"] = _decode_lines.decode(data["lines"])
    data["tickets"] = _decode_tickets.decode(data["tickets"])
    return msgspec.convert(data, OrderRow)


async def get_order(pool: Pool, order_id: str) -> OrderRow | None:
    async with pool.acquire() as conn:
        return await _load(conn, "id", order_id)


async def order_language(pool: Pool, order_id: str) -> str | None:
    """The language the order was checked out in (migration 015), None if not recorded."""
    lang: str | None = await pool.fetchval("SELECT lang FROM orders WHERE id = $1", order_id)
    return lang


async def load_for_update(conn: Any, order_id: str, event_id: str | None = None) -> OrderRow | None:
    """The order, its row locked until the caller's transaction ends."""
    return await _load(conn, "id", order_id, lock=True, event_id=event_id)


async def get_orders(pool: Pool, order_ids: list[str]) -> list[OrderRow]:
    """These orders (those that exist), newest first."""
    if not order_ids:
        return []
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
    """Found by the visitor's index, paid ones kept as `paid_tickets` keeps them."""
    ids = await pool.fetchval(
        "SELECT array_agg(id) FILTER (WHERE status = 'paid') FROM orders"
        " WHERE event_id = $1 AND visitor_id = $2",
        event_id,
        visitor_id,
    )
    return await get_orders(pool, ids or [])


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


async def report_target(
    pool: Pool, event_id: str, payment_id: str, order_id: str
) -> tuple[bool, OrderRow | None]:
    """Whether this provider report (`event_id`) was recorded already, and the order it is
    about: by its payment, else by the order id it names ("" for none). One round trip."""
    row = await pool.fetchrow(
        f"SELECT (SELECT true FROM stripe_events WHERE id = $1) AS seen, {ORDER_COLUMNS},"
        f" {_children()} FROM (SELECT 1) AS one LEFT JOIN orders o ON o.id ="
        " coalesce((SELECT id FROM orders WHERE payment_id = $2), $3)",
        event_id,
        payment_id,
        order_id,
    )
    assert row is not None  # one row always: the LEFT JOIN's
    data = dict(row)
    seen = bool(data.pop("seen"))
    if data["id"] is None:
        return seen, None
    return seen, _order(data)


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
    lang: str | None = None,
) -> tuple[OrderRow, bool]:
    """One order per hold: a second checkout of the same hold gets the first order back. The
    order counts against the buyer its email names (rules.buyer_email) and keeps the fan's
    language, for its mails (`lang`, migration 015; None leaves it unset: the default)."""
    # lang is written only when given: the same insert then runs on a database before 015
    column, value, more = (", lang", ",$12", [lang]) if lang is not None else ("", "", [])
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(
            "INSERT INTO orders (id, event_id, hold_id, visitor_id, queue_id, email, amount,"
            f" currency, provider, expires_at, buyer{column})"
            f" VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11{value})"
            # No conflict target: the hold is unique per event in the partitioned table
            # (migration 014) and on its own before it; this runs on both.
            " ON CONFLICT DO NOTHING RETURNING id",
            order_id, event_id, hold_id, visitor_id, queue_id, email, amount, currency,
            provider, expires_at, rules.buyer_email(email), *more,
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
    conn: Any, event_id: str, *, buyer: str | None = None, card: str | None = None
) -> int:
    """Tickets in the event's paid orders of one buyer (normalised email) or one card (the
    provider's fingerprint)."""
    column, value = ("buyer", buyer) if buyer is not None else ("card_fingerprint", card)
    got = await conn.fetchval(f"SELECT ({paid_tickets(column, '$1', '$2')})", event_id, value)
    return int(got)


def paid_tickets(column: str, event: str, value: str) -> str:
    """The query of the tickets in the paid orders of the event (`event`, SQL) whose `column`
    is `value` (SQL). The orders are found by that column's index (migration 017) and their
    status is a filter of the sum, not of the WHERE: a WHERE on status = 'paid' lets the
    planner reach the paid orders through `orders (event_id, status)` too, and when its
    statistics were taken before the sale's first payment (every order pending) both paths
    look one row long, so the plan it keeps may walk every paid order of the event. Each
    order's lines are summed by a subquery of their own, so that no plan starts from the
    event's lines either (a join did, on an order_lines partition without statistics)."""
    return (
        f"SELECT coalesce(sum(({_LINE_TICKETS.format(o='p')})) FILTER (WHERE p.status = 'paid'),"
        f" 0) FROM orders p WHERE p.event_id = {event} AND p.{column} = {value}"
    )


# The tickets of the order `{o}` (an alias of orders), by the lines' primary key.
_LINE_TICKETS = (
    "SELECT sum(l.quantity) FROM order_lines l WHERE l.order_id = {o}.id"
    " AND l.event_id = {o}.event_id"
)


async def visitors_tickets_bought(
    conn: Any, event_id: str, visitor_ids: list[str]
) -> dict[str, int]:
    """Tickets in the event's paid orders of each of these visitors, in one query (a visitor
    with none is left out); found as `paid_tickets` finds them."""
    rows = await conn.fetch(
        f"SELECT o.visitor_id, sum(({_LINE_TICKETS.format(o='o')})) FILTER"
        " (WHERE o.status = 'paid') AS n FROM orders o"
        " WHERE o.event_id = $1 AND o.visitor_id = ANY($2::text[]) GROUP BY o.visitor_id",
        event_id,
        visitor_ids,
    )
    return {row["visitor_id"]: int(row["n"]) for row in rows if row["n"] is not None}


def order_tickets(order: OrderRow) -> int:
    return sum(line.quantity for line in order.lines)


class LimitCheck(msgspec.Struct, frozen=True):
    """The per-buyer limit as the confirming transaction saw it."""

    passed_by: rules.BuyerCount | None  # which count the order would take past the limit
    limit: int
    by_email: int  # tickets already paid by the order's buyer
    by_card: int | None  # ... and with its card (None: no fingerprint)

    @property
    def note(self) -> str:
        """For the audit trail: which rule refused, with the counts it saw."""
        card = "" if self.by_card is None else f", {self.by_card} with this card"
        return (
            f"per-buyer limit {self.limit} passed by {self.passed_by}:"
            f" {self.by_email} already bought by this email{card}"
        )


async def _lock_for_confirmation(
    conn: Any, order_id: str, card: str | None, event_id: str | None
) -> tuple[OrderRow | None, LimitCheck]:
    """Lock the order, its buyer and its card, then read the order and the per-buyer limit by
    its email and by its card (the provider's fingerprint; None without one). Confirmations of
    one buyer, and of one card, of one event are serialised by advisory locks held to the end
    of the transaction, so two orders paid at once cannot both pass: the read is a statement
    after the locks, so it sees every confirmation that held them before. The email's lock is
    always taken before the card's (a transaction takes at most one of each): no deadlock.
    Given the order's event, every statement reads that event's partitions alone."""

    def within(n: int) -> tuple[str, list[str]]:  # "and of this event", as parameter $n
        return ("", []) if event_id is None else (f" AND o.event_id = ${n}", [event_id])

    scope, extra = within(3)
    # One statement, the email's lock first: the inner query's row (its buyer locked, the
    # order row locked) is made before the outer expression takes the card's lock.
    await conn.execute(
        "SELECT CASE WHEN $2::text IS NOT NULL THEN"
        " pg_advisory_xact_lock(hashtext('card:' || l.event_id), hashtext($2)) END"
        " FROM (SELECT o.event_id, pg_advisory_xact_lock(hashtext(o.event_id), hashtext(o.buyer))"
        f" FROM orders o WHERE o.id = $1{scope} FOR UPDATE OFFSET 0) AS l",
        order_id,
        card,
        *extra,
    )
    ev = "o.event_id" if event_id is None else "$3"
    row = await conn.fetchrow(
        f"SELECT {_O_COLUMNS}, {_children(ev)}, e.max_tickets_per_buyer,"
        f" e.max_seats_per_order, ({paid_tickets('buyer', ev, 'o.buyer')}) AS by_email,"
        " CASE WHEN $2::text IS NOT NULL THEN"
        f" ({paid_tickets('card_fingerprint', ev, '$2')}) END AS by_card"
        f" FROM orders o JOIN events e ON e.id = o.event_id WHERE o.id = $1{scope}",
        order_id,
        card,
        *extra,
    )
    if row is None:
        return None, LimitCheck(None, 0, 0, None)
    data = dict(row)
    limit = rules.buyer_limit(data.pop("max_tickets_per_buyer"), data.pop("max_seats_per_order"))
    by_email = int(data.pop("by_email"))
    by_card = data.pop("by_card")
    by_card = None if by_card is None else int(by_card)
    order = _order(data)
    passed = rules.buyer_limit_passed_by(order_tickets(order), limit, by_email, by_card)
    return order, LimitCheck(passed, limit, by_email, by_card)


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
    card: str | None = None,
    who: str = "system",
    report: tuple[str, str] | None = None,
    event_id: str | None = None,
) -> tuple[Confirmation, OrderRow | None]:
    """The arbiter. In one transaction: pending -> paid, seats into sold_seats (primary key
    (event, seat)), standing units under the capacity CHECK, tickets, an outbox row and the
    capture to do after commit. `card` is the provider's fingerprint of the card that paid
    (None without one); it is kept on the order. If any seat is gone, or the order would take
    its buyer (email) or its card past the event's per-buyer limit, the order becomes voided
    instead, and the payment is voided (or refunded if it was already captured); a refusal by
    the limit is audited (by `who`: the provider's report, or the dev payment). The paid path
    is three statements: the locks, the order with its buyer's and its card's counts, and one
    statement that takes the inventory and, if all of it was free, makes every write and
    records the provider's `report` (id, kind) that paid it. Given the order's `event_id`, it
    touches that event's partitions alone."""
    async with pool.acquire() as conn, conn.transaction():
        order, check = await _lock_for_confirmation(conn, order_id, card, event_id)
        if order is None:
            return "missing", None
        if order.status == "paid":
            if report is not None:  # a paid answer means its report is recorded
                await record_stripe_event(conn, *report)
            return "already_paid", order
        if order.status != "pending":
            return "not_pending", order
        if card is not None:
            order = msgspec.structs.replace(order, card_fingerprint=card)
        lost = "refund" if captured else "void"
        if check.passed_by is not None:
            change = {f"order:{order_id}": ("pending", "voided")}
            await audit.record(conn, order.event_id, who, "buyer_limit", change, check.note)
            return "buyer_limit", await _void(conn, order, "buyer_limit", lost)
        paid = await _mark_paid(conn, order, ticket_code, not captured, report)
        if paid is None:  # a seat or a standing unit was gone: what it took goes back
            await conn.execute(
                "DELETE FROM sold_seats WHERE event_id = $1 AND order_id = $2",
                order.event_id,
                order_id,
            )
            return "seats_taken", await _void(conn, order, "seats_taken", lost)
        return "paid", paid


async def _void(conn: Any, order: OrderRow, reason: str, action: str) -> OrderRow | None:
    await conn.execute(
        "UPDATE orders SET status = 'voided', status_reason = $2,"
        " card_fingerprint = coalesce($3, card_fingerprint), updated_at = now() WHERE id = $1"
        " AND event_id = $4",
        order.id,
        reason,
        order.card_fingerprint,
        order.event_id,
    )
    await _add_action(conn, order, action)
    return await _load(conn, "id", order.id, event_id=order.event_id)


async def _mark_paid(
    conn: Any,
    order: OrderRow,
    ticket_code: Callable[[str, int], str],
    capture: bool,
    report: tuple[str, str] | None,
) -> OrderRow | None:
    """One statement: the order's seats into sold_seats (primary key (event, seat)) and its
    standing units under the capacity CHECK; then, only if every one was free, pending -> paid
    with its tickets, the outbox row, the capture owed and the report that paid it. None if
    any was gone (the seats it did insert are the caller's to delete, in the same
    transaction)."""
    numbered = _ticket_lines(order)
    codes = [ticket_code(order.id, n) for n in range(1, len(numbered) + 1)]
    ga_section, quantity = order.ga
    payload = {
        "order_id": order.id,
        "hold_id": order.hold_id,
        "queue_id": order.queue_id,
        "visitor_id": order.visitor_id,
        "seats": order.seats,
        "ga_section": ga_section,
        "quantity": quantity,
    }
    # A seat named twice inserts once and fails the count, as a taken one does; the standing
    # units are taken only if every seat was.
    row = await conn.fetchrow(
        "WITH seated AS (INSERT INTO sold_seats (event_id, seat_id, order_id)"
        "  SELECT $3, s, $1 FROM unnest($13::text[]) AS s ON CONFLICT DO NOTHING RETURNING 1),"
        " standing AS (UPDATE ga_sales SET sold = sold + $15 WHERE $15 > 0 AND event_id = $3"
        "  AND section_id = $14 AND sold + $15 <= capacity"
        "  AND (SELECT count(*) FROM seated) = cardinality($13::text[]) RETURNING 1),"
        " sold AS (SELECT (SELECT count(*) FROM seated) = cardinality($13::text[])"
        "  AND ($15 = 0 OR EXISTS (SELECT FROM standing)) AS ok),"
        " paid AS (UPDATE orders SET status = 'paid', paid_at = now(), status_reason = NULL,"
        "  order_key = coalesce(order_key, $2), card_fingerprint = coalesce($12, card_fingerprint),"
        "  updated_at = now() WHERE id = $1 AND event_id = $3 AND (SELECT ok FROM sold)"
        "  RETURNING paid_at, order_key),"
        " issued AS (INSERT INTO tickets (code, order_id, event_id, section_id, seat_id, number)"
        "  SELECT t.code, $1, $3, t.section_id, t.seat_id, t.number"
        "  FROM unnest($4::text[], $5::text[], $6::text[], $7::int[])"
        "  AS t(code, section_id, seat_id, number) WHERE (SELECT ok FROM sold)),"
        " announced AS (INSERT INTO outbox (event_id, kind, payload)"
        "  SELECT $3, 'order_paid', $8::jsonb WHERE (SELECT ok FROM sold)),"
        " owed AS (INSERT INTO payment_actions (order_id, action) SELECT $1, 'capture'"
        "  WHERE $9 AND (SELECT ok FROM sold) ON CONFLICT DO NOTHING),"
        " noted AS (INSERT INTO stripe_events (id, type) SELECT $10, $11"
        "  WHERE $10::text IS NOT NULL AND (SELECT ok FROM sold) ON CONFLICT DO NOTHING)"
        " SELECT paid_at, order_key FROM paid",
        order.id,
        new_id(),  # 128 random bits: the secret of the order's link
        order.event_id,
        codes,
        [section for section, _ in numbered],
        [seat for _, seat in numbered],
        list(range(1, len(numbered) + 1)),
        json.dumps(payload),
        capture and order.provider != "dev",  # nothing to capture without a real payment
        *(report or (None, None)),
        order.card_fingerprint,
        order.seats,
        ga_section,
        quantity,
    )
    if row is None:
        return None
    tickets = [
        TicketRow(code, section, seat, n)
        for n, (code, (section, seat)) in enumerate(zip(codes, numbered, strict=True), start=1)
    ]
    return msgspec.structs.replace(
        order,
        status="paid",
        status_reason=None,
        paid_at=row["paid_at"],
        order_key=row["order_key"],
        tickets=tickets,
    )


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


async def record_stripe_event(pool: Pool | Any, event_id: str, kind: str) -> None:
    """Remember a provider report as applied (on the pool, or a transaction's connection)."""
    await pool.execute(
        "INSERT INTO stripe_events (id, type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        event_id,
        kind,
    )


async def run_due_actions(
    pool: Pool,
    run: Callable[[PaymentAction], Awaitable[str | None]],
    limit: int = 50,
    order_id: str | None = None,
) -> tuple[int, int]:
    """Payment follow-ups not done yet, run together by `run` (None = done, else the error):
    one order's (right after its commit, waiting for any other process running it), or a batch
    of all of them (skipping those another process holds, with a growing pause between
    attempts). Claimed, run and recorded in one transaction, so no two processes run the same
    follow-up at once, and a crash before the commit leaves it owed (the provider's idempotency
    key makes the repeat harmless). Returns (claimed, done)."""
    wait = "" if order_id is not None else " SKIP LOCKED"
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT a.id, a.order_id, a.action, o.provider, o.payment_id, a.attempts"
            " FROM payment_actions a JOIN orders o ON o.id = a.order_id"
            " WHERE a.done_at IS NULL AND a.attempts < 20"
            " AND ($2::text IS NULL OR a.order_id = $2) AND ($2::text IS NOT NULL OR"
            "      a.created_at < now() - make_interval(secs => least(300, a.attempts * a.attempts)))"
            f" ORDER BY a.id LIMIT $1 FOR UPDATE OF a{wait}",
            limit,
            order_id,
        )
        if not rows:
            return 0, 0
        actions = [msgspec.convert(dict(r), PaymentAction) for r in rows]
        errors = await asyncio.gather(*(run(action) for action in actions))
        await conn.execute(
            "UPDATE payment_actions a SET done_at = CASE WHEN r.error IS NULL THEN now() END,"
            " attempts = a.attempts + (r.error IS NOT NULL)::int,"
            " last_error = coalesce(left(r.error, 500), a.last_error)"
            " FROM unnest($1::bigint[], $2::text[]) AS r(id, error) WHERE a.id = r.id",
            [action.id for action in actions],
            errors,
        )
    return len(actions), sum(error is None for error in errors)


class OutboxItem(msgspec.Struct, frozen=True):
    id: int
    event_id: str
    kind: str
    payload: str


async def relay_outbox(
    pool: Pool, publish: Callable[[list[OutboxItem]], Awaitable[None]], limit: int = 100
) -> int:
    """Publish unpublished outbox rows, all claimed ones in one call of `publish` (in id
    order); safe with several processes (SKIP LOCKED). If it fails, none is marked published
    and the next turn publishes them again, as after a crash between the two: what the stream's
    consumers do with an entry is idempotent per order (queue/sell.lua, return_seats.lua)."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, event_id, kind, payload::text AS payload FROM outbox"
            " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
        )
        if rows:
            await publish([msgspec.convert(dict(r), OutboxItem) for r in rows])
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1)", [r["id"] for r in rows]
            )
        return len(rows)
