"""Orders, the fan's side: checkout turns a live hold into a pending order (and a payment intent
at the order's provider), the fan reads it back, and the dev provider's test cards pay it."""

from __future__ import annotations

import hmac
import logging
from typing import cast
from urllib.parse import quote

from server.booking import ledger
from server.booking.holds import buyer_limit_error, hold_policy
from server.booking.inventory import HoldRecord, Inventory
from server.booking.settlement import Settlement
from server.booking.tickets import ticket_svg
from server.core import rules
from server.core.clock import from_ms, now_ms
from server.core.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    PaymentDeclined,
    Unavailable,
)
from server.core.ids import check_order_id, parse_hold_id
from server.core.keys import EventKeys
from server.core.messages import CheckoutRequest, Order, Payment, PayRequest, Ticket
from server.core.settings import Settings
from server.core.tokens import new_id
from server.payments import PaymentError, ProviderName
from server.payments.dev import card_outcome
from server.payments.registry import Providers
from server.store import db
from server.store.events import EventCache

log = logging.getLogger("boxoffice.orders")


class Orders:
    def __init__(
        self,
        settings: Settings,
        cache: EventCache,
        inventory: Inventory,
        pool: db.Pool,
        providers: Providers,
        settlement: Settlement,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.inventory = inventory
        self.pool = pool
        self.providers = providers
        self.settlement = settlement

    async def checkout(
        self, hold_id: str, visitor_id: str, body: CheckoutRequest, lang: str | None = None
    ) -> Order:
        """The hold's order (created once), in the fan's language `lang` for its mails."""
        event_id = parse_hold_id(hold_id)
        ev = await self.cache.require(event_id)
        k = EventKeys(ev.id)
        hold = await self.inventory.read_hold(k, hold_id)
        if hold is None or hold.expires_ms <= now_ms():
            existing = await self._order_for_hold(hold_id)
            if existing is not None and existing.visitor_id == visitor_id:
                return self.present(existing)
            raise Gone("this hold has expired; pick your seats again", code="hold_expired")
        if hold.visitor_id != visitor_id:
            raise Forbidden("this hold belongs to another visitor")
        policy = hold_policy(self.settings, ev.hold_minutes)
        expires = await self.inventory.extend(k, hold_id, policy.checkout_ms)
        if not expires:
            raise Gone("this hold has expired; pick your seats again", code="hold_expired")
        prices = {s.id: s.price for s in ev.sections}
        lines = order_lines(hold, prices)
        # The buyer the email names, whichever visitor or device pays: checked here so the fan
        # is told before paying; PostgreSQL decides for good when the payment is confirmed.
        limit = rules.buyer_limit(ev.max_tickets_per_buyer, ev.max_seats_per_order)
        buyer = rules.buyer_email(body.email)
        bought = await ledger.tickets_bought(self.pool, ev.id, buyer=buyer)
        if rules.over_buyer_limit(bought, sum(line.quantity for line in lines), limit):
            raise buyer_limit_error(limit, bought)
        provider = self.providers.current
        order, _ = await ledger.create_order(
            self.pool,
            order_id=new_id(),
            event_id=ev.id,
            hold_id=hold_id,
            visitor_id=visitor_id,
            queue_id=hold.queue_id,
            email=body.email,
            amount=sum(line.price * line.quantity for line in lines),
            currency=ev.currency,
            provider=provider.name,
            expires_at=from_ms(expires),
            lines=lines,
            lang=lang,
        )
        if order.payment_id is None and order.status == "pending":
            order = await self._create_intent(order)
        return self.present(order)

    async def _order_for_hold(self, hold_id: str) -> ledger.OrderRow | None:
        order_id = await self.pool.fetchval("SELECT id FROM orders WHERE hold_id = $1", hold_id)
        return None if order_id is None else await ledger.get_order(self.pool, order_id)

    async def _create_intent(self, order: ledger.OrderRow) -> ledger.OrderRow:
        provider = self.providers.of(order.provider)
        if provider is None:
            raise Unavailable("this order's payment provider is not configured", retry_after=60)
        try:
            intent = await provider.create(
                order_id=order.id,
                hold_id=order.hold_id,
                event_id=order.event_id,
                amount=order.amount,
                currency=order.currency,
            )
        except PaymentError as exc:
            log.warning("payment provider failed: %s", exc, extra={"order_id": order.id})
            raise Unavailable("the payment provider is unavailable; retry", retry_after=5) from None
        if intent is None:
            return order  # nothing to create at this provider (dev): the order is as it was
        await ledger.set_payment(self.pool, order.id, intent.id, intent.client_secret)
        refreshed = await ledger.get_order(self.pool, order.id)
        assert refreshed is not None
        return refreshed

    async def order(self, order_id: str, visitor_id: str, key: str | None = None) -> Order:
        return self.present(await self.readable(order_id, visitor_id, key))

    async def ticket_svg(
        self, order_id: str, visitor_id: str, number: str, key: str | None = None
    ) -> bytes:
        """The QR code of one ticket of a paid order of this visitor (or of the key's holder),
        as SVG."""
        order = await self.readable(order_id, visitor_id, key)
        if order.status != "paid":
            raise Conflict(f"this order is {order.status}", code="order_not_paid")
        wanted = int(number) if number.isdigit() and len(number) <= 6 else -1
        for ticket in order.tickets:
            if ticket.number == wanted:
                return ticket_svg(ticket.code)
        raise NotFound("no such ticket in this order", code="ticket_not_found")

    async def readable(self, order_id: str, visitor_id: str, key: str | None) -> ledger.OrderRow:
        """The order for whoever holds its link's key (any device, no cookie needed), else for
        its own visitor only. A wrong key is refused even to the owner's cookie."""
        if key is None:
            return await self.own(order_id, visitor_id)
        order = await self._find(order_id)
        if not key_matches(order.order_key, key):
            raise Forbidden("this link's key does not open this order", code="wrong_order_key")
        return order

    async def mine(self, event_id: str, visitor_id: str) -> list[Order]:
        """This visitor's paid orders of an event (the event page shows their links)."""
        ev = await self.cache.require(event_id)
        rows = await ledger.paid_orders_of_visitor(self.pool, ev.id, visitor_id)
        return [self.present(o) for o in rows]

    async def _find(self, order_id: str) -> ledger.OrderRow:
        order = await ledger.get_order(self.pool, check_order_id(order_id))
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        return order

    async def own(self, order_id: str, visitor_id: str) -> ledger.OrderRow:
        """One of this visitor's orders; NotFound or Forbidden otherwise."""
        order = await self._find(order_id)
        if order.visitor_id != visitor_id:
            raise Forbidden("this order belongs to another visitor")
        return order

    async def pay_dev(self, order_id: str, visitor_id: str, body: PayRequest) -> Order:
        """The dev provider's payment: a test card decides, no money moves."""
        if self.providers.of("dev") is None:
            raise Conflict("payments go through Stripe on this server", code="wrong_provider")
        order = await self.own(order_id, visitor_id)
        if order.provider != "dev":
            raise Conflict("this order is paid through Stripe", code="wrong_provider")
        if order.status == "paid":
            return self.present(order)
        if order.status != "pending":
            raise Conflict(f"this order is {order.status}", code=f"order_{order.status}")
        outcome = card_outcome(body.card)
        if outcome == "unknown":
            raise Invalid(
                "use test card 4242424242424242 (approved) or 4000000000000002 (declined)",
                code="unknown_card",
            )
        if outcome == "declined":
            await self.settlement.payment_failed(order, "card_declined")
            raise PaymentDeclined("the card was declined; your seats were released")
        settled = await self.settlement.payment_succeeded(order)
        if settled.status == "voided" and settled.status_reason == "buyer_limit":
            ev = await self.cache.require(order.event_id)
            limit = rules.buyer_limit(ev.max_tickets_per_buyer, ev.max_seats_per_order)
            bought = await ledger.tickets_bought(self.pool, ev.id, buyer=settled.buyer)
            raise buyer_limit_error(limit, bought)
        return self.present(settled)

    def present(self, order: ledger.OrderRow) -> Order:
        ga_section, quantity = order.ga
        payment = Payment(
            provider=cast(ProviderName, order.provider),
            client_secret=order.client_secret if order.status == "pending" else None,
            publishable_key=self.settings.stripe_publishable_key or None,
        )
        return Order(
            order_id=order.id,
            event_id=order.event_id,
            hold_id=order.hold_id,
            status=order.status,  # type: ignore[arg-type]
            amount=order.amount,
            currency=order.currency,
            seats=order.seats,
            email=order.email,
            expires_at=order.expires_at,
            payment=payment,
            tickets=[
                Ticket(t.code, t.section_id, t.seat_id, t.number, t.checked_in_at)
                for t in order.tickets
            ],
            section=ga_section or None,
            quantity=quantity or None,
            status_reason=order.status_reason,
            order_key=order.order_key,
            order_url=order_url(order.id, order.order_key),
        )


def order_url(order_id: str, key: str | None) -> str | None:
    """The path of the fan's page of an order, opened from any device with its key."""
    return None if key is None else f"/orders/{quote(order_id, safe='')}?key={quote(key, safe='')}"


def key_matches(stored: str | None, given: str) -> bool:
    """Constant-time comparison of bytes; an order without a key (not paid) opens with none."""
    if stored is None or len(given) > 200:
        return False
    return hmac.compare_digest(stored.encode(), given.encode("utf-8", "surrogatepass"))


def order_lines(hold: HoldRecord, prices: dict[str, int]) -> list[ledger.OrderLine]:
    lines = [
        ledger.OrderLine(seat.split("-")[0], seat, 1, prices[seat.split("-")[0]])
        for seat in hold.seats
    ]
    lines += [ledger.OrderLine(s, None, q, prices[s]) for s, q in hold.ga.items() if q > 0]
    return lines
