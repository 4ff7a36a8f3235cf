"""Holds: an admitted visitor's all-or-nothing claim on seats (queue/hold.lua), checked against
the event's layout first, rate-limited per visitor, released on request."""

from __future__ import annotations

from server.booking import best_seats, ledger
from server.booking.inventory import HoldResult, Inventory
from server.booking.seat_map import SeatMaps
from server.core import rules
from server.core.clock import from_ms, now_ms
from server.core.coalesce import Coalesced
from server.core.errors import (
    DATABASE_DOWN,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    RateLimited,
    Unavailable,
)
from server.core.ids import parse_hold_id
from server.core.keys import EventKeys
from server.core.messages import BestSeats, BestSeatsRequest, Hold, HoldRequest
from server.core.settings import Settings
from server.core.tokens import AccessClaims, Signer, TokenError, new_id
from server.store import db
from server.store.events import EventCache

HOLD_ATTEMPTS_PER_WINDOW = 10
HOLD_WINDOW_MS = 10_000


def hold_policy(settings: Settings, hold_minutes: int) -> rules.HoldPolicy:
    """The hold policy of an event (its hold length) on this deployment (checkout, late pay)."""
    return rules.HoldPolicy.from_minutes(
        hold_minutes, settings.checkout_minutes, settings.late_payment_minutes
    )


class Holds:
    def __init__(
        self,
        settings: Settings,
        cache: EventCache,
        inventory: Inventory,
        pool: db.Pool,
        signer: Signer,
        seat_maps: SeatMaps,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.inventory = inventory
        self.pool = pool
        self.signer = signer
        self.seat_maps = seat_maps
        # the paid tickets of the visitors holding in one loop turn: one query for all of them
        self._bought = Coalesced(self._tickets_bought, 0)

    def access(self, token: str | None, event_id: str, visitor_id: str) -> AccessClaims:
        """The claims of an admitted visitor's access token for this event; Forbidden if none."""
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

    async def hold(self, event_id: str, claims: AccessClaims, body: HoldRequest) -> Hold:
        ev = await self.cache.require(event_id)
        seats, section, quantity = check_hold_request(ev, body)
        # The visitor's own paid orders count here (its email is not known before checkout):
        # a fan who bought their share is told now, not after choosing seats and paying.
        # With PostgreSQL away holds go on (Redis holds the seats); the limit is still decided
        # where it is final, at confirmation, under the buyer's lock.
        limit = rules.buyer_limit(ev.max_tickets_per_buyer, ev.max_seats_per_order)
        try:
            bought = await self._bought.get((ev.id, claims.v))
        except DATABASE_DOWN:
            bought = 0
        if rules.over_buyer_limit(bought, len(seats) + quantity, limit):
            raise buyer_limit_error(limit, bought)
        if ev.closed:
            raise Conflict("the sale is closed", code="sale_closed")
        k = EventKeys(ev.id)
        hold_id = f"{ev.id}.{new_id()}"
        policy = hold_policy(self.settings, ev.hold_minutes)
        # the attempt is counted by the hold script itself: one Redis call a hold
        result = await self.take(
            k, hold_id, claims.v, claims.q, policy.hold_ms, seats, section, quantity,
            attempts=(HOLD_ATTEMPTS_PER_WINDOW, HOLD_WINDOW_MS),
        )  # fmt: skip
        if result.status == "rate_limited":
            raise RateLimited(
                "too many hold attempts; wait a moment",
                retry_after=max(1, result.reset_ms // 1000),
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
        self.seat_maps.changed(ev.id)
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
            server_time=from_ms(now_ms()),
        )

    async def _tickets_bought(self, asked: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
        by_event: dict[str, list[str]] = {}
        for event_id, visitor in asked:
            by_event.setdefault(event_id, []).append(visitor)
        found: dict[tuple[str, str], int] = {}
        for event_id, visitors in by_event.items():
            counts = await ledger.visitors_tickets_bought(self.pool, event_id, visitors)
            found.update(((event_id, v), n) for v, n in counts.items())
        return found

    async def best(self, event_id: str, claims: AccessClaims, body: BestSeatsRequest) -> BestSeats:
        """The best adjacent free seats of a section for this admitted visitor (a suggestion it
        then holds), rate-limited like holds."""
        ev = await self.cache.require(event_id)
        allowed, reset_ms = await self.inventory.allow(
            EventKeys(ev.id).rate("best", claims.v), HOLD_ATTEMPTS_PER_WINDOW, HOLD_WINDOW_MS
        )
        if not allowed:
            raise RateLimited(
                "too many seat searches; wait a moment", retry_after=max(1, reset_ms // 1000)
            )
        return best_seats.suggest(ev, await self.seat_maps.get(ev.id), body)

    async def take(
        self,
        k: EventKeys,
        hold_id: str,
        visitor_id: str,
        queue_id: str,
        hold_ms: int,
        seats: list[str],
        section: str | None,
        quantity: int,
        claim: bool = False,
        attempts: tuple[int, int] | None = None,
    ) -> HoldResult:
        """Run the hold script, rebuilding seat state from PostgreSQL once if Redis lost it.
        `claim` takes the seats again for a late payment (no admitted session needed);
        `attempts` see Inventory.hold."""
        for _ in range(2):
            result = await self.inventory.hold(
                k, hold_id, visitor_id, queue_id, hold_ms, seats, section or "", quantity,
                claim=claim, attempts=attempts,
            )  # fmt: skip
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
        self.seat_maps.changed(k.event_id)


def buyer_limit_error(limit: int, bought: int) -> Conflict:
    return Conflict(
        f"at most {limit} tickets per buyer for this event; {bought} already bought",
        code="buyer_limit",
        extra={"limit": limit, "bought": bought},
    )


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
            raise too_many(ev.max_seats_per_order, "per order")
        return [], body.section, body.quantity
    if not seats:
        raise Invalid("ask for at least one seat", code="bad_hold")
    if len(set(seats)) != len(seats):
        raise Invalid("a seat appears twice in the request", code="duplicate_seats")
    if len(seats) > ev.max_seats_per_order:
        raise too_many(ev.max_seats_per_order, "seats per order")
    unknown = [s for s in seats if not _seat_exists(s, sections)]
    if unknown:
        raise Invalid("no such seats at this event", code="unknown_seats", extra={"seats": unknown})
    return seats, None, 0


def too_many(limit: int, what: str) -> Invalid:
    return Invalid(f"at most {limit} {what}", code="too_many_seats", extra={"limit": limit})


def _seat_exists(seat: str, sections: dict[str, db.SectionRow]) -> bool:
    parsed = rules.parse_seat_id(seat)
    if parsed is None:
        return False
    section = sections.get(parsed[0])
    if section is None or section.rows is None or section.seats_per_row is None:
        return False
    return 1 <= parsed[1] <= section.rows and 1 <= parsed[2] <= section.seats_per_row
