"""What a mail says about an order, as plain values: the link, the venue's time, the money,
one line per ticket. Pure functions of the order and event rows (table-tested)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from server.booking.ledger import OrderRow
from server.core import rules
from server.store.db import EventRow

# ISO 4217 currencies whose minor unit is not a hundredth.
MINOR_DIGITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


class TicketView(msgspec.Struct, frozen=True):
    number: int
    code: str
    place: str  # "Floor, row 3, seat 17" or "Standing (general admission)"


class OrderView(msgspec.Struct, frozen=True):
    order_id: str
    event_id: str
    event_name: str
    venue: str
    starts_at: datetime  # in the venue's time zone
    zone: str  # its IANA name
    link: str
    amount: str
    email: str
    tickets: list[TicketView]

    @property
    def when(self) -> str:
        return f"{self.starts_at:%A %d %B %Y, %H:%M} ({self.zone})"


def order_link(base: str, order: OrderRow) -> str:
    """The fan's link to an order. Orders on any device gives each paid order an unguessable
    `order_key`; with it the link opens the order's own page (`/orders/{id}?key=…`) anywhere.
    An order row without a key (not paid yet) links to the event page."""
    if order.order_key:
        return f"{base}/orders/{quote(order.id, safe='')}?key={quote(order.order_key, safe='')}"
    return f"{base}/e/{quote(order.event_id, safe='')}"


def venue_zone(event: EventRow) -> ZoneInfo:
    """The event's time zone: its `timezone` (an IANA name, added to events by the contract's
    "Events" section) or UTC when the row has none or an unknown one."""
    name = getattr(event, "timezone", None)
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def money(amount: int, currency: str) -> str:
    """An amount in minor units as text: money(5000, "EUR") == "50.00 EUR"."""
    digits = MINOR_DIGITS.get(currency, 2)
    if digits == 0:
        return f"{amount} {currency}"
    whole, part = divmod(amount, 10**digits)
    return f"{whole}.{part:0{digits}d} {currency}"


def place(event: EventRow, section_id: str, seat_id: str | None) -> str:
    names = {s.id: s.name for s in event.sections}
    section = names.get(section_id, section_id)
    if seat_id is None:
        return f"{section} (general admission)"
    parsed = rules.parse_seat_id(seat_id)
    if parsed is None:
        return f"{section}, seat {seat_id}"
    _, row, seat = parsed
    return f"{section}, row {row}, seat {seat}"


def order_view(order: OrderRow, event: EventRow, base: str) -> OrderView:
    zone = venue_zone(event)
    return OrderView(
        order_id=order.id,
        event_id=event.id,
        event_name=event.name,
        venue=event.venue,
        starts_at=event.starts_at.astimezone(zone),
        zone=zone.key,
        link=order_link(base, order),
        amount=money(order.amount, order.currency),
        email=order.email,
        tickets=[
            TicketView(t.number, t.code, place(event, t.section_id, t.seat_id))
            for t in order.tickets
        ],
    )
