"""Settlement: a payment's outcome made final. Authorised money confirms the order in PostgreSQL
(the arbiter: seats, tickets, outbox and the capture owed, in one transaction) or is voided when
the seats are gone or the buyer's email or card is past the event's per-buyer limit; failures and cancellations release the hold; expired orders are closed; the
captures, voids and refunds PostgreSQL says are owed run at the order's own provider."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import msgspec

from server.booking import ledger
from server.booking.holds import Holds, hold_policy
from server.booking.inventory import Inventory
from server.booking.seat_map import SeatMaps
from server.core.errors import Unavailable
from server.core.keys import EventKeys
from server.core.loops import Loop
from server.core.settings import Settings
from server.core.tokens import Signer
from server.payments import PaymentError, PaymentEvent
from server.payments.registry import Providers
from server.store import db

log = logging.getLogger("boxoffice.settlement")

CAPTURE_BATCH = 50  # payment actions claimed and run together by one background turn
CAPTURE_GATHER_S = 0.05  # after a turn, captures committed meanwhile gather for the next


class Settlement:
    def __init__(
        self,
        settings: Settings,
        inventory: Inventory,
        holds: Holds,
        seat_maps: SeatMaps,
        pool: db.Pool,
        providers: Providers,
        signer: Signer,
        refunded: Callable[[ledger.OrderRow, str], Awaitable[str]],
    ) -> None:
        self.settings = settings
        self.inventory = inventory
        self.holds = holds
        self.seat_maps = seat_maps
        self.pool = pool
        self.providers = providers
        self.signer = signer
        self.refunded = refunded  # records a refund the provider reports (booking.refunds)
        self._owed = asyncio.Event()  # a capture was committed: wakes captures_step
        self._owed.set()  # the first turn runs what a stopped process left owed
        self._capturing = False  # captures_step runs in this process (the payments role)

    def loops(self) -> list[Loop]:
        return [("orders", self.orders_step), ("captures", self.captures_step)]

    # ---- outcomes ---------------------------------------------------------------------------

    async def payment_succeeded(
        self,
        order: ledger.OrderRow,
        captured: bool = False,
        card: str | None = None,
        who: str = "system",
        report: tuple[str, str] | None = None,
    ) -> ledger.OrderRow:
        """Money is authorised (or already captured): make the sale final in PostgreSQL, or void
        (refund) the payment if the seats are gone or the buyer — by email, or by `card`, the
        provider's fingerprint of the card that paid — would pass the event's per-buyer limit.
        A late payment whose seats are still free is honoured: the seats are claimed again
        first. The provider's `report` (id, kind) is recorded with the sale."""
        k = EventKeys(order.event_id)
        ga_section, quantity = order.ga
        lost = "refund" if captured else "void"
        policy = hold_policy(self.settings, 0)
        try:
            claimed = await self.holds.take(
                k, order.hold_id, order.visitor_id, order.queue_id, policy.late_claim_ms,
                order.seats, ga_section or None, quantity, claim=True,
            )  # fmt: skip
        except Exception as exc:  # Redis trouble: PostgreSQL alone decides
            log.warning("claim before confirmation failed: %s", exc, extra={"order_id": order.id})
            claimed = None
        if claimed is not None and claimed.status != "ok":
            voided = await ledger.change_status(
                self.pool, order.id, "voided", "seats_taken", action=lost, event_id=order.event_id
            )
            await self.run_actions(order.id)
            return voided or order
        outcome, row = await ledger.confirm(
            self.pool,
            order.id,
            self.signer.ticket_code,
            captured,
            card,
            who,
            report,
            event_id=order.event_id,
        )
        assert row is not None
        if outcome == "paid":
            await self._mark_sold(row)
            if self._capturing:
                # The capture is owed in PostgreSQL since the commit: this process's capture
                # turn runs it with every other one owed, after the answer (a crash leaves it
                # owed for the next turn, here or in the restarted process).
                self._owed.set()
                return row
        elif outcome == "buyer_limit":
            await self._release(row)  # the seats claimed for it go back
        elif outcome == "seats_taken":
            # Redis thought these seats were free and PostgreSQL says sold: Redis was wrong.
            # Recompute its seat state from the truth (live holds are kept).
            await self.inventory.release(k, order.hold_id)
            await self.inventory.rebuild(k, self.pool, force=True)
        await self.run_actions(order.id)
        return row

    async def _mark_sold(self, order: ledger.OrderRow) -> None:
        """Fast path after commit; the outbox consumer does the same if this is lost."""
        ga_section, quantity = order.ga
        try:
            await self.inventory.sell(
                EventKeys(order.event_id),
                order.id,
                order.hold_id,
                order.queue_id,
                order.seats,
                ga_section,
                quantity,
            )
        except Exception as exc:
            log.warning("marking seats sold in Redis failed: %s", exc, extra={"order_id": order.id})
        self.seat_maps.changed(order.event_id)

    async def payment_failed(self, order: ledger.OrderRow, reason: str) -> ledger.OrderRow | None:
        # Void the payment too: Stripe lets a customer retry a declined intent, and money
        # authorised later for this failed order would otherwise be held and never captured.
        failed = await ledger.change_status(
            self.pool, order.id, "failed", reason, action="void", event_id=order.event_id
        )
        if failed is not None:
            await self._release(failed)
            await self.run_actions(order.id)
        return failed

    async def payment_canceled(self, order: ledger.OrderRow) -> ledger.OrderRow | None:
        """The provider canceled the payment: nothing to void, the seats go back."""
        voided = await ledger.change_status(
            self.pool, order.id, "voided", "payment_canceled", event_id=order.event_id
        )
        if voided is not None:
            await self._release(voided)
        return voided

    async def _release(self, order: ledger.OrderRow) -> None:
        await self.inventory.release(EventKeys(order.event_id), order.hold_id)
        self.seat_maps.changed(order.event_id)

    # ---- reports from a provider ------------------------------------------------------------

    async def apply(self, event: PaymentEvent) -> str:
        """Apply one verified provider report, once (deduplicated by its id in PostgreSQL) and
        only to the order it belongs to; returns what was done (for logs and tests)."""
        seen, order = await ledger.report_target(
            self.pool, event.event_id, event.payment_id, event.order_id
        )
        if seen:
            return "duplicate"
        if order is None:
            # The order row may not be visible yet (the report raced our commit): retry later.
            raise Unavailable(
                "order not known yet; retry later", code="order_not_ready", retry_after=10
            )
        if not self._matches(event, order):
            log.error(
                "payment report does not match order",
                extra={"event": event.event_id, "order_id": order.id},
            )
            await ledger.record_stripe_event(
                self.pool, event.event_id, f"{event.provider}:{event.kind}"
            )
            return "mismatch"
        if order.payment_id is None:
            await ledger.set_payment(self.pool, order.id, event.payment_id, None)
        result = await self._apply(event, order)
        if result != "paid":  # a paid order recorded its report in the confirming transaction
            await ledger.record_stripe_event(
                self.pool, event.event_id, f"{event.provider}:{event.kind}"
            )
        return result

    def _matches(self, event: PaymentEvent, order: ledger.OrderRow) -> bool:
        provider = self.providers.of(order.provider)
        return (
            provider is not None
            and provider.name == event.provider
            and event.livemode == provider.livemode
            and event.amount == order.amount
            and event.currency == order.currency
            and (order.payment_id is None or order.payment_id == event.payment_id)
        )

    async def _apply(self, event: PaymentEvent, order: ledger.OrderRow) -> str:
        if event.kind in ("authorised", "captured"):
            if order.status == "paid":
                return "already_paid"
            if order.status != "pending":
                return f"ignored_{order.status}"
            # authorised: capture after commit. captured: money already taken, so a lost race
            # is refunded (the refund is a payment action like any other).
            card = (
                await self._card(order, event.payment_id)
                if event.card is msgspec.UNSET
                else event.card
            )
            report = (event.event_id, f"{event.provider}:{event.kind}")
            row = await self.payment_succeeded(
                order, event.kind == "captured", card, f"{event.provider}:{event.event_id}", report
            )
            return row.status
        if event.kind == "refunded":
            # Refunded at the provider (our own refund's report, or one made in its dashboard):
            # recorded once; the seats go back on sale.
            return await self.refunded(order, f"{event.provider}:{event.event_id}")
        if event.kind == "failed":
            failed = await self.payment_failed(order, "payment_failed")
            return "failed" if failed is not None else f"ignored_{order.status}"
        canceled = await self.payment_canceled(order)
        return "voided" if canceled is not None else f"ignored_{order.status}"

    async def _card(self, order: ledger.OrderRow, payment_id: str) -> str | None:
        """The fingerprint of the card that paid, asked of the order's provider before the sale
        is final when the report does not carry it. If the provider cannot say, nothing is
        decided: the report is answered 503 and the provider sends it again (the order expires,
        and its payment is voided, if it never can)."""
        provider = self.providers.of(order.provider)
        if provider is None:
            return None  # _matches() refused reports of providers this server lacks
        try:
            return await provider.card_fingerprint(payment_id)
        except PaymentError as exc:
            log.warning("card fingerprint unavailable: %s", exc, extra={"order_id": order.id})
            raise Unavailable(
                "the payment's card could not be read from the provider; retry later",
                code="provider_unavailable",
                retry_after=10,
            ) from None

    # ---- background duties (safe to run in every process) -----------------------------------

    async def orders_step(self) -> float:
        await self.expire_orders()
        await self.run_actions()
        return 5.0

    async def expire_orders(self) -> int:
        expired = await ledger.expire_due(self.pool, hold_policy(self.settings, 0).order_grace)
        for order in expired:
            await self._release(order)
        if expired:
            await self.run_actions()
        return len(expired)

    async def run_actions(self, order_id: str | None = None) -> int:
        """Capture, void or refund what PostgreSQL says is owed, at the order's own provider:
        for one order (waiting for a process already running it), or a batch of all (background
        loops; idempotency keys make a repeat harmless). Returns how many were done."""
        return (await self._run_due(order_id))[1]

    async def _run_due(self, order_id: str | None = None) -> tuple[int, int]:
        return await ledger.run_due_actions(
            self.pool, self._run_action, CAPTURE_BATCH, order_id=order_id
        )

    async def captures_step(self) -> float:
        """The capture queue, batched: woken when a confirmation commits a capture, one turn
        claims every capture owed (50 at a time), runs them together and records them in one
        statement; the next turn starts CAPTURE_GATHER_S later at the earliest, so under load
        the captures of many confirmations share a claim and a record. The queue is
        PostgreSQL's payment_actions: a capture exists only once its sale is committed, runs
        once (claimed under a row lock), and survives a crash (orders_step, or the first turn
        of a restarted process, runs it)."""
        self._capturing = True
        await self._owed.wait()
        self._owed.clear()
        while (await self._run_due()) == (CAPTURE_BATCH, CAPTURE_BATCH):
            pass  # a full batch, all done: more may be waiting
        return CAPTURE_GATHER_S

    async def _run_action(self, action: ledger.PaymentAction) -> str | None:
        if action.payment_id is None:
            return None  # no payment was ever made (dev orders): nothing is owed
        provider = self.providers.of(action.provider)
        if provider is None:
            return f"provider {action.provider!r} is not configured on this server"
        try:
            if action.action == "capture":
                await provider.capture(action.payment_id, action.order_id)
            elif action.action == "refund":
                await provider.refund(action.payment_id, action.order_id)
            else:
                await provider.void(action.payment_id, action.order_id)
        except PaymentError as exc:
            return str(exc)
        return None
