"""The formats of the ids that arrive from outside, and their one parser each."""

from __future__ import annotations

import re

from server.core.errors import Invalid, NotFound

EVENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
# <event id>.<22 url-safe characters>: queue ids and hold ids name their event.
PLACE_ID = re.compile(r"([a-z0-9][a-z0-9-]{0,39})\.([A-Za-z0-9_-]{22})")


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
