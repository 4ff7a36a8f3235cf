"""The audit trail: who changed which setting of an event (or which operator or token), when,
from what to what, and whether a fresh code (step-up) confirmed it.

`who` is the signed-in operator's email, `token:<name>` for a scoped API token, `autopilot` or
`system`, or for the shared admin token its optional self-declared label (`operator()`), else
`admin`. Rows are written in the same transaction as the change they describe wherever the
change is a PostgreSQL write (PATCH, autopilot, create, operators); admissions made now are
recorded right after. Changes to operators and tokens have no event (event_id null)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from asyncpg.pool import PoolConnectionProxy

from server.core.errors import Invalid

OPERATOR_HEADER = "X-Boxoffice-Operator"
OPERATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,39}$")
DEFAULT_WHO = "admin"
AUTOPILOT = "autopilot"

Conn = asyncpg.Pool | asyncpg.Connection | PoolConnectionProxy

_json = msgspec.json.Encoder()


class AuditEntry(msgspec.Struct, frozen=True):
    id: int
    event_id: str | None
    at: datetime
    who: str
    action: str
    field: str
    old: Any
    new: Any
    note: str | None = None
    step_up: bool = False


def operator(request: web.Request) -> str:
    """The shared admin token's actor: the optional X-Boxoffice-Operator label (short plain
    text, self-declared), else admin. Named operators and tokens are named by their credential
    instead (server/ops/admin_guard.py)."""
    label = request.headers.get(OPERATOR_HEADER)
    if label is None or not label.strip():
        return DEFAULT_WHO
    label = label.strip()
    if not OPERATOR.match(label):
        raise Invalid(
            f"{OPERATOR_HEADER}: 1 to 40 letters, digits, spaces or ._@+- characters",
            code="bad_operator",
        )
    return label


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes and Structs through msgspec, everything else as is."""
    return msgspec.to_builtins(value)


async def record(
    conn: Conn,
    event_id: str | None,
    who: str,
    action: str,
    changes: dict[str, tuple[Any, Any]],
    note: str | None = None,
    step_up: bool = False,
) -> int:
    """One row per field: changes maps field -> (old, new). Returns the rows written."""
    if not changes:
        return 0
    await conn.executemany(
        "INSERT INTO audit_log (event_id, who, action, field, old_value, new_value, note,"
        " step_up) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8)",
        [
            (
                event_id,
                who,
                action,
                field,
                _json.encode(_plain(old)).decode(),
                _json.encode(_plain(new)).decode(),
                note,
                step_up,
            )
            for field, (old, new) in changes.items()
        ],
    )
    return len(changes)


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields whose value changes: field -> (old, new)."""
    return {f: (old.get(f), v) for f, v in new.items() if old.get(f) != v}


async def entries(pool: asyncpg.Pool, event_id: str | None, limit: int) -> list[AuditEntry]:
    """An event's rows, or with event_id None the rows of operators and tokens; newest first."""
    where = "event_id = $1" if event_id is not None else "event_id IS NULL AND $1::text IS NULL"
    rows = await pool.fetch(
        "SELECT id, event_id, at, who, action, field, old_value, new_value, note, step_up"
        f" FROM audit_log WHERE {where} ORDER BY id DESC LIMIT $2",
        event_id,
        limit,
    )
    decode = msgspec.json.decode
    return [
        AuditEntry(
            id=r["id"],
            event_id=r["event_id"],
            at=r["at"],
            who=r["who"],
            action=r["action"],
            field=r["field"],
            old=None if r["old_value"] is None else decode(r["old_value"]),
            new=None if r["new_value"] is None else decode(r["new_value"]),
            note=r["note"],
            step_up=r["step_up"],
        )
        for r in rows
    ]
