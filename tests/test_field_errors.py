"""Refused bodies in words a person reads, every problem at once, each naming its field
(server/core/field_errors.py, the event rules in server/ops/catalog.py), and the event changes
an operator may make before the sale starts: edit, postpone, cancel, reopen — audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient

from server.core.errors import DomainError, FieldError, Invalid
from server.core.field_errors import problems
from server.core.messages import EventCreate, EventPatch
from server.ops import catalog
from server.store.db import EventRow

from .helpers import ADMIN, create_event, event_body

Client = TestClient[Any, Any]
NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
SEATED = {"id": "A", "name": "Floor", "price": 5000, "rows": 5, "seats_per_row": 10}


def section(**overrides: Any) -> dict[str, Any]:
    return {**SEATED, **overrides}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, []),
        ({"sections": [section(price=12.5)]},
         [("sections[0].price", "Price must be a whole number of cents")]),
        ({"sections": [section(price=153.0)]}, []),  # JSON's integral numbers are whole numbers
        ({"sections": [section(price="5000")]},
         [("sections[0].price", "Price must be a whole number of cents")]),
        ({"sections": [section(price=-1)]},
         [("sections[0].price", "Price must be from 0 to 100000000 cents")]),
        ({"currency": "euro"},
         [("currency", "Currency must be a three-letter ISO 4217 code in capitals, such as EUR")]),
        ({"currency": "EUX"},
         [("currency", "Currency 'EUX' is not a known ISO 4217 code, such as EUR or USD")]),
        ({"name": ""}, [("name", "Name is required")]),
        ({"name": "a\x00b"}, [("name", "Name has characters that are not allowed here")]),
        ({"name": "x" * 201}, [("name", "Name must be at most 200 characters")]),
        ({"rate_per_min": -5}, [("rate_per_min", "Admissions per minute must be from 0 to 1000000")]),
        ({"session_minutes": 0}, [("session_minutes", "Session length must be from 1 to 1440 minutes")]),
        ({"starts_at": "next friday"},
         [("starts_at", "Event start must be a date and time, like 2027-03-01T20:00:00Z")]),
        ({"starts_at": "2027-03-01T20:00:00"},
         [("starts_at", "Event start must give its offset from UTC (Z or +hh:mm), like 2027-03-01T20:00:00Z")]),
        ({"challenge": "maybe"}, [("challenge", "Challenge must be one of adaptive, always, off")]),
        ({"timezone": "Mars/Base"},
         [("timezone", "Time zone 'Mars/Base' is not a time zone name such as Europe/Berlin")]),
        ({"sections": []}, [("sections", "Sections: give at least 1")]),
        ({"sections": [section(id="A B")]},
         [("sections[0].id", "Id must be 1 to 8 letters or digits, such as A or GA")]),
        ({"id": "Spring Tour"},
         [("id", "Id must be lower-case letters, digits and dashes, such as spring-tour")]),
        ({"max_tickets_per_buyer": None}, []),
        ({"image_url": "http://img.example.com/a.jpg"},
         [("image_url", "Image URL must be an https:// address or a path on this site such as /static/poster.jpg, without spaces, quotes or angle brackets")]),
        ({"image_url": "https://img.example.com/a.jpg", "description": "Two\nlines"}, []),
        ({"description": "bell\x07"},
         [("description", "Description must be plain text: line breaks are fine, other control characters are not")]),
        ({"colour": "red"}, [("colour", "colour is not a field here")]),
        # every problem at once, in the body's order, unknown fields last
        ({"name": "", "currency": "euro", "sections": [section(price=1.5, rows=0)], "x": 1},
         [("name", "Name is required"),
          ("currency", "Currency must be a three-letter ISO 4217 code in capitals, such as EUR"),
          ("sections[0].price", "Price must be a whole number of cents"),
          ("sections[0].rows", "Rows must be from 1 to 1000"),
          ("x", "x is not a field here")]),
    ],
)  # fmt: skip
def test_problems_of_an_event_body(overrides: dict[str, Any], expected: list[Any]) -> None:
    found = problems(event_body(**overrides), EventCreate)
    assert [(p.path, p.message) for p in found] == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"rate_per_min": 1.5, "paused": "yes"},
         [("rate_per_min", "Admissions per minute must be a whole number"),
          ("paused", "Paused must be true or false")]),
        ({"max_tickets_per_buyer": None}, []),
        ({"sale_starts_at": 5}, [("sale_starts_at", "Sale start must be a date and time, like 2027-03-01T20:00:00Z")]),
        ([1], [("", "The body must be an object with named fields")]),
    ],
)  # fmt: skip
def test_problems_of_a_patch(body: Any, expected: list[Any]) -> None:
    assert [(p.path, p.message) for p in problems(body, EventPatch)] == expected


def test_required_fields_are_named() -> None:
    found = problems({"name": "x"}, EventCreate)
    assert [p.path for p in found] == [
        "venue", "starts_at", "sale_starts_at", "currency", "sections"
    ]  # fmt: skip
    assert found[0].message == "Venue is required"


def test_invalid_carries_every_field() -> None:
    found = [FieldError("name", "Name is required"), FieldError("currency", "Currency …")]
    refused = Invalid.of(found)
    assert (refused.status, refused.code) == (422, "invalid")
    assert refused.detail == "name: Name is required (and 1 more: see fields)"
    assert refused.extra == {"fields": found}


# ---- the event rules the schema cannot say ----------------------------------------------------


def later(**delta: float) -> str:
    return (NOW + timedelta(**delta)).isoformat()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"starts_at": later(days=30), "sale_starts_at": later(days=1)}, []),
        ({"starts_at": later(days=1), "sale_starts_at": later(days=2)},
         [("sale_starts_at", "The sale must start before the event")]),
        ({"starts_at": later(days=30), "sale_starts_at": later(days=1),
          "prequeue_opens_at": later(days=2)},
         [("prequeue_opens_at", "The pre-queue must open before the sale starts")]),
        ({"starts_at": "1999-01-01T00:00:00Z"},
         [("starts_at", "Event start must lie between the years 2000 and 2999")]),
        ({"sections": [section(), section(capacity=10, rows=None, seats_per_row=None)]},
         [("sections[1].id", "Id A is already another section's")]),
        ({"sections": [section(capacity=10)]},
         [("sections[0]", "Give rows and seats per row (seated) or a capacity (standing)")]),
        ({"sections": [section(rows=None)]},
         [("sections[0].rows", "Rows is required with seats per row")]),
        ({"sections": [{"id": "GA", "name": "Standing", "price": 1}]},
         [("sections[0].capacity", "Capacity is required (or rows and seats)")]),
        ({"sections": [section(rows=1000, seats_per_row=1000)]},
         [("sections[0]", "At most 20000 seats in one section")]),
        # all at once
        ({"starts_at": later(days=1), "sale_starts_at": later(days=2),
          "sections": [section(rows=None), section(id="A", capacity=5)]},
         [("sale_starts_at", "The sale must start before the event"),
          ("sections[0].rows", "Rows is required with seats per row"),
          ("sections[1].id", "Id A is already another section's"),
          ("sections[1]", "Give rows and seats per row (seated) or a capacity (standing)")]),
    ],
)  # fmt: skip
def test_create_rules(overrides: dict[str, Any], expected: list[Any]) -> None:
    decoded = msgspec.convert({**event_body(), **overrides}, EventCreate)
    assert [(p.path, p.message) for p in catalog.create_problems(decoded)] == expected


def row(**overrides: Any) -> EventRow:
    fields: dict[str, Any] = {
        "id": "ev", "name": "Tour", "venue": "Arena", "starts_at": NOW + timedelta(days=30),
        "sale_starts_at": NOW + timedelta(days=1),
        "prequeue_opens_at": NOW + timedelta(days=1, minutes=-30), "currency": "EUR",
        "rate_per_min": 600, "max_active": 1000, "session_minutes": 10, "hold_minutes": 10,
        "max_seats_per_order": 6, "paused": False, "closed": False, "sold_out": False,
    }  # fmt: skip
    return EventRow(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        # postponed: the pre-queue keeps its 30 minutes' lead
        ({"sale_starts_at": NOW + timedelta(days=2)},
         {"prequeue_opens_at": NOW + timedelta(days=2, minutes=-30)}),
        ({"sale_starts_at": NOW + timedelta(days=2),
          "prequeue_opens_at": NOW + timedelta(days=1)},
         {"prequeue_opens_at": NOW + timedelta(days=1)}),
        ({"starts_at": NOW + timedelta(days=60), "name": "Tour II"}, {}),
        ({"rate_per_min": 5}, {}),  # no time: nothing to check
    ],
)  # fmt: skip
def test_change_before_the_sale(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    got = catalog.check_change(row(), EventPatch(**patch), NOW)
    for field, value in {**patch, **expected}.items():
        assert getattr(got, field) == value, field


@pytest.mark.parametrize(
    ("patch", "now", "expected"),
    [
        ({"sale_starts_at": NOW - timedelta(hours=1)}, NOW,
         [("sale_starts_at", "The new sale start must be in the future")]),
        ({"sale_starts_at": NOW + timedelta(days=40)}, NOW,
         [("sale_starts_at", "The sale must start before the event")]),
        ({"starts_at": NOW + timedelta(hours=2)}, NOW,
         [("sale_starts_at", "The sale must start before the event")]),
        ({"prequeue_opens_at": NOW + timedelta(days=3)}, NOW,
         [("prequeue_opens_at", "The pre-queue must open before the sale starts")]),
        ({"starts_at": datetime(1999, 1, 1, tzinfo=UTC)}, NOW,
         [("starts_at", "Event start must lie between the years 2000 and 2999")]),
        # the sale has started: times are fixed (a 409, not a field problem)
        ({"starts_at": NOW + timedelta(days=60)}, NOW + timedelta(days=2), "sale_started"),
    ],
)  # fmt: skip
def test_change_refused(patch: dict[str, Any], now: datetime, expected: Any) -> None:
    with pytest.raises(DomainError) as refused:
        catalog.check_change(row(), EventPatch(**patch), now)
    error = refused.value
    if expected == "sale_started":
        assert (error.status, error.code) == (409, expected)
    else:
        assert isinstance(error, Invalid)
        fields: list[FieldError] = error.extra["fields"]  # type: ignore[assignment]
        assert [(p.path, p.message) for p in fields] == expected


# ---- over the API -----------------------------------------------------------------------------


async def test_create_answers_every_problem(client: Client) -> None:
    body = event_body(name="", currency="euro", sections=[section(price=12.5)], rate_per_min=-1)
    response = await client.post("/api/admin/events", json=body, headers=ADMIN)
    assert response.status == 422
    answer = await response.json()
    assert answer["error"] == "invalid"
    assert answer["detail"] == "name: Name is required (and 3 more: see fields)"
    assert answer["fields"] == [
        {"path": "name", "message": "Name is required"},
        {"path": "currency",
         "message": "Currency must be a three-letter ISO 4217 code in capitals, such as EUR"},
        {"path": "sections[0].price", "message": "Price must be a whole number of cents"},
        {"path": "rate_per_min", "message": "Admissions per minute must be from 0 to 1000000"},
    ]  # fmt: skip
    rules = event_body(sections=[section(), section(capacity=3)], starts_at=later(days=-400))
    answer = await (await client.post("/api/admin/events", json=rules, headers=ADMIN)).json()
    assert [f["path"] for f in answer["fields"]] == [
        "sale_starts_at", "sections[1].id", "sections[1]"
    ]  # fmt: skip
    # nothing was created, and "euro" was never cut to "EUR"
    events = await (await client.get("/api/admin/events", headers=ADMIN)).json()
    assert events == []


async def audit_fields(client: Client, event_id: str) -> list[tuple[str, Any, Any]]:
    response = await client.get(f"/api/admin/events/{event_id}/audit", headers=ADMIN)
    return [(r["field"], r["old"], r["new"]) for r in await response.json()]


async def test_edit_postpone_cancel_reopen_before_the_sale(client: Client) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    sale = now + timedelta(days=2)
    ev = await create_event(
        client, sale_starts_at=sale.isoformat(), starts_at=(now + timedelta(days=30)).isoformat()
    )
    url = f"/api/admin/events/{ev['id']}"
    assert ev["state"] == "scheduled"

    edited = await client.patch(url, json={"name": "Autumn Tour", "venue": "Hall"}, headers=ADMIN)
    assert edited.status == 200, await edited.text()
    assert ((await edited.json())["name"], (await edited.json())["venue"]) == (
        "Autumn Tour",
        "Hall",
    )

    later_sale = sale + timedelta(days=3)
    moved = await client.patch(url, json={"sale_starts_at": later_sale.isoformat()}, headers=ADMIN)
    assert moved.status == 200, await moved.text()
    got = await moved.json()
    assert datetime.fromisoformat(got["sale_starts_at"]) == later_sale
    assert datetime.fromisoformat(got["prequeue_opens_at"]) == later_sale - timedelta(minutes=30)
    public = await (await client.get(f"/api/events/{ev['id']}")).json()
    assert (public["name"], public["state"]) == ("Autumn Tour", "scheduled")

    past = await client.patch(url, json={"sale_starts_at": now.isoformat()}, headers=ADMIN)
    assert past.status == 422
    assert (await past.json())["fields"] == [
        {"path": "sale_starts_at", "message": "The new sale start must be in the future"}
    ]

    cancelled = await client.patch(url, json={"closed": True}, headers=ADMIN)
    assert (await cancelled.json())["state"] == "closed"
    reopened = await client.patch(url, json={"closed": False}, headers=ADMIN)
    assert (await reopened.json())["state"] == "scheduled"

    changes = await audit_fields(client, ev["id"])
    fields = [f for f, _, _ in changes]
    for field in ("name", "venue", "sale_starts_at", "prequeue_opens_at", "closed"):
        assert field in fields, (field, changes)
    assert ("name", "Spring Tour", "Autumn Tour") in changes


async def test_times_are_fixed_once_the_sale_started(client: Client) -> None:
    ev = await create_event(client)  # on sale since a second ago
    url = f"/api/admin/events/{ev['id']}"
    later_start = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    response = await client.patch(url, json={"starts_at": later_start}, headers=ADMIN)
    assert response.status == 409
    assert (await response.json())["error"] == "sale_started"
    # the rest of a live sale's settings still change
    assert (await client.patch(url, json={"name": "Renamed"}, headers=ADMIN)).status == 200
