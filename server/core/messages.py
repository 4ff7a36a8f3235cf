"""Wire types: HTTP bodies and websocket messages, all msgspec Structs."""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from server.core import ids

# Every pattern is a full match (ids.schema_pattern); times are further bounded by
# server.ops.catalog.check_times, which the schema cannot say.
AwareTime = Annotated[datetime, Meta(tz=True, description="RFC 3339 time with offset")]
EventId = Annotated[
    str, Meta(pattern=ids.schema_pattern(ids.EVENT_ID_BODY), max_length=40, description="slug")
]
SectionId = Annotated[str, Meta(pattern=ids.schema_pattern(ids.SECTION_ID_BODY), max_length=8)]
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=ids.schema_pattern(ids.TEXT_BODY),
        description="one line of text, no control characters",
    ),
]
Currency = Annotated[str, Meta(pattern=ids.schema_pattern("[A-Z]{3}"), max_length=3)]
Amount = Annotated[int, Meta(ge=0, le=100_000_000)]
RatePerMin = Annotated[int, Meta(ge=0, le=1_000_000)]
MaxActive = Annotated[int, Meta(ge=1, le=10_000_000)]
Minutes = Annotated[int, Meta(ge=1, le=24 * 60)]
SeatsPerOrder = Annotated[int, Meta(ge=1, le=50)]
TicketsPerBuyer = Annotated[int, Meta(ge=1, le=200)]
Count = Annotated[int, Meta(ge=1, le=1000)]
Capacity = Annotated[int, Meta(ge=1, le=200_000)]
# An assigned seat's id as ops and fans send it: section-row-seat ("A-3-17"), one spelling.
SeatId = Annotated[
    str,
    Meta(
        pattern=ids.schema_pattern(ids.SEAT_ID_BODY),
        max_length=24,
        description="section-row-seat, e.g. A-3-17",
    ),
]
# Accessible seats named at once (in a section at creation, or in one admin call)
MAX_ACCESSIBLE_PER_CALL = 2000
Description = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=4000,
        pattern=ids.schema_pattern(ids.PARAGRAPHS_BODY),
        description="plain text for the event page; line breaks kept, no other control characters",
    ),
]
ImageUrl = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=500,
        pattern=ids.schema_pattern(ids.IMAGE_URL_BODY),
        description="the event page's image: an https URL, or a path on this site (/static/…)",
        examples=["https://images.example.com/spring-tour.jpg"],
    ),
]
TimeZone = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$",
        description="IANA time zone name, e.g. Europe/Berlin",
        examples=["Europe/Berlin"],
    ),
]


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def check_timezone(name: str) -> None:
    """A ValueError (a validation error while decoding) unless `name` is in the zone database."""
    if name not in _known_zones():
        raise ValueError(f"timezone: {name!r} is not a time zone name such as Europe/Berlin")


