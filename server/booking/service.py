"""Booking: seat map, holds, checkout, payment outcomes and orders. Redis is the fast path;
PostgreSQL (server.ledger) is the final arbiter of every sale."""

from __future__ import annotations

import io
import logging
import time
from datetime import timedelta

import segno
from aiohttp import web

from server.booking import ledger
from server.booking.inventory import HoldRecord, HoldResult, Inventory, SeatState
from server.core import rules
from server.core.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    PaymentDeclined,
    RateLimited,
    Unavailable,
)
from server.core.keys import EventKeys
from server.core.messages import (
    CheckoutRequest,
    EventPatch,
    Hold,
    HoldRequest,
    Order,
    Payment,
    PayRequest,
    Seat,
    SeatMap,
    SeatRow,
    SeatSection,
    Ticket,
)
from server.core.tokens import AccessClaims, Signer, TokenError, new_id
from server.payments import PaymentError, Provider
from server.payments.dev import card_outcome
from server.store import db
from server.waiting.room import EventCache, Room, event_state, from_ms, now_ms, parse_queue_id

log = logging.getLogger("boxoffice.booking")

SEAT_MAP_TTL_S = 1.0
HOLD_ATTEMPTS_PER_WINDOW = 10
HOLD_WINDOW_MS = 10_000


def parse_hold_id(hold_id: str) -> str:
    try:
        return parse_queue_id(hold_id)
    except Invalid:
        raise Invalid("malformed hold id", code="bad_hold_id") from None


