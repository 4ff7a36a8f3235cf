"""Events as ops create them and as fans see them."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

import msgspec
from msgspec import UNSET

from server.booking.checkins import CheckIns
from server.booking.inventory import Inventory
from server.core import rules
from server.core.clock import now_ms
from server.core.errors import Conflict, FieldError, Invalid
from server.core.field_errors import label
from server.core.keys import EventKeys
from server.core.messages import (
    DoorEvent,
    Event,
    EventCreate,
    EventPatch,
    EventSettings,
    SeatAttributes,
    SeatsPatch,
    SectionIn,
    SectionOut,
    Stats,
)
from server.store import audit, db
from server.store.events import event_state
from server.waiting.room import Room

DEFAULT_PREQUEUE = timedelta(minutes=30)
# Times an event may name: beyond these, arithmetic on them (the default pre-queue opening,
# UTC conversion) overflows Python's datetime, and no sale is meant for them anyway.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)
# Assigned seats of one event: each one is a line of the public seat map (~70 bytes of JSON),
# built and sent to every fan who opens it; 50,000 seats make a ~3.5 MB map.
MAX_ASSIGNED_SEATS_PER_EVENT = 50_000
MAX_ASSIGNED_SEATS_PER_SECTION = 20_000


def _slug(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:30].strip("-") or "event"
    return f"{base}-{secrets.token_hex(3)}"


def time_problem(field: str, value: datetime) -> FieldError | None:
    """A time the service cannot compute with (outside EARLIEST..LATEST once in UTC), or None."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        return FieldError(field, f"{label(field)} must lie between the years 2000 and 2999")
    return None


def times_problems(
    starts_at: datetime, sale_starts_at: datetime, prequeue_opens_at: datetime | None
) -> list[FieldError]:
    """An event's three times: each computable, the pre-queue before the sale before the event."""
    times = {
        "starts_at": starts_at,
        "sale_starts_at": sale_starts_at,
        "prequeue_opens_at": prequeue_opens_at,
    }
    found = [p for f, v in times.items() if v is not None and (p := time_problem(f, v))]
    if found:
        return found
    if sale_starts_at >= starts_at:
        found.append(FieldError("sale_starts_at", "The sale must start before the event"))
    if prequeue_opens_at is not None and prequeue_opens_at > sale_starts_at:
        found.append(
            FieldError("prequeue_opens_at", "The pre-queue must open before the sale starts")
        )
    return found


def section_problems(i: int, s: SectionIn, seen: set[str]) -> list[FieldError]:
    """One section's rules: a unique id, seated (rows by seats per row) or standing (capacity),
    not too many seats, accessible seats only where there are seats."""
    where = f"sections[{i}]"
    found = []
    if s.id in seen:
        found.append(FieldError(f"{where}.id", f"Id {s.id} is already another section's"))
    seen.add(s.id)
    seated = s.rows is not None or s.seats_per_row is not None
    if seated and s.capacity is not None:
        found.append(
            FieldError(where, "Give rows and seats per row (seated) or a capacity (standing)")
        )
    elif seated and s.rows is None:
        found.append(FieldError(f"{where}.rows", "Rows is required with seats per row"))
    elif seated and s.seats_per_row is None:
        found.append(FieldError(f"{where}.seats_per_row", "Seats per row is required with rows"))
    elif not seated and s.capacity is None:
        found.append(FieldError(f"{where}.capacity", "Capacity is required (or rows and seats)"))
    if (s.rows or 0) * (s.seats_per_row or 0) > MAX_ASSIGNED_SEATS_PER_SECTION:
        found.append(
            FieldError(where, f"At most {MAX_ASSIGNED_SEATS_PER_SECTION} seats in one section")
        )
    if s.accessible and not seated:
        found.append(
            FieldError(f"{where}.accessible", "Only assigned seats (rows) can be accessible")
        )
    return found


def create_problems(body: EventCreate) -> list[FieldError]:
    """Rules the schema cannot say: every one that fails, each naming its field."""
    found = times_problems(body.starts_at, body.sale_starts_at, body.prequeue_opens_at)
    seen: set[str] = set()
    for i, s in enumerate(body.sections):
        found += section_problems(i, s, seen)
    return found