# ISO 4217 codes of the currencies in use (2025), the only ones an event may be priced in.
CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL
    GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW
    KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN
    NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK
    SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS
    VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG""".split()  # noqa: SIM905
)


def check_currency(code: str) -> None:
    """A ValueError (a validation error while decoding) unless `code` is a known ISO 4217 code."""
    if code not in CURRENCIES:
        raise ValueError(f"currency: {code!r} is not a known ISO 4217 code, such as EUR or USD")


ChallengePolicy = Literal["off", "adaptive", "always"]  # bot challenge (proof of work) at join
QueueState = Literal["prequeue", "waiting", "admitted", "sold_out", "closed", "expired"]
EventStateName = Literal["scheduled", "prequeue", "on_sale", "sold_out", "closed"]


# ---- events ----------------------------------------------------------------------------------


class SectionIn(Struct, forbid_unknown_fields=True, frozen=True):
    id: SectionId
    name: Name
    price: Amount
    rows: Count | None = None
    seats_per_row: Count | None = None
    capacity: Capacity | None = None
    # assigned seats of this section that are accessible (wheelchair spaces): ids like A-1-3
    accessible: Annotated[list[SeatId], Meta(max_length=MAX_ACCESSIBLE_PER_CALL)] | None = None


class EventCreate(Struct, forbid_unknown_fields=True, frozen=True):
    name: Name
    venue: Name
    starts_at: AwareTime
    sale_starts_at: AwareTime
    currency: Currency
    sections: Annotated[list[SectionIn], Meta(min_length=1, max_length=100)]
    id: EventId | None = None
    prequeue_opens_at: AwareTime | None = None
    rate_per_min: RatePerMin = 600
    max_active: MaxActive = 1000
    session_minutes: Minutes = 10
    hold_minutes: Minutes = 10
    max_seats_per_order: SeatsPerOrder = 6
    challenge: ChallengePolicy = "adaptive"
    max_tickets_per_buyer: TicketsPerBuyer | None = None  # None: max_seats_per_order
    timezone: TimeZone = "UTC"
    description: Description | None = None
    image_url: ImageUrl | None = None

    def __post_init__(self) -> None:
        check_currency(self.currency)
        check_timezone(self.timezone)


class EventPatch(Struct, forbid_unknown_fields=True, frozen=True):
    rate_per_min: RatePerMin | UnsetType = UNSET
    max_active: MaxActive | UnsetType = UNSET
    session_minutes: Minutes | UnsetType = UNSET
    hold_minutes: Minutes | UnsetType = UNSET
    max_seats_per_order: SeatsPerOrder | UnsetType = UNSET
    paused: bool | UnsetType = UNSET
    closed: bool | UnsetType = UNSET
    sold_out: bool | UnsetType = UNSET
    challenge: ChallengePolicy | UnsetType = UNSET
    max_tickets_per_buyer: TicketsPerBuyer | UnsetType | None = UNSET  # null: the default
    timezone: TimeZone | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET  # null: none
    image_url: ImageUrl | UnsetType | None = UNSET  # null: none
    # Before the sale starts (server.ops.catalog.check_change): edit, postpone.
    name: Name | UnsetType = UNSET
    venue: Name | UnsetType = UNSET
    starts_at: AwareTime | UnsetType = UNSET
    sale_starts_at: AwareTime | UnsetType = UNSET
    prequeue_opens_at: AwareTime | UnsetType = UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.timezone, UnsetType):
            check_timezone(self.timezone)


class SectionOut(Struct, frozen=True):
    id: str
    name: str
    price: int
    capacity: int
    rows: int | None = None
    seats_per_row: int | None = None


class EventSettings(Struct, frozen=True):
    rate_per_min: int
    max_active: int
    session_minutes: int
    hold_minutes: int
    max_seats_per_order: int
    paused: bool
    closed: bool
    sold_out: bool
    challenge: ChallengePolicy
    max_tickets_per_buyer: int | None = None  # None: max_seats_per_order
    timezone: str = "UTC"


class Event(Struct, frozen=True):
    id: str
    name: str
    venue: str
    starts_at: datetime
    sale_starts_at: datetime
    prequeue_opens_at: datetime
    currency: str
    state: EventStateName
    capacity: int
    available: int
    sections: list[SectionOut]
    settings: EventSettings | None = None
    timezone: str = "UTC"  # the venue's IANA time zone: fan pages show times in it
    # the most tickets one order may hold, and one fan (buyer) may buy in all: the seat page
    # shows and enforces the smaller
    max_seats_per_order: int | None = None
    max_tickets_per_buyer: int | None = None
    description: str | None = None  # the event page's text
    image_url: str | None = None  # the event page's image: https, or a path on this site


# ---- queue -----------------------------------------------------------------------------------


class JoinRequest(Struct, forbid_unknown_fields=True, frozen=True):
    """Optional body of a join: the bot-challenge solution (base64 payload of the widget)."""

    altcha: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None


class QueueStatus(Struct, frozen=True):
    queue_id: str | None  # null when the join was refused with the event's state
    event_id: str
    state: QueueState
    position: int | None = None
    eta_seconds: int | None = None
    access_token: str | None = None
    access_expires_at: datetime | None = None
    ticket: int | None = None
    rate_per_min: float | None = None
    # how long a waiting fan may be away (page asleep, offline) and keep the place
    return_window_seconds: int | None = None
    # the server's clock when it answered: the page's countdowns correct their clock with it
    server_time: datetime | None = None


class Stats(Struct, frozen=True):
    event_id: str
    state: EventStateName
    waiting: int
    prequeue: int
    admitted_total: int
    active: int
    holds: int
    seats_held: int
    seats_sold: int
    orders_paid: int
    rate_per_min: int
    measured_rate_per_min: float | None
    max_active: int
    paused: bool
    joins: int
    expired: int
    left: int
    challenges_issued: int = 0
    challenges_solved: int = 0
    challenges_failed: int = 0
    orders_refunded: int = 0
    checked_in: int = 0  # tickets admitted at the door
    tickets_expected: int = 0  # tickets of paid orders (refunded ones no longer count)


# ---- websocket -------------------------------------------------------------------------------


class StatusMsg(Struct, frozen=True, tag="status", tag_field="type"):
    """Exact place of one visitor: on connect, on reconnect and at a slow jittered cadence."""

    state: QueueState
    position: int | None
    eta_seconds: int | None
    rate_per_min: float | None
    ticket: int | None = None
    admitted_total: int = 0
    paused: bool = False
    server_time: datetime | None = None  # as in QueueStatus


class TickMsg(Struct, frozen=True, tag="tick", tag_field="type"):
    """One message for every waiting socket of an event, serialised once per broadcast.

    The browser estimates its position from the last StatusMsg and admitted_total."""

    state: EventStateName
    serving: int
    admitted_total: int
    waiting: int
    rate_per_min: float | None
    paused: bool


class AdmittedMsg(Struct, frozen=True, tag="admitted", tag_field="type"):
    access_token: str
    access_expires_at: datetime
    next_url: str
    server_time: datetime | None = None  # as in QueueStatus


class ClosedMsg(Struct, frozen=True, tag="closed", tag_field="type"):
    reason: Literal["sold_out", "ended", "expired"]


class PongMsg(Struct, frozen=True, tag="pong", tag_field="type"):
    pass


class ErrorMsg(Struct, frozen=True, tag="error", tag_field="type"):
    error: str
    detail: str


class PingMsg(Struct, frozen=True, tag="ping", tag_field="type"):
    pass


ClientMsg = PingMsg


# ---- pub/sub between processes -----------------------------------------------------------------


class AdmittedNews(Struct, frozen=True, tag="admitted", tag_field="type"):
    entries: list[tuple[str, str, int]]


class ChangedNews(Struct, frozen=True, tag="changed", tag_field="type"):
    event_id: str


# ---- booking ---------------------------------------------------------------------------------

SeatStatus = Literal["free", "held", "sold"]
OrderStatusName = Literal["pending", "paid", "expired", "failed", "voided", "refunded"]


class Seat(Struct, frozen=True, omit_defaults=True):
    id: str
    label: str
    price: int
    status: SeatStatus
    accessible: bool = False  # set by ops; on the wire only when true


class SeatRow(Struct, frozen=True):
    row: int
    seats: list[Seat]


class SeatSection(Struct, frozen=True):
    id: str
    name: str
    price: int
    kind: Literal["seated", "standing"]
    capacity: int
    available: int
    rows: list[SeatRow] | None = None


class SeatMap(Struct, frozen=True):
    event_id: str
    currency: str
    state: EventStateName
    available: int
    sections: list[SeatSection]
    # as in Event: live, so a changed limit reaches a page that is open
    max_seats_per_order: int | None = None
    max_tickets_per_buyer: int | None = None


class SeatsPatch(Struct, forbid_unknown_fields=True, frozen=True):
    """Ops: mark assigned seats accessible (true) or not (false)."""

    seats: Annotated[list[SeatId], Meta(min_length=1, max_length=MAX_ACCESSIBLE_PER_CALL)]
    accessible: bool


class SeatAttributes(Struct, frozen=True):
    event_id: str
    accessible: list[str]  # every accessible seat of the event, by section, row and seat
    changed: list[str]  # the seats this call changed


class BestSeatsRequest(Struct, forbid_unknown_fields=True, frozen=True):
    """A fan asks for the best `quantity` adjacent free seats of a seated section (only
    accessible seats when `accessible`)."""

    section: SectionId
    quantity: SeatsPerOrder
    accessible: bool = False


class BestSeats(Struct, frozen=True):
    event_id: str
    section: str
    seats: list[str]
    amount: int
    currency: str


class SeatStatusSection(Struct, frozen=True, omit_defaults=True):
    """One section in the compact seat map. Seated: `rows` by `seats_per_row`, and (in a full
    answer, absent in a delta) `status`, one letter per seat row by row ("f" free, "h" held, "s" sold) — seat
    (r, n) is letter (r - 1) * seats_per_row + (n - 1), its id `<section>-<r>-<n>`."""

    id: str
    kind: Literal["seated", "standing"]
    available: int
    rows: int | None = None
    seats_per_row: int | None = None
    status: str | None = None


class SeatStatusMap(Struct, frozen=True):
    """The seat map in a few bytes a seat, for live refresh (GET /api/events/{id}/seats/status).
    `version` names the seats' statuses; asked `?since=<version>` of an earlier answer, the
    answer is a delta: `since` echoes it, sections carry no `status`, and `changes` maps each
    seat whose status differs to its status now ({} when nothing changed). A `since` this
    process no longer knows gets a full answer (`since` and `changes` null)."""

    event_id: str
    state: EventStateName
    available: int
    version: str
    sections: list[SeatStatusSection]
    since: str | None = None
    changes: dict[str, SeatStatus] | None = None


class HoldRequest(Struct, forbid_unknown_fields=True, frozen=True):
    seats: Annotated[list[Annotated[str, Meta(max_length=40)]], Meta(max_length=50)] | None = None
    section: Annotated[str, Meta(max_length=8)] | None = None
    quantity: int | None = None


class Hold(Struct, frozen=True):
    hold_id: str
    event_id: str
    seats: list[str]
    expires_at: datetime
    amount: int
    currency: str
    section: str | None = None
    quantity: int | None = None
    replaced_hold_id: str | None = None
    server_time: datetime | None = None  # as in QueueStatus


Email = Annotated[str, Meta(pattern=ids.schema_pattern(ids.EMAIL_BODY), max_length=254)]


class CheckoutRequest(Struct, forbid_unknown_fields=True, frozen=True):
    email: Email


class PayRequest(Struct, forbid_unknown_fields=True, frozen=True):
    card: Annotated[str, Meta(max_length=32)]


class Payment(Struct, frozen=True):
    provider: Literal["dev", "stripe"]
    client_secret: str | None = None
    publishable_key: str | None = None


class Ticket(Struct, frozen=True):
    code: str
    section_id: str
    seat_id: str | None
    number: int = 0  # 1, 2, …: the QR image is /api/orders/{order_id}/tickets/{number}.svg
    checked_in_at: datetime | None = None


class Order(Struct, frozen=True):
    order_id: str
    event_id: str
    hold_id: str
    status: OrderStatusName
    amount: int
    currency: str
    seats: list[str]
    email: str
    expires_at: datetime
    payment: Payment
    tickets: list[Ticket]
    section: str | None = None
    quantity: int | None = None
    status_reason: str | None = None
    order_key: str | None = None  # paid (and refunded) orders: the secret of the order's link
    order_url: str | None = None  # the fan's page of the order, the key included


# ---- after the sale --------------------------------------------------------------------------

Reason = Annotated[
    str, Meta(pattern=ids.schema_pattern(ids.TEXT_BODY), min_length=1, max_length=500)
]
OrderId = Annotated[str, Meta(pattern=ids.schema_pattern(ids.URLSAFE_22), max_length=22)]


class RefundRequest(Struct, forbid_unknown_fields=True, frozen=True):
    reason: Reason | None = None


class CancelRequest(Struct, forbid_unknown_fields=True, frozen=True):
    order_ids: Annotated[list[OrderId], Meta(min_length=1, max_length=1000)]
    reason: Reason | None = None
    # The count a dry run gave: the cancel is refused (409 count_changed) if it differs now.
    expected_count: Annotated[int, Meta(ge=0)] | None = None


class BulkPlan(Struct):
    """A bulk cancel's dry run: `count` orders would be refunded."""

    count: int
    refundable: list[str] = []
    already_refunded: list[str] = []
    not_paid: list[str] = []
    not_found: list[str] = []


