"""Refunds: a paid order's money goes back through its own provider, then one PostgreSQL
transaction makes it refunded, frees its seats (sold_seats rows gone, standing units returned),
writes an outbox row and the audit row; its seats go back on sale in Redis at once and a
sold-out sale reopens its queue. A refund the provider refuses leaves the order paid."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec

from server.booking import ledger
from server.booking.inventory import Inventory
from server.booking.seat_map import SeatMaps
from server.core import rules
from server.core.errors import Conflict, NotFound
from server.core.keys import EventKeys
from server.core.messages import BulkCancelResult, BulkPlan, EventPatch, RefusedOrder
from server.payments import PaymentError
from server.payments.registry import Providers
from server.store import audit
from server.waiting.room import Room

log = logging.getLogger("boxoffice.refunds")

Outcome = Literal["refunded", "already_refunded"]


class ReturnedPayload(msgspec.Struct):
    """The `order_refunded` outbox row: what the stream consumer needs to free the seats."""

    order_id: str
    hold_id: str
    seats: list[str]
    ga_section: str = ""
    quantity: int = 0


class Refunds:
    def __init__(
        self,
        room: Room,
        inventory: Inventory,
        seat_maps: SeatMaps,
        providers: Providers,
        run_actions: Callable[[str], Awaitable[int]],
    ) -> None:
        self.room = room
        self.pool = room.pool
        self.inventory = inventory
        self.seat_maps = seat_maps
        self.providers = providers
        self.run_actions = run_actions  # the payment actions owed for one order (settlement)

    async def refund(
        self, order_id: str, who: str, reason: str | None, step_up: bool = False
    ) -> tuple[Outcome, ledger.OrderRow]:
        """Refund one whole order, idempotently: a refunded order answers as it is and nothing
        more is refunded. Raises NotFound, or Conflict when the order is not paid or the
        provider refuses (the order then stays paid; the refusal is audited)."""
        order = await ledger.get_order(self.pool, order_id) if len(order_id) <= 64 else None
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        step = rules.refund_step(order.status)
        if step == "already_refunded":
            return "already_refunded", order
        if step == "not_paid":
            raise Conflict(f"this order is {order.status}; only paid orders are refunded",
                           code="order_not_paid")  # fmt: skip
        await self._refund_payment(order, who)
        reason = reason or "refunded by the box office"
        outcome, row = await self.record(order.id, who, reason, step_up)
        return outcome, row

    async def plan(self, order_ids: list[str]) -> BulkPlan:
        """What a bulk cancel of these orders would do, changing nothing: the count first."""
        found = {o.id: o for o in await ledger.get_orders(self.pool, order_ids)}
        plan = BulkPlan(count=0)
        for order_id in dict.fromkeys(order_ids):
            order = found.get(order_id)
            if order is None:
                plan.not_found.append(order_id)
                continue
            step = rules.refund_step(order.status)
            if step == "refund":
                plan.refundable.append(order_id)
            elif step == "already_refunded":
                plan.already_refunded.append(order_id)
            else:
                plan.not_paid.append(order_id)
        plan.count = len(plan.refundable)
        return plan

    async def cancel(
        self, order_ids: list[str], who: str, reason: str, step_up: bool = False
    ) -> BulkCancelResult:
        """Refund each refundable order of the list, one by one (each its own transaction and
        audit row); a refusal of one does not stop the others."""
        plan = await self.plan(order_ids)
        result = BulkCancelResult(
            already_refunded=plan.already_refunded, not_paid=plan.not_paid,
            not_found=plan.not_found,
        )  # fmt: skip
        for order_id in plan.refundable:
            try:
                outcome, _ = await self.refund(order_id, who, reason, step_up)
            except Conflict as exc:
                result.refused.append(RefusedOrder(order_id, exc.code, exc.detail))
                continue
            target = result.refunded if outcome == "refunded" else result.already_refunded
            target.append(order_id)
        return result

    async def _refund_payment(self, order: ledger.OrderRow, who: str) -> None:
        if order.payment_id is None:
            return  # no money was taken (dev provider): the refund is only ours to record
        provider = self.providers.of(order.provider)
        if provider is None:
            raise Conflict(f"this order's provider ({order.provider}) is not configured here",
                           code="refund_refused")  # fmt: skip
        # A capture still owed runs first: only captured money can be refunded.
        await self.run_actions(order.id)
        try:
            await provider.refund(order.payment_id, order.id, order.refund_attempts)
        except PaymentError as exc:
            detail = f"{order.provider} refused the refund: {exc}"
            log.warning("refund refused", extra={"order_id": order.id, "error": str(exc)})
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE orders SET refund_attempts = refund_attempts + 1 WHERE id = $1",
                    order.id,
                )
                change = {f"order:{order.id}": ("paid", "paid")}
                await audit.record(conn, order.event_id, who, "refund_refused", change, detail)
            raise Conflict(detail, code="refund_refused") from None

    async def record(
        self, order_id: str, who: str, reason: str, step_up: bool = False
    ) -> tuple[Outcome, ledger.OrderRow]:
        """The money is back (or never moved): paid -> refunded in PostgreSQL with the seats
        freed, then the seats on sale again in Redis and the queue reopened if it was sold
        out. Also what a provider's own refund report (e.g. Stripe's charge.refunded) runs."""
        async with self.pool.acquire() as conn, conn.transaction():
            outcome, row = await _refund_in_db(conn, order_id, who, reason, step_up)
        if outcome == "refunded":
            log.info("order refunded", extra={"order_id": order_id, "who": who})
            await self.put_back(row)
            await self.reopen(row.event_id, who)
        return outcome, row

    async def reported(self, order: ledger.OrderRow, source: str) -> str:
        """The provider reports the payment refunded: record it once (idempotent)."""
        if order.status not in ("paid", "refunded"):
            return f"ignored_{order.status}"
        outcome, _ = await self.record(order.id, source, "refunded at the payment provider")
        return outcome

    async def put_back(self, order: ledger.OrderRow) -> None:
        """Fast path after commit; the stream consumer does the same if this is lost."""
        ga_section, quantity = order.ga
        try:
            await self.inventory.return_seats(
                EventKeys(order.event_id), order.id, order.hold_id, order.seats, ga_section,
                quantity,
            )  # fmt: skip
        except Exception as exc:
            log.warning("returning seats in Redis failed: %s", exc, extra={"order_id": order.id})
        self.seat_maps.changed(order.event_id)

    async def reopen(self, event_id: str, who: str) -> bool:
        """A sold-out sale whose seats came back opens its queue again (audited, announced)."""
        self.room.cache.invalidate(event_id)
        ev = await self.room.cache.require(event_id)
        if not rules.reopens_after_return(ev.sold_out, ev.closed, 1):
            return False
        await self.room.change(ev.id, EventPatch(sold_out=False), who=who, action="reopened",
                               note="seats came back after a refund")  # fmt: skip
        return True


async def _refund_in_db(
    conn: Any, order_id: str, who: str, reason: str, step_up: bool = False
) -> tuple[Outcome, ledger.OrderRow]:
    order = await ledger.load_for_update(conn, order_id)
    if order is None:
        raise NotFound("no such order", code="order_not_found")
    step = rules.refund_step(order.status)
    if step == "already_refunded":
        return "already_refunded", order
    if step == "not_paid":
        raise Conflict(f"this order is {order.status}", code="order_not_paid")
    await conn.execute(
        "UPDATE orders SET status = 'refunded', status_reason = $2, refunded_at = now(),"
        " updated_at = now() WHERE id = $1 AND event_id = $3 AND status = 'paid'",
        order.id,
        reason[:500],
        order.event_id,
    )
    await conn.execute(
        "DELETE FROM sold_seats WHERE event_id = $1 AND order_id = $2", order.event_id, order.id
    )
    ga_section, quantity = order.ga
    if quantity:
        await conn.execute(
            "UPDATE ga_sales SET sold = greatest(0, sold - $3) WHERE event_id = $1"
            " AND section_id = $2",
            order.event_id,
            ga_section,
            quantity,
        )
    payload = ReturnedPayload(order.id, order.hold_id, order.seats, ga_section, quantity)
    await conn.execute(
        "INSERT INTO outbox (event_id, kind, payload) VALUES ($1, 'order_refunded', $2::jsonb)",
        order.event_id,
        json.dumps(msgspec.to_builtins(payload)),
    )
    change = {f"order:{order.id}": ("paid", "refunded")}
    await audit.record(conn, order.event_id, who, "refund", change, reason[:500], step_up)
    refreshed = await ledger.load_for_update(conn, order.id, order.event_id)
    assert refreshed is not None
    return "refunded", refreshed
