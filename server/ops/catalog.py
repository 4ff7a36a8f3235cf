"""Events as ops create them and as fans see them."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta

from server.booking.checkins import CheckIns
from server.booking.inventory import Inventory
from server.core.clock import now_ms
from server.core.errors import Conflict, Invalid
from server.core.keys import EventKeys
from server.core.messages import Event, EventCreate, EventSettings, SectionOut, Stats
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


def check_time(field: str, value: datetime) -> None:
    """A time the service can compute with: between EARLIEST and LATEST once in UTC."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise Invalid(f"{field}: must lie between the years 2000 and 2999")


def check_create(body: EventCreate) -> None:
    """Rules the schema cannot say; each failure names the field."""
    for field in ("starts_at", "sale_starts_at", "prequeue_opens_at"):
        value = getattr(body, field)
        if value is not None:
            check_time(field, value)
    seen: set[str] = set()
    assigned = 0
    for i, s in enumerate(body.sections):
        where = f"sections[{i}]"
        if s.id in seen:
            raise Invalid(f"{where}.id: duplicate section id {s.id!r}")
        seen.add(s.id)
        seated = s.rows is not None or s.seats_per_row is not None
        if seated and (s.rows is None or s.seats_per_row is None):
            raise Invalid(f"{where}: rows and seats_per_row go together")
        if seated == (s.capacity is not None):
            raise Invalid(f"{where}: give either rows and seats_per_row, or capacity")
        seats = (s.rows or 0) * (s.seats_per_row or 0)
        if seats > MAX_ASSIGNED_SEATS_PER_SECTION:
            raise Invalid(
                f"{where}: at most {MAX_ASSIGNED_SEATS_PER_SECTION} assigned seats per section"
            )
        assigned += seats
    if assigned > MAX_ASSIGNED_SEATS_PER_EVENT:
        raise Invalid(
            f"sections: at most {MAX_ASSIGNED_SEATS_PER_EVENT} assigned seats per event "
            f"({assigned} asked); use standing sections (capacity) beyond that",
            code="too_many_seats",
        )
    if body.sale_starts_at >= body.starts_at:
        raise Invalid("sale_starts_at: the sale must start before the event")
    if body.prequeue_opens_at is not None and body.prequeue_opens_at > body.sale_starts_at:
        raise Invalid("prequeue_opens_at: the pre-queue must open before the sale starts")


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
    )


async def stats(room: Room, inventory: Inventory, checkins: CheckIns, ev: db.EventRow) -> Stats:
    k = EventKeys(ev.id)
    seats = await inventory.snapshot(k)
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
        seats_held=len(seats.held) + sum(seats.ga_held.values()),
        seats_sold=len(seats.sold) + sum(seats.ga_sold.values()),
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