class RefusedOrder(Struct, frozen=True):
    order_id: str
    error: str
    detail: str


class BulkCancelResult(Struct):
    refunded: list[str] = []
    already_refunded: list[str] = []
    not_paid: list[str] = []
    not_found: list[str] = []
    refused: list[RefusedOrder] = []


class CheckinRequest(Struct, forbid_unknown_fields=True, frozen=True):
    code: Annotated[str, Meta(max_length=400)]


class Checkin(Struct, frozen=True):
    """A ticket admitted at the door (200). Refusals are errors with the same extra fields."""

    result: Literal["admitted"]
    seat: str | None  # the seat id; null for standing tickets
    order_id: str
    checked_in_at: datetime
    section: str
    number: int


class DoorEvent(Struct, frozen=True):
    """An event as the door sees it: what to pick it by, nothing of its sale."""

    id: str
    name: str
    venue: str
    starts_at: datetime
    timezone: str


class DoorCount(Struct, frozen=True):
    """The door's counter: tickets admitted, and tickets of paid orders."""

    event_id: str
    checked_in: int
    tickets_expected: int


class ResendRequest(Struct, forbid_unknown_fields=True, frozen=True):
    email: Email


class Accepted(Struct, frozen=True):
    accepted: bool = True


class ConfirmedMsg(Struct, frozen=True, tag="confirmed", tag_field="type"):
    order_id: str


class ConfirmedNews(Struct, frozen=True, tag="confirmed", tag_field="type"):
    queue_id: str
    order_id: str


ServerMsg = StatusMsg | TickMsg | AdmittedMsg | ClosedMsg | PongMsg | ErrorMsg | ConfirmedMsg
News = AdmittedNews | ChangedNews | ConfirmedNews

encoder = msgspec.json.Encoder()
client_decoder = msgspec.json.Decoder(ClientMsg)
news_decoder = msgspec.json.Decoder(News)
