"""Choosing seats: the best-available rule (table-driven), the best-seats endpoint held through
the normal hold, accessible seats set by ops (at creation and by an audited admin call) and
shown on the seat map, and the per-order limits the seat page reads. Real Redis and
PostgreSQL."""

from __future__ import annotations

import random
from typing import Any

import pytest

from server.booking.best_seats import best_block

from .helpers import ADMIN, Client, admitted_fan, call, create_event, event_body

X, F = False, True  # taken, free


@pytest.mark.parametrize(
    ("rows", "quantity", "expected"),
    [
        # the middle of the front row
        ([[F] * 10], 2, (1, 5)),
        # odd width, even block: two blocks equally near, the leftmost wins
        ([[F] * 9], 2, (1, 4)),
        # a whole row
        ([[F] * 4], 4, (1, 1)),
        # the front row's middle taken: the middle of row 2 is nearer than row 1's edge
        ([[F, F, X, X, X, X, X, X, F, F], [F] * 10], 2, (2, 5)),
        # one seat off the middle of row 1 still beats row 2's middle
        ([[X, X, X, X, X, F, F, X, X, X], [F] * 10], 2, (1, 6)),
        # runs broken by a taken seat: only the run long enough counts
        ([[F, F, X, F, F, F]], 3, (1, 4)),
        # far back but central beats a front corner when rows are many
        ([[F, F, X, X, X, X, X, X, X, X, F, F], [X] * 12, [F] * 12], 2, (3, 6)),
        # nowhere long enough
        ([[F, F, X, F, F], [X, F, F, X, X]], 3, None),
        ([[F] * 3], 4, None),
        ([], 1, None),
        ([[F] * 3], 0, None),
    ],
)
def test_best_block(
    rows: list[list[bool]], quantity: int, expected: tuple[int, int] | None
) -> None:
    assert best_block(rows, quantity) == expected


def every_block_scored(rows: list[list[bool]], quantity: int) -> tuple[int, int] | None:
    """The rule as written in best_seats' docstring, by brute force: every block scored."""
    blocks = [
        ((2 * r) ** 2 + (2 * f + quantity - 1 - (len(row) + 1)) ** 2, r, f)
        for r, row in enumerate(rows, start=1)
        for f in range(1, len(row) - quantity + 2)
        if all(row[f - 1 : f - 1 + quantity])
    ]
    return min(blocks)[1:] if blocks else None


def test_best_block_agrees_with_every_block_scored() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        width = rng.randint(1, 14)
        free = rng.random()
        rows = [[rng.random() < free for _ in range(width)] for _ in range(rng.randint(1, 6))]
        quantity = rng.randint(1, 6)
        assert best_block(rows, quantity) == every_block_scored(rows, quantity), (rows, quantity)


# ---- the API -------------------------------------------------------------------------------


async def best(fan: Any, event_id: str, body: Any) -> tuple[int, Any]:
    status, answer = await fan.call("POST", f"/api/events/{event_id}/best-seats", body)
    return status, answer