def check_create(body: EventCreate) -> None:
    """Refuse a body that breaks a rule the schema cannot say: every problem at once (422
    `invalid` with `fields`); accessible seats a section lacks are `unknown_seats`, too many
    assigned seats `too_many_seats`."""
    found = create_problems(body)
    if found:
        raise Invalid.of(found)
    for i, s in enumerate(body.sections):
        wrong = [
            x for x in s.accessible or () if not seat_in(x, s.id, s.rows or 0, s.seats_per_row or 0)
        ]
        if wrong:
            raise Invalid(
                f"sections[{i}].accessible: not seats of section {s.id}: {', '.join(wrong[:5])}",
                code="unknown_seats",
                extra={"seats": wrong},
            )
    assigned = sum((s.rows or 0) * (s.seats_per_row or 0) for s in body.sections)
    if assigned > MAX_ASSIGNED_SEATS_PER_EVENT:
        raise Invalid(
            f"sections: at most {MAX_ASSIGNED_SEATS_PER_EVENT} assigned seats per event "
            f"({assigned} asked); use standing sections (capacity) beyond that",
            code="too_many_seats",
        )


TIMES = ("starts_at", "sale_starts_at", "prequeue_opens_at")


def change_problems(ev: db.EventRow, patch: EventPatch, now: datetime) -> list[FieldError]:
    """A patch's times (its other fields the schema says all about): the event's three times
    after it still in order, and a sale start it moves still in the future."""
    after = {f: getattr(ev, f) if getattr(patch, f) is UNSET else getattr(patch, f) for f in TIMES}
    found = times_problems(**after)
    if patch.sale_starts_at is not UNSET and not found and patch.sale_starts_at <= now:
        found.append(FieldError("sale_starts_at", "The new sale start must be in the future"))
    return found


def check_change(ev: db.EventRow, patch: EventPatch, now: datetime | None = None) -> EventPatch:
    """The patch to apply: its times move only before the sale starts (else 409
    `sale_started`), every problem at once (422); a sale start moved without naming the
    pre-queue's opening moves that too, keeping its lead."""
    if all(getattr(patch, f) is UNSET for f in TIMES):
        return patch
    now = now or datetime.now(UTC)
    given = {f: getattr(patch, f) for f in TIMES if getattr(patch, f) is not UNSET}
    unusable = [p for f, v in given.items() if (p := time_problem(f, v)) is not None]
    if unusable:
        raise Invalid.of(unusable)
    if now >= ev.sale_starts_at:
        raise Conflict(
            "the sale has started: its times can no longer change (close it instead)",
            code="sale_started",
        )
    if patch.sale_starts_at is not UNSET and patch.prequeue_opens_at is UNSET:
        lead = ev.sale_starts_at - ev.prequeue_opens_at
        patch = msgspec.structs.replace(patch, prequeue_opens_at=patch.sale_starts_at - lead)
    found = change_problems(ev, patch, now)
    if found:
        raise Invalid.of(found)
    return patch


def seat_in(seat: str, section: str, rows: int, seats_per_row: int) -> bool:
    """Is `seat` (an id like A-3-17) one of the assigned seats of this section?"""
    parsed = rules.parse_seat_id(seat)
    return (
        parsed is not None
        and parsed[0] == section
        and 1 <= parsed[1] <= rows
        and 1 <= parsed[2] <= seats_per_row
    )


async def set_accessible(
    room: Room, ev: db.EventRow, body: SeatsPatch, who: str, step_up: bool = False
) -> SeatAttributes:
    """Mark seats accessible or not; the audit row (the event's accessible seats before and
    after) is written in the same transaction. Every process re-reads the event at once."""
    sections = {s.id: s for s in ev.sections}
    unknown = []
    for seat in body.seats:
        parsed = rules.parse_seat_id(seat)
        s = sections.get(parsed[0]) if parsed else None
        if s is None or not seat_in(seat, s.id, s.rows or 0, s.seats_per_row or 0):
            unknown.append(seat)
    if unknown:
        detail = f"no such assigned seats at this event: {', '.join(unknown[:5])}"
        field = FieldError("seats", detail[0].upper() + detail[1:])  # said next to the field
        raise Invalid(detail, code="unknown_seats", extra={"seats": unknown, "fields": [field]})
    async with room.pool.acquire() as conn, conn.transaction():
        before = await db.accessible_seats(conn, ev.id)
        changed = await db.set_accessible(conn, ev.id, sorted(set(body.seats)), body.accessible)
        after = await db.accessible_seats(conn, ev.id)
        if changed:
            await audit.record(
                conn, ev.id, who, "seats", {"accessible": (before, after)}, step_up=step_up
            )
    room.cache.invalidate(ev.id)
    await room.announce(ev.id)
    return SeatAttributes(ev.id, after, sorted(changed))


