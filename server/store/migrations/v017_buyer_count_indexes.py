"""Migration 017, online: the indexes the per-buyer counts read (booking/ledger.py paid_tickets).

The counts find a buyer's (visitor's, card's) orders by their own index and sum the paid ones,
so that no plan depends on how many orders the planner believes are paid. With the indexes
of 009 and 011, partial on status = 'paid', a partition analyzed before its first sale (every
order pending) made every "paid orders of this event" path look one row long, and the plan kept
walked all of the event's paid orders per count: 999 buffers for one confirmation near the end
of a 1,000-order bench run. The new indexes cover every order: (event_id, buyer),
(event_id, visitor_id) and (event_id, card_fingerprint) where a card is known.

`orders` is partitioned by event, and a partitioned table has no CREATE INDEX CONCURRENTLY, so
each index is made as README "PostgreSQL: partitioned by event" says: `ON ONLY` the parent
(invalid, instant), `CONCURRENTLY` on each partition (writers go on), attached partition by
partition (the parent becomes valid with the last). The old indexes go last, each in a short
transaction that gives way to writers. Each step is safe to run again (a killed run resumes).
This release's code reads the counts correctly on the schema before and after.
"""

from __future__ import annotations

import logging
from typing import Any

from server.store.migrations import short_transaction

log = logging.getLogger("boxoffice.db")

ONLINE = True  # this release's code runs on the schema before and after (db.require_current)
# A partition's index build may take minutes (a big event): past the connection's command
# timeout. The builds block no writer.
BUILD_SECONDS = 6 * 3600

# name, columns and predicate of each new index on the parent
INDEXES = (
    ("orders_buyer", "(event_id, buyer)", ""),
    ("orders_visitor", "(event_id, visitor_id)", ""),
    ("orders_card", "(event_id, card_fingerprint)", " WHERE card_fingerprint IS NOT NULL"),
)
# The partial indexes of 009 and 011, as v014 copied them (under names PostgreSQL chose).
OLD = (
    r"USING btree \(event_id, (buyer|visitor_id|card_fingerprint)\)"
    r" WHERE \(+status = 'paid'::text\)"
)


async def apply(conn: Any) -> None:
    for name, columns, where in INDEXES:
        await _build(conn, name, columns, where)
    for old in await conn.fetch(
        "SELECT indexrelid::regclass::text AS name FROM pg_index"
        " WHERE indrelid = 'orders'::regclass AND pg_get_indexdef(indexrelid) ~ $1",
        OLD,
    ):
        sql = f"DROP INDEX IF EXISTS {old['name']}"
        await short_transaction(conn, lambda: conn.execute(sql), "buyer count indexes")  # noqa: B023
        log.info("buyer count indexes: dropped %s", old["name"])


async def _build(conn: Any, name: str, columns: str, where: str, again: bool = True) -> None:
    """The index on the parent, built partition by partition. A partition made meanwhile (a new
    event) gets its own from the parent at once, attached. The parent is valid once every
    partition's index is attached; if a partition that lacked one was dropped meanwhile (its
    event deleted), no attach will make it valid: it is built again, once."""
    await conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON ONLY orders {columns}{where}")
    for part in await conn.fetch(
        "SELECT c.oid, c.oid::regclass::text AS name, (SELECT NOT x.indisvalid FROM pg_index x"
        "  WHERE x.indexrelid = to_regclass($1::text || '_' || c.oid::text)) AS invalid"
        " FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid"
        " WHERE h.inhparent = 'orders'::regclass AND NOT EXISTS (SELECT FROM pg_inherits a"
        "  JOIN pg_index x ON x.indexrelid = a.inhrelid"
        "  WHERE a.inhparent = $1::text::regclass AND x.indrelid = c.oid)",
        name,
    ):
        child = f"{name}_{part['oid']}"  # short and unique, whatever the partition's name
        if part["invalid"]:  # a build a killed run left half done
            await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {child}", timeout=BUILD_SECONDS)
        await conn.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {child} ON {part['name']} {columns}{where}",
            timeout=BUILD_SECONDS,
        )
        attach = f"ALTER INDEX {name} ATTACH PARTITION {child}"
        await short_transaction(conn, lambda: conn.execute(attach), "buyer count indexes")  # noqa: B023
    valid = await conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::text::regclass", name
    )
    if not valid:
        if not again:
            raise RuntimeError(f"buyer count indexes: {name} stayed invalid; run migrate again")
        drop = f"DROP INDEX {name}"
        await short_transaction(conn, lambda: conn.execute(drop), "buyer count indexes")
        await _build(conn, name, columns, where, again=False)
        return
    log.info("buyer count indexes: %s built", name)
