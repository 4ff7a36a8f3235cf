"""Check-in at the door: a ticket code is verified offline (its MAC), then PostgreSQL decides in
one transaction — the order's row is share-locked (a refund waits, or is seen) and a guarded
UPDATE … WHERE checked_in_at IS NULL admits the ticket exactly once under any concurrency.
Every scan, whatever its outcome, is written to checkin_log and logged."""

from __future__ import annotations

import hmac
import logging
import re
from datetime import datetime
from typing import Any

import msgspec

from server.core import rules
from server.core.errors import Conflict, Invalid
from server.core.messages import Checkin
from server.core.tokens import Signer
from server.store import db

log = logging.getLogger("boxoffice.checkins")

MAC_CHARS = 16  # Signer.ticket_code: "<order id>-<number>-<16 base64url characters>"
CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}-[1-9][0-9]{0,5}-[A-Za-z0-9_-]{16}$")


def ticket_of(signer: Signer, code: str) -> tuple[str, int] | None:
    """(order id, ticket number) of a genuine code, else None. The MAC has a fixed length and
    may itself contain '-', so the code is cut from the right by length, not at a '-'; the
    whole code is then compared, in constant time, with the one the signer makes."""
    if not CODE.match(code):
        return None
    body = code[: -(MAC_CHARS + 1)]
    order_id, _, number = body.rpartition("-")
    expected = signer.ticket_code(order_id, int(number))
    if not hmac.compare_digest(code.encode(), expected.encode()):
        return None
    return order_id, int(number)


class Scan(msgspec.Struct, frozen=True):
    result: rules.CheckinResult
    order_id: str | None = None
    seat: str | None = None
    section: str = ""
    number: int = 0
    checked_in_at: datetime | None = None


class Counts(msgspec.Struct, frozen=True):
    checked_in: int  # tickets admitted at the door
    expected: int  # tickets of paid orders


class CheckIns:
    def __init__(self, pool: db.Pool, signer: Signer) -> None:
        self.pool = pool
        self.signer = signer

    async def scan(self, event_id: str, code: str, who: str) -> Scan:
        """The outcome of one scan at this event's door, written to checkin_log."""
        genuine = ticket_of(self.signer, code)
        async with self.pool.acquire() as conn, conn.transaction():
            if genuine is None:
                scan = Scan("invalid_ticket")
            else:
                scan = await _admit(conn, event_id, code)
            await conn.execute(
                "INSERT INTO checkin_log (event_id, who, result, code, order_id)"
                " VALUES ($1, $2, $3, $4, $5)",
                event_id, who, scan.result, code[:200], scan.order_id,
            )  # fmt: skip
        log.info(
            "check-in",
            extra={"event_id": event_id, "result": scan.result, "order_id": scan.order_id,
                   "who": who},
        )  # fmt: skip
        return scan

    async def counts(self, event_id: str) -> Counts:
        row = await self.pool.fetchrow(
            "SELECT count(t.checked_in_at) AS checked_in, count(*) AS expected FROM tickets t"
            " JOIN orders o ON o.id = t.order_id AND o.event_id = t.event_id"
            " WHERE t.event_id = $1 AND o.status = 'paid'",
            event_id,
        )
        assert row is not None
        return Counts(int(row["checked_in"]), int(row["expected"]))


async def _admit(conn: Any, event_id: str, code: str) -> Scan:
    ticket = await conn.fetchrow(
        "SELECT t.event_id, t.order_id, t.seat_id, t.section_id, t.number, t.checked_in_at,"
        " o.status FROM tickets t JOIN orders o ON o.id = t.order_id AND o.event_id = t.event_id"
        " WHERE t.code = $1"
        " FOR SHARE OF o",
        code,
    )
    if ticket is None:
        return Scan("invalid_ticket")
    found = Scan(
        "invalid_ticket", ticket["order_id"], ticket["seat_id"], ticket["section_id"],
        ticket["number"], ticket["checked_in_at"],
    )  # fmt: skip
    result = rules.checkin_result(
        event_id, ticket["event_id"], ticket["status"], ticket["checked_in_at"] is not None
    )
    if result == "admitted":
        at = await conn.fetchval(
            "UPDATE tickets SET checked_in_at = clock_timestamp() WHERE code = $1"
            " AND checked_in_at IS NULL RETURNING checked_in_at",
            code,
        )
        if at is None:  # another scan of this code committed first
            at = await conn.fetchval("SELECT checked_in_at FROM tickets WHERE code = $1", code)
            return msgspec.structs.replace(found, result="already_checked_in", checked_in_at=at)
        return msgspec.structs.replace(found, result="admitted", checked_in_at=at)
    return msgspec.structs.replace(found, result=result)


def answer(scan: Scan) -> Checkin:
    """A 200 body for an admitted ticket; the refusals raise the contract's errors."""
    extra: dict[str, object] = {
        "result": scan.result,
        "order_id": scan.order_id,
        "seat": scan.seat,
        "section": scan.section or None,
        "checked_in_at": msgspec.to_builtins(scan.checked_in_at),
    }
    if scan.result == "invalid_ticket":
        raise Invalid("this is not a ticket of ours", code="invalid_ticket",
                      extra={"result": scan.result})  # fmt: skip
    if scan.result == "wrong_event":
        raise Conflict("this ticket is for another event", code="wrong_event", extra=extra)
    if scan.result == "ticket_refunded":
        raise Conflict("this ticket was refunded", code="ticket_refunded", extra=extra)
    if scan.result == "already_checked_in":
        raise Conflict("this ticket was already admitted", code="already_checked_in", extra=extra)
    assert scan.order_id is not None and scan.checked_in_at is not None
    return Checkin("admitted", scan.seat, scan.order_id, scan.checked_in_at, scan.section,
                   scan.number)  # fmt: skip