async def create(
    room: Room, body: EventCreate, who: str = audit.DEFAULT_WHO, step_up: bool = False
) -> db.EventRow:
    """Create an event; its audit row is written in the same transaction."""
    check_create(body)
    event_id = body.id or _slug(body.name)
    prequeue_opens_at = body.prequeue_opens_at or body.sale_starts_at - DEFAULT_PREQUEUE
    settings = EventSettings(
        rate_per_min=body.rate_per_min,
        max_active=body.max_active,
        session_minutes=body.session_minutes,
        hold_minutes=body.hold_minutes,
        max_seats_per_order=body.max_seats_per_order,
        paused=False,
        closed=False,
        sold_out=False,
        challenge=body.challenge,
        max_tickets_per_buyer=body.max_tickets_per_buyer,
        timezone=body.timezone,
    )
    await db.add_event_partitions(room.pool, event_id)
    async with room.pool.acquire() as conn, conn.transaction():
        if not await db.insert_event(conn, event_id, body, prequeue_opens_at):
            raise Conflict(f"an event with id {event_id!r} exists", code="event_exists")
        await audit.record(
            conn, event_id, who, "create", {"settings": (None, settings)}, step_up=step_up
        )
    ev = await room.cache.require(event_id)
    await room.mirror(ev)
    await room.announce(ev.id)
    return ev


def present(ev: db.EventRow, with_settings: bool = False, available: int | None = None) -> Event:
    settings = None
    if with_settings:
        settings = EventSettings(
            rate_per_min=ev.rate_per_min,
            max_active=ev.max_active,
            session_minutes=ev.session_minutes,
            hold_minutes=ev.hold_minutes,
            max_seats_per_order=ev.max_seats_per_order,
            paused=ev.paused,
            closed=ev.closed,
            sold_out=ev.sold_out,
            challenge=ev.challenge,
            max_tickets_per_buyer=ev.max_tickets_per_buyer,
            timezone=ev.timezone,
        )
    sections = [
        SectionOut(s.id, s.name, s.price, s.capacity, s.rows, s.seats_per_row) for s in ev.sections
    ]
    return Event(
        id=ev.id,
        name=ev.name,
        venue=ev.venue,
        starts_at=ev.starts_at,
        sale_starts_at=ev.sale_starts_at,
        prequeue_opens_at=ev.prequeue_opens_at,
        currency=ev.currency,
        state=event_state(ev),
        capacity=ev.capacity,
        available=ev.capacity if available is None else available,
        sections=sections,
        settings=settings,
        timezone=ev.timezone,
        max_seats_per_order=ev.max_seats_per_order,
        max_tickets_per_buyer=rules.buyer_limit(ev.max_tickets_per_buyer, ev.max_seats_per_order),
        description=ev.description,
        image_url=ev.image_url,
    )


def door_event(ev: db.EventRow) -> DoorEvent:
    """What the door picks an event by (a `checkin` token sees no more of it)."""
    return DoorEvent(ev.id, ev.name, ev.venue, ev.starts_at, ev.timezone)


async def stats(room: Room, inventory: Inventory, checkins: CheckIns, ev: db.EventRow) -> Stats:
    k = EventKeys(ev.id)
    [seats] = await inventory.counts([k])
    orders = await room.pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'paid') AS paid,"
        " count(*) FILTER (WHERE status = 'refunded') AS refunded FROM orders WHERE event_id = $1",
        ev.id,
    )
    assert orders is not None
    door = await checkins.counts(ev.id)
    async with room.redis.pipeline(transaction=False) as pipe:
        pipe.hmget(
            k.stats,
            ["joins", "admitted", "expired", "left", "challenges_issued", "challenges_solved",
             "challenges_failed"],
        )  # fmt: skip
        pipe.zcard(k.line)
        pipe.zcard(k.pre)
        pipe.zcount(k.active, f"({now_ms()}", "+inf")
        counters, waiting, prequeue, active = await pipe.execute()
    joins, admitted, expired, left, issued, solved, failed = (int(v or 0) for v in counters)
    return Stats(
        event_id=ev.id,
        state=event_state(ev),
        waiting=int(waiting),
        prequeue=int(prequeue),
        admitted_total=admitted,
        active=int(active),
        holds=seats.live_holds,
        seats_held=seats.held,
        seats_sold=seats.sold,
        orders_paid=int(orders["paid"]),
        rate_per_min=ev.rate_per_min,
        measured_rate_per_min=room.measured_rate(ev.id),
        max_active=ev.max_active,
        paused=ev.paused,
        joins=joins,
        expired=expired,
        left=left,
        challenges_issued=issued,
        challenges_solved=solved,
        challenges_failed=failed,
        orders_refunded=int(orders["refunded"]),
        checked_in=door.checked_in,
        tickets_expected=door.expected,
    )