async def seat_map(client: Client, event_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/events/{event_id}/seats")
    assert response.status == 200
    data: dict[str, Any] = await response.json()
    return data


def seats_of(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        seat["id"]: seat
        for section in data["sections"]
        for row in section.get("rows") or []
        for seat in row["seats"]
    }


async def test_best_seats_held_through_the_normal_hold(client: Client) -> None:
    event_id = (await create_event(client))["id"]  # Floor: 5 rows of 10, €50
    fan = await admitted_fan(client, event_id)
    status, found = await best(fan, event_id, {"section": "A", "quantity": 2})
    assert status == 200, found
    assert found == {
        "event_id": event_id, "section": "A", "seats": ["A-1-5", "A-1-6"], "amount": 10000,
        "currency": "EUR",
    }  # fmt: skip
    status, held = await fan.hold(event_id, {"seats": found["seats"]})
    assert status == 201, held
    assert held["seats"] == ["A-1-5", "A-1-6"]

    # the next fan's best pair: row 2's middle is nearer the stage than row 1's rest
    other = await admitted_fan(client, event_id)
    status, found = await best(other, event_id, {"section": "A", "quantity": 2})
    assert (status, found["seats"]) == (200, ["A-2-5", "A-2-6"]), found
    status, found = await best(other, event_id, {"section": "A", "quantity": 6})
    assert (status, found["seats"]) == (200, ["A-2-3", "A-2-4", "A-2-5", "A-2-6", "A-2-7", "A-2-8"])


async def test_best_seats_refuses_bad_requests(client: Client) -> None:
    event_id = (await create_event(client, max_seats_per_order=4))["id"]
    fan = await admitted_fan(client, event_id)
    cases: list[tuple[Any, int, str]] = [
        ({"section": "GA", "quantity": 2}, 422, "unknown_section"),  # standing: no seats
        ({"section": "Z", "quantity": 2}, 422, "unknown_section"),
        ({"section": "A", "quantity": 5}, 422, "too_many_seats"),  # the event allows 4
        ({"section": "A", "quantity": 0}, 422, "invalid"),
        ({"section": "A", "quantity": "2"}, 422, "invalid"),
        ({"section": "A\u0000", "quantity": 2}, 422, "invalid"),
        ({"section": "A", "quantity": 2, "price": 1}, 422, "invalid"),
        ({"quantity": 2}, 422, "invalid"),
        ([], 422, "invalid"),
    ]
    for body, status, code in cases:
        got, answer = await best(fan, event_id, body)
        assert (got, answer["error"]) == (status, code), (body, answer)
        assert answer["detail"]
    got, answer = await best(fan, event_id, {"section": "A", "quantity": 5})
    assert answer["limit"] == 4
    # no access token: 403, as for holds
    got, answer = await call(
        client, "POST", f"/api/events/{event_id}/best-seats", {}, {"section": "A", "quantity": 1}
    )
    assert (got, answer["error"]) == (403, "no_access")
    got, answer = await best(fan, "no-such-event", {"section": "A", "quantity": 1})
    assert got == 404


async def test_accessible_seats_set_at_creation_and_by_ops(client: Client) -> None:
    body = event_body()
    body["sections"][0]["accessible"] = ["A-5-1", "A-5-2"]
    event_id = (await create_event(client, sections=body["sections"]))["id"]
    seats = seats_of(await seat_map(client, event_id))
    assert {s for s, seat in seats.items() if seat.get("accessible")} == {"A-5-1", "A-5-2"}
    assert "accessible" not in seats["A-1-1"]  # on the wire only when true

    fan = await admitted_fan(client, event_id)
    status, found = await best(fan, event_id, {"section": "A", "quantity": 2, "accessible": True})
    assert (status, found["seats"]) == (200, ["A-5-1", "A-5-2"]), found
    status, refused = await best(fan, event_id, {"section": "A", "quantity": 3, "accessible": True})
    assert (status, refused["error"]) == (409, "no_adjacent_seats"), refused

    # ops mark a third seat, and unmark one; the map shows it at once; both calls audited
    url = f"/api/admin/events/{event_id}/seats"
    status, answer = await call(
        client, "PATCH", url, ADMIN, {"seats": ["A-5-3"], "accessible": True}
    )
    assert status == 200, answer
    assert answer == {
        "event_id": event_id, "accessible": ["A-5-1", "A-5-2", "A-5-3"], "changed": ["A-5-3"],
    }  # fmt: skip
    status, found = await best(fan, event_id, {"section": "A", "quantity": 3, "accessible": True})
    assert (status, found["seats"]) == (200, ["A-5-1", "A-5-2", "A-5-3"]), found
    status, answer = await call(
        client, "PATCH", url, ADMIN, {"seats": ["A-5-1", "A-1-1"], "accessible": False}
    )
    assert (status, answer["changed"]) == (200, ["A-5-1"]), answer
    seats = seats_of(await seat_map(client, event_id))
    assert {s for s, seat in seats.items() if seat.get("accessible")} == {"A-5-2", "A-5-3"}
    status, audit = await call(client, "GET", f"/api/admin/events/{event_id}/audit", ADMIN)
    assert status == 200
    rows = [a for a in audit if a["action"] == "seats"]
    assert [(a["field"], a["old"], a["new"]) for a in rows] == [
        ("accessible", ["A-5-1", "A-5-2", "A-5-3"], ["A-5-2", "A-5-3"]),
        ("accessible", ["A-5-1", "A-5-2"], ["A-5-1", "A-5-2", "A-5-3"]),
    ]  # newest first
    # the same call again changes nothing and writes no audit row
    status, answer = await call(
        client, "PATCH", url, ADMIN, {"seats": ["A-5-1"], "accessible": False}
    )
    assert (status, answer["changed"]) == (200, [])
    status, audit = await call(client, "GET", f"/api/admin/events/{event_id}/audit", ADMIN)
    assert len([a for a in audit if a["action"] == "seats"]) == 2


async def test_accessible_seats_refuse_bad_input(client: Client) -> None:
    event_id = (await create_event(client))["id"]
    url = f"/api/admin/events/{event_id}/seats"
    # each refusal also names its field, for the console to say it there
    cases: list[tuple[Any, int, str, str]] = [
        ({"seats": ["A-9-1"], "accessible": True}, 422, "unknown_seats", "seats"),  # no row 9
        ({"seats": ["GA-1-1"], "accessible": True}, 422, "unknown_seats", "seats"),  # standing
        ({"seats": ["A-1-1", "A-01-1"], "accessible": True}, 422, "invalid", "seats[1]"),
        ({"seats": ["A-1-1\u0000"], "accessible": True}, 422, "invalid", "seats[0]"),
        ({"seats": [], "accessible": True}, 422, "invalid", "seats"),
        ({"seats": ["A-1-1"]}, 422, "invalid", "accessible"),
        ({"seats": ["A-1-1"] * 2001, "accessible": True}, 422, "invalid", "seats"),
    ]
    for body, status, code, path in cases:
        got, answer = await call(client, "PATCH", url, ADMIN, body)
        assert (got, answer["error"]) == (status, code), (body, answer)
        assert answer["fields"][0]["path"] == path, (body, answer)
    _, unknown = await call(client, "PATCH", url, ADMIN, {"seats": ["A-9-1"], "accessible": True})
    assert unknown["seats"] == ["A-9-1"]
    assert unknown["fields"] == [
        {"path": "seats", "message": "No such assigned seats at this event: A-9-1"}
    ]
    got, answer = await call(client, "PATCH", url, {}, {"seats": ["A-1-1"], "accessible": True})
    assert got == 401, answer
    seats = seats_of(await seat_map(client, event_id))
    assert not any(seat.get("accessible") for seat in seats.values())  # nothing changed

    for section, code in [
        ({"id": "GA", "name": "Standing", "price": 1, "capacity": 5, "accessible": ["GA-1-1"]}, "invalid"),
        ({"id": "B", "name": "Balcony", "price": 1, "rows": 2, "seats_per_row": 2, "accessible": ["B-3-1"]}, "unknown_seats"),
        ({"id": "B", "name": "Balcony", "price": 1, "rows": 2, "seats_per_row": 2, "accessible": ["A-1-1"]}, "unknown_seats"),
    ]:  # fmt: skip
        response = await client.post(
            "/api/admin/events", json=event_body(sections=[section]), headers=ADMIN
        )
        answer = await response.json()
        assert (response.status, answer["error"]) == (422, code), answer


async def test_the_limits_the_seat_page_reads(client: Client) -> None:
    event_id = (await create_event(client, max_seats_per_order=4, max_tickets_per_buyer=3))["id"]
    event = await (await client.get(f"/api/events/{event_id}")).json()
    assert (event["max_seats_per_order"], event["max_tickets_per_buyer"]) == (4, 3)
    data = await seat_map(client, event_id)
    assert (data["max_seats_per_order"], data["max_tickets_per_buyer"]) == (4, 3)
    status, _ = await call(
        client, "PATCH", f"/api/admin/events/{event_id}", ADMIN,
        {"max_seats_per_order": 2, "max_tickets_per_buyer": None},
    )  # fmt: skip
    assert status == 200
    data = await seat_map(client, event_id)  # the open page learns it on its next refresh
    assert (data["max_seats_per_order"], data["max_tickets_per_buyer"]) == (2, 2)
    fan = await admitted_fan(client, event_id)
    status, answer = await fan.hold(event_id, {"seats": ["A-1-1", "A-1-2", "A-1-3"]})
    assert (status, answer["error"], answer["limit"]) == (422, "too_many_seats", 2), answer
