"""The formats of the ids and strings that arrive from outside, and their one parser each.

Every pattern here is written twice over: as a Python regex that is always full-matched, and as
the JSON Schema pattern of the wire types (server.core.messages, exported by the OpenAPI
document). msgspec applies a schema pattern with re.search and JSON Schema uses ECMA-262 regexes,
where `^…$` alone would let Python accept a trailing newline; `schema_pattern()` adds a `(?!\\n)`
lookahead after `$`, which both dialects read the same way and which makes the search a full
match."""

from __future__ import annotations

import re

from server.core.errors import Invalid, NotFound

EVENT_ID_BODY = r"[a-z0-9][a-z0-9-]{0,39}"
URLSAFE_22 = r"[A-Za-z0-9_-]{22}"  # server.core.tokens.new_id(): 128 random bits, base64url
SECTION_ID_BODY = r"[A-Za-z0-9]{1,8}"
# An assigned seat: section-row-seat, numbers without leading zeros (server.core.rules.seat_id)
SEAT_ID_BODY = r"[A-Za-z0-9]{1,8}-[1-9][0-9]{0,3}-[1-9][0-9]{0,3}"
# A line of text a person typed: no control characters (NUL, newlines, escapes) at all.
TEXT_BODY = r"[^\x00-\x1f\x7f]*"
# several lines of text: tab, line feed and carriage return are the only control characters
PARAGRAPHS_BODY = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*"
# https on a host name, or a path on this site ("/x", never "//x" or "/\x", which browsers
# read as another host); no space, quote, angle bracket or backslash anywhere
_URL_CHARS = r"[^\s\x00-\x1f\x7f\"'<>\\]"
IMAGE_URL_BODY = (
    rf"https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{{1,5}})?(?:/{_URL_CHARS}*)?"
    rf"|/(?![/\\]){_URL_CHARS}*"
)
EMAIL_BODY = r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,255}\.[^@\s\x00-\x1f\x7f]{2,63}"

EVENT_ID = re.compile(EVENT_ID_BODY)
# <event id>.<22 url-safe characters>: queue ids and hold ids name their event.
PLACE_ID = re.compile(rf"({EVENT_ID_BODY})\.({URLSAFE_22})")
ORDER_ID = re.compile(URLSAFE_22)
PLACE_ID_BODY = rf"{EVENT_ID_BODY}\.{URLSAFE_22}"
TICKET_NUMBER_BODY = r"[1-9][0-9]{0,5}"


def schema_pattern(body: str) -> str:
    """The JSON Schema / msgspec pattern that matches exactly the strings `body` full-matches."""
    return rf"^(?:{body})$(?!\n)"


def is_event_id(value: str) -> bool:
    return EVENT_ID.fullmatch(value) is not None


def check_event_id(event_id: str) -> str:
    if not is_event_id(event_id):
        raise NotFound("no such event", code="event_not_found")
    return event_id


def parse_queue_id(queue_id: str) -> str:
    """The event id a queue id belongs to; Invalid if it is not a queue id at all."""
    match = PLACE_ID.fullmatch(queue_id)
    if not match:
        raise Invalid("malformed queue id", code="bad_queue_id")
    return match.group(1)


def parse_hold_id(hold_id: str) -> str:
    """The event id a hold id belongs to; Invalid if it is not a hold id at all."""
    match = PLACE_ID.fullmatch(hold_id)
    if not match:
        raise Invalid("malformed hold id", code="bad_hold_id")
    return match.group(1)


def check_order_id(order_id: str) -> str:
    """An order id is what new_id() makes; anything else names no order (and never reaches
    PostgreSQL, which refuses NUL bytes with an error)."""
    if ORDER_ID.fullmatch(order_id) is None:
        raise NotFound("no such order", code="order_not_found")
    return order_id