class Booking:
    def __init__(
        self, room: Room, inventory: Inventory, provider: Provider, signer: Signer
    ) -> None:
        self.room = room
        self.settings = room.settings
        self.inventory = inventory
        self.provider = provider
        self.signer = signer
        self.pool: db.Pool = room.pool
        self.cache: EventCache = room.cache
        self._maps: dict[str, tuple[float, SeatMap]] = {}

    # ---- access -----------------------------------------------------------------------------

    def access(self, token: str | None, event_id: str, visitor_id: str) -> AccessClaims:
        if token is None:
            raise Forbidden("an access token from the waiting room is required", code="no_access")
        try:
            return self.signer.verify_access(
                token,
                event_id=event_id,
                visitor_id=visitor_id,
                now_ms=now_ms(),
                leeway_ms=self.settings.access_token_leeway_seconds * 1000,
            )
        except TokenError as exc:
            raise Forbidden(str(exc), code="bad_access") from None

    # ---- seat map ---------------------------------------------------------------------------

    async def seat_map(self, event_id: str) -> SeatMap:
        ev = await self.cache.require(event_id)
        hit = self._maps.get(ev.id)
        if hit is not None and time.monotonic() - hit[0] < SEAT_MAP_TTL_S:
            return hit[1]
        k = EventKeys(ev.id)
        await self.inventory.ensure(k, self.pool)
        state = await self.inventory.snapshot(k)
        seat_map = build_seat_map(ev, state)
        self._maps[ev.id] = (time.monotonic(), seat_map)
        return seat_map

    # ---- holds ------------------------------------------------------------------------------

    async def hold(self, event_id: str, claims: AccessClaims, body: HoldRequest) -> Hold:
        ev = await self.cache.require(event_id)
        seats, section, quantity = check_hold_request(ev, body)
        k = EventKeys(ev.id)
        allowed, reset_ms = await self.inventory.allow(
            k.rate("hold", claims.v), HOLD_ATTEMPTS_PER_WINDOW, HOLD_WINDOW_MS
        )
        if not allowed:
            raise RateLimited(
                "too many hold attempts; wait a moment", retry_after=max(1, reset_ms // 1000)
            )
        if ev.closed:
            raise Conflict("the sale is closed", code="sale_closed")
        hold_id = f"{ev.id}.{new_id()}"
        result = await self._hold(
            k, hold_id, claims, ev.hold_minutes * 60_000, seats, section, quantity
        )
        if result.status == "unavailable":
            raise Conflict(
                "some seats were just taken",
                code="seats_unavailable",
                extra={"seats": list(result.taken)},
            )
        if result.status == "ga_unavailable":
            raise Conflict(
                f"only {result.available} left in section {section}",
                code="seats_unavailable",
                extra={"seats": [], "section": section, "available": result.available},
            )
        if result.status == "no_session":
            raise Gone("your admitted session is over; rejoin the queue", code="session_over")
        self._maps.pop(ev.id, None)
        prices = {s.id: s.price for s in ev.sections}
        sections = [seat.split("-")[0] for seat in seats]
        return Hold(
            hold_id=hold_id,
            event_id=ev.id,
            seats=seats,
            expires_at=from_ms(result.expires_ms),
            amount=rules.hold_amount(sections, section, quantity, prices),
            currency=ev.currency,
            section=section,
            quantity=quantity or None,
            replaced_hold_id=result.replaced or None,
        )

    async def _hold(
        self,
        k: EventKeys,
        hold_id: str,
        claims: AccessClaims,
        hold_ms: int,
        seats: list[str],
        section: str | None,
        quantity: int,
        claim: bool = False,
    ) -> HoldResult:
        for _ in range(2):
            result = await self.inventory.hold(
                k, hold_id, claims.v, claims.q, hold_ms, seats, section or "", quantity, claim=claim
            )
            if result.status != "not_ready":
                return result
            await self.inventory.ensure(k, self.pool)
        raise Unavailable("seat state is being rebuilt; retry", retry_after=1)

    async def release(self, hold_id: str, visitor_id: str) -> None:
        k = EventKeys(parse_hold_id(hold_id))
        released = await self.inventory.release(k, hold_id, visitor_id)
        if released == -1:
            raise Forbidden("this hold belongs to another visitor")
        if released == 0:
            raise NotFound("no such hold (it may have expired)", code="hold_not_found")
        self._maps.pop(k.event_id, None)

    # ---- checkout and payment ---------------------------------------------------------------

    async def checkout(self, hold_id: str, visitor_id: str, body: CheckoutRequest) -> Order:
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
        expires = await self.inventory.extend(k, hold_id, self.settings.checkout_minutes * 60_000)
        if not expires:
            raise Gone("this hold has expired; pick your seats again", code="hold_expired")
        prices = {s.id: s.price for s in ev.sections}
        lines = order_lines(hold, prices)
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
            provider=self.provider.name,
            expires_at=from_ms(expires),
            lines=lines,
        )
        if order.provider != "dev" and order.payment_id is None and order.status == "pending":
            order = await self._create_intent(order)
        return self.present(order)

    async def _order_for_hold(self, hold_id: str) -> ledger.OrderRow | None:
        order_id = await self.pool.fetchval("SELECT id FROM orders WHERE hold_id = $1", hold_id)
        return None if order_id is None else await ledger.get_order(self.pool, order_id)

    async def _create_intent(self, order: ledger.OrderRow) -> ledger.OrderRow:
        try:
            intent = await self.provider.create(
                order_id=order.id,
                hold_id=order.hold_id,
                event_id=order.event_id,
                amount=order.amount,
                currency=order.currency,
            )
        except PaymentError as exc:
            log.warning("payment provider failed: %s", exc, extra={"order_id": order.id})
            raise Unavailable("the payment provider is unavailable; retry", retry_after=5) from None
        if intent is not None:
            await ledger.set_payment(self.pool, order.id, intent.id, intent.client_secret)
        refreshed = await ledger.get_order(self.pool, order.id)
        assert refreshed is not None
        return refreshed

    async def order(self, order_id: str, visitor_id: str) -> Order:
        return self.present(await self._own_order(order_id, visitor_id))

    async def ticket_svg(self, order_id: str, visitor_id: str, number: str) -> bytes:
        """The QR code of one ticket of a paid order of this visitor, as SVG."""
        order = await self._own_order(order_id, visitor_id)
        if order.status != "paid":
            raise Conflict(f"this order is {order.status}", code="order_not_paid")
        wanted = int(number) if number.isdigit() and len(number) <= 6 else -1
        for ticket in order.tickets:
            if ticket.number == wanted:
                return ticket_svg(ticket.code)
        raise NotFound("no such ticket in this order", code="ticket_not_found")

    async def _own_order(self, order_id: str, visitor_id: str) -> ledger.OrderRow:
        if len(order_id) > 64:
            raise NotFound("no such order", code="order_not_found")
        order = await ledger.get_order(self.pool, order_id)
        if order is None:
            raise NotFound("no such order", code="order_not_found")
        if order.visitor_id != visitor_id:
            raise Forbidden("this order belongs to another visitor")
        return order

    async def pay_dev(self, order_id: str, visitor_id: str, body: PayRequest) -> Order:
        order = await self._own_order(order_id, visitor_id)
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
            await self.payment_failed(order, "card_declined")
            raise PaymentDeclined("the card was declined; your seats were released")
        return self.present(await self.payment_succeeded(order))

    async def payment_succeeded(
        self, order: ledger.OrderRow, captured: bool = False
    ) -> ledger.OrderRow:
        """Money is authorised (or already captured): make the sale final in PostgreSQL, or void
        (refund) the payment if the seats are gone. A late payment whose seats are still free
        is honoured: the seats are claimed again first."""
        k = EventKeys(order.event_id)
        ga_section, quantity = order.ga
        claims = AccessClaims(order.event_id, order.visitor_id, order.queue_id, 0)
        late_ms = (self.settings.late_payment_minutes + 1) * 60_000
        lost = "refund" if captured else "void"
        try:
            claimed = await self._hold(
                k, order.hold_id, claims, late_ms, order.seats, ga_section or None, quantity,
                claim=True,
            )  # fmt: skip
        except Exception as exc:  # Redis trouble: PostgreSQL alone decides
            log.warning("claim before confirmation failed: %s", exc, extra={"order_id": order.id})
            claimed = None
        if claimed is not None and claimed.status != "ok":
            voided = await ledger.change_status(
                self.pool, order.id, "voided", "seats_taken", action=lost
            )
            await self.run_actions(order.id)
            return voided or order
        outcome, row = await ledger.confirm(self.pool, order.id, self.signer.ticket_code, captured)
        assert row is not None
        if outcome == "paid":
            await self._mark_sold(row)
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
        self._maps.pop(order.event_id, None)

    async def payment_failed(self, order: ledger.OrderRow, reason: str) -> ledger.OrderRow | None:
        # Void the payment too: Stripe lets a customer retry a declined intent, and money
        # authorised later for this failed order would otherwise be held and never captured.
        failed = await ledger.change_status(self.pool, order.id, "failed", reason, action="void")
        if failed is not None:
            await self.inventory.release(EventKeys(order.event_id), order.hold_id)
            self._maps.pop(order.event_id, None)
            await self.run_actions(order.id)
        return failed

    # ---- background duties (safe to run in every process) -----------------------------------

    async def expire_orders(self) -> int:
        grace = timedelta(minutes=self.settings.late_payment_minutes)
        expired = await ledger.expire_due(self.pool, grace)
        for order in expired:
            await self.inventory.release(EventKeys(order.event_id), order.hold_id)
        if expired:
            await self.run_actions()
        return len(expired)

    async def run_actions(self, order_id: str | None = None) -> int:
        """Capture, void or refund what PostgreSQL says is owed: for one order right after its
        commit, or for all (background loop; idempotency keys make a repeat harmless)."""
        done = 0
        for action in await ledger.due_actions(self.pool, order_id=order_id):
            error = None
            if action.payment_id is not None:
                try:
                    if action.action == "capture":
                        await self.provider.capture(action.payment_id, action.order_id)
                    elif action.action == "refund":
                        await self.provider.refund(action.payment_id, action.order_id)
                    else:
                        await self.provider.void(action.payment_id, action.order_id)
                except PaymentError as exc:
                    error = str(exc)
            await ledger.finish_action(self.pool, action.id, error)
            done += error is None
        return done

    async def check_sold_out(self, ev: db.EventRow) -> None:
        """Sold out once every seat and standing unit is sold: the room is told at once and
        refuses joins. While every seat left is held, admission pauses (holds may expire and
        give seats back, which resumes it)."""
        if ev.sold_out or ev.closed or not ev.capacity:
            return
        k = EventKeys(ev.id)
        state = await self.inventory.snapshot(k)
        sold = len(state.sold) + sum(state.ga_sold.values())
        held = len(state.held) + sum(state.ga_held.values())
        if sold >= ev.capacity:
            await self.room.change(
                ev.id, EventPatch(sold_out=True), who="system", action="sold_out"
            )
            return
        exhausted = int(sold + held >= ev.capacity)
        await self.room.redis.hset(k.cfg, "exhausted", exhausted)

    # ---- views ------------------------------------------------------------------------------

    def present(self, order: ledger.OrderRow) -> Order:
        ga_section, quantity = order.ga
        payment = Payment(
            provider="stripe" if order.provider == "stripe" else "dev",
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
            tickets=[Ticket(t.code, t.section_id, t.seat_id, t.number) for t in order.tickets],
            section=ga_section or None,
            quantity=quantity or None,
            status_reason=order.status_reason,
        )


