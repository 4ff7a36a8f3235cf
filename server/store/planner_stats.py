"""Planner statistics for the event partitions: ANALYZE a partition once it has grown, within
seconds rather than at autovacuum's next round.

Orders, their lines, sold seats, tickets and the outbox are partitioned by event (migration
014), so an on-sale starts on empty partitions without statistics. PostgreSQL plans a prepared
statement on such a partition as if it held a row or two: with no column statistics every index
that starts with `event_id` looks as good as the one that finds the order or the buyer, and the
cheapest on paper is the one with the fewest conditions. asyncpg keeps each statement prepared on
its connection and PostgreSQL keeps its generic plan until the table's statistics change, so
until autovacuum's first ANALYZE (its nap is a minute) the lookup of an order, of a buyer's paid
tickets or of a visitor's walks every row of the event: in a bench of 3,000 orders the
confirming read took 1 ms instead of 0.02 ms, and it grows with every order, in the sale's
busiest minute. An ANALYZE replans those statements everywhere.

The rule is autovacuum's own (50 rows changed plus a tenth of the table); only the cadence is
ours. One process at a time runs it (a transaction-scoped advisory lock, so it also holds behind
a transaction pooler)."""

from __future__ import annotations

import logging
from typing import Any

from server.core.loops import Loop
from server.store.db import Pool
from server.store.migrations.v014_partition_by_event import NAMES as PARTITIONED

log = logging.getLogger("boxoffice.db")

EVERY_S = 5.0  # how often a process looks for grown partitions
LOCK = 0x626F7861  # advisory lock id: one ANALYZE at a time across processes
MOST_PER_ROUND = 20  # partitions analyzed by one round at most (the most grown first)

# Autovacuum's analyze rule with its default settings (autovacuum_analyze_threshold 50,
# autovacuum_analyze_scale_factor 0.1), over the partitions of the partitioned tables that this
# database user may analyze (it owns them, or is a superuser: otherwise ANALYZE skips a table
# with a warning and autovacuum alone keeps its statistics).
_GROWN = (
    "SELECT format('%I.%I', s.schemaname, s.relname) AS name FROM pg_stat_user_tables s"
    " JOIN pg_inherits i ON i.inhrelid = s.relid JOIN pg_class c ON c.oid = s.relid"
    " WHERE i.inhparent = ANY (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)"
    " AND s.n_mod_since_analyze >= 50 + 0.1 * greatest(s.n_live_tup, 0)"
    " AND pg_has_role(c.relowner, 'USAGE')"
    " AND ($3::text IS NULL OR s.relid = to_regclass($3::text))"  # one partition, by name
    " ORDER BY s.n_mod_since_analyze DESC LIMIT $2"
)


async def analyze_grown(pool: Pool) -> list[str]:
    """ANALYZE the event partitions grown past the rule since their last ANALYZE; their names.
    Each in a transaction of its own under the lock (nothing if another process holds it), and
    only if no other process analyzed it meanwhile: an ANALYZE keeps its partition locked (SHARE
    UPDATE EXCLUSIVE) to the commit, and one transaction over many partitions could deadlock
    with DDL that takes them in another order (dropping a deleted event's partitions)."""
    async with pool.acquire() as conn:
        done: list[str] = []
        for name in await _grown(conn, MOST_PER_ROUND):
            async with conn.transaction():
                if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK):
                    break
                if await _grown(conn, 1, name):
                    # quoted by format('%I.%I') from the catalog, never from input
                    await conn.execute(f"ANALYZE {name}")
                    done.append(name)
    if done:
        log.info("analyzed grown partitions", extra={"partitions": done})
    return done


async def _grown(conn: Any, most: int, name: str | None = None) -> list[str]:
    rows = await conn.fetch(_GROWN, list(PARTITIONED), most, name)
    return [r["name"] for r in rows]


def loops(pool: Pool) -> list[Loop]:
    """The round, every EVERY_S; every process may run it (the lock lets one at a time)."""

    async def step() -> float:
        await analyze_grown(pool)
        return EVERY_S

    return [("planner statistics", step)]
