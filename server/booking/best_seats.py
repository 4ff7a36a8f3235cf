"""Best available seats: the rule that picks N adjacent free seats of a section for a fan.

The stage is in front of row 1, centred on the rows. A block of N seats side by side in one
row is scored by the distance from its middle to the middle of the stage's edge, in seat
widths and rows: (2·row)² + (first + last - (seats_per_row + 1))², doubled so it stays whole.
Smallest wins; on a tie the nearer row, then the leftmost block. The suggestion is advice: the
fan holds it through the normal hold (POST …/holds), which may still find a seat just taken."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from server.core import rules
from server.core.errors import Conflict, Invalid
from server.core.messages import BestSeats, BestSeatsRequest, SeatMap
from server.store import db


def best_block(rows: Iterable[Sequence[bool]], quantity: int) -> tuple[int, int] | None:
    """(row, first seat), both from 1, of the best `quantity` adjacent seats where rows[r][s]
    says whether seat s+1 of row r+1 may be taken; None if no row has that many side by side.

    Within a run of free seats the score falls towards the middle, so only the block nearest
    the middle of each run is scored; rows are scanned from the stage and the scan stops at
    the first row whose distance alone is no better than the best block found."""
    if quantity < 1:
        return None
    best: tuple[int, int, int] | None = None
    for r, row in enumerate(rows, start=1):
        dy = (2 * r) ** 2
        if best is not None and dy >= best[0]:
            break
        width = len(row)
        middle = (width + 2 - quantity) // 2  # the first seat of a block centred in the row
        s = 0
        while s < width:
            if not row[s]:
                s += 1
                continue
            start = s
            while s < width and row[s]:
                s += 1
            lo, hi = start + 1, s - quantity + 1  # first seats of the blocks in this run
            for first in {min(max(f, lo), hi) for f in (middle, middle + 1)} if hi >= lo else ():
                score = dy + (2 * first + quantity - width - 2) ** 2
                if best is None or (score, r, first) < best:
                    best = (score, r, first)
    return None if best is None else (best[1], best[2])


def suggest(ev: db.EventRow, seat_map: SeatMap, body: BestSeatsRequest) -> BestSeats:
    """The best seats of the request's section on this map; Invalid for a section without
    assigned seats or more seats than one order may hold, Conflict when no block is free."""
    section = next((s for s in seat_map.sections if s.id == body.section), None)
    if section is None or section.rows is None:
        raise Invalid(f"no section with assigned seats {body.section!r}", code="unknown_section")
    limit = min(
        ev.max_seats_per_order, rules.buyer_limit(ev.max_tickets_per_buyer, ev.max_seats_per_order)
    )
    if body.quantity > limit:
        raise Invalid(
            f"at most {limit} seats per order", code="too_many_seats", extra={"limit": limit}
        )  # the same answer as a hold of too many seats
    grid = (  # row by row, as the scan asks: it stops at the first row too far back
        [seat.status == "free" and (seat.accessible or not body.accessible) for seat in row.seats]
        for row in section.rows
    )
    found = best_block(grid, body.quantity)
    if found is None:
        kind = "accessible seats" if body.accessible else "seats"
        raise Conflict(
            f"no {body.quantity} free {kind} side by side in {section.name}",
            code="no_adjacent_seats",
            extra={"section": section.id, "quantity": body.quantity},
        )
    r, first = found
    seats = [seat.id for seat in section.rows[r - 1].seats[first - 1 : first - 1 + body.quantity]]
    return BestSeats(ev.id, section.id, seats, section.price * body.quantity, seat_map.currency)