# ---- pure helpers ----------------------------------------------------------------------------


def ticket_svg(code: str) -> bytes:
    buf = io.BytesIO()
    segno.make(code, error="m").save(buf, kind="svg", scale=4, border=2)
    return buf.getvalue()


def check_hold_request(ev: db.EventRow, body: HoldRequest) -> tuple[list[str], str | None, int]:
    """Validate a hold request against the event's layout: (seats, standing section, quantity)."""
    sections = {s.id: s for s in ev.sections}
    seats = body.seats or []
    if body.seats is not None and body.section is not None:
        raise Invalid("ask for either seats or a section and quantity, not both", code="bad_hold")
    if body.section is None and body.quantity is not None:
        raise Invalid("quantity needs a section", code="bad_hold")
    if body.section is not None:
        section = sections.get(body.section)
        if section is None or section.rows is not None:
            raise Invalid(f"no standing section {body.section!r}", code="unknown_section")
        if body.quantity is None or body.quantity < 1:
            raise Invalid("quantity must be at least 1", code="bad_quantity")
        if body.quantity > ev.max_seats_per_order:
            raise Invalid(f"at most {ev.max_seats_per_order} per order", code="too_many_seats")
        return [], body.section, body.quantity
    if not seats:
        raise Invalid("ask for at least one seat", code="bad_hold")
    if len(set(seats)) != len(seats):
        raise Invalid("a seat appears twice in the request", code="duplicate_seats")
    if len(seats) > ev.max_seats_per_order:
        raise Invalid(f"at most {ev.max_seats_per_order} seats per order", code="too_many_seats")
    unknown = [s for s in seats if not _seat_exists(s, sections)]
    if unknown:
        raise Invalid("no such seats at this event", code="unknown_seats", extra={"seats": unknown})
    return seats, None, 0


def _seat_exists(seat: str, sections: dict[str, db.SectionRow]) -> bool:
    parsed = rules.parse_seat_id(seat)
    if parsed is None:
        return False
    section = sections.get(parsed[0])
    if section is None or section.rows is None or section.seats_per_row is None:
        return False
    return 1 <= parsed[1] <= section.rows and 1 <= parsed[2] <= section.seats_per_row


def order_lines(hold: HoldRecord, prices: dict[str, int]) -> list[ledger.OrderLine]:
    lines = [
        ledger.OrderLine(seat.split("-")[0], seat, 1, prices[seat.split("-")[0]])
        for seat in hold.seats
    ]
    lines += [ledger.OrderLine(s, None, q, prices[s]) for s, q in hold.ga.items() if q > 0]
    return lines


def build_seat_map(ev: db.EventRow, state: SeatState) -> SeatMap:
    out = []
    total = 0
    for s in ev.sections:
        if s.rows is not None and s.seats_per_row is not None:
            rows = []
            free = 0
            for r in range(1, s.rows + 1):
                seats = []
                for n in range(1, s.seats_per_row + 1):
                    sid = rules.seat_id(s.id, r, n)
                    status = (
                        "sold" if sid in state.sold else "held" if sid in state.held else "free"
                    )
                    free += status == "free"
                    seats.append(Seat(sid, f"Row {r}, seat {n}", s.price, status))  # type: ignore[arg-type]
                rows.append(SeatRow(r, seats))
            out.append(SeatSection(s.id, s.name, s.price, "seated", s.capacity, free, rows))
            total += free
        else:
            left = s.capacity - state.ga_sold.get(s.id, 0) - state.ga_held.get(s.id, 0)
            out.append(SeatSection(s.id, s.name, s.price, "standing", s.capacity, max(0, left)))
            total += max(0, left)
    return SeatMap(ev.id, ev.currency, event_state(ev), total, out)


BOOKING = web.AppKey("booking", Booking)
