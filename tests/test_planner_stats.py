"""The event partitions get planner statistics as they grow (server/store/planner_stats.py):
grown partitions are analyzed, once, by one process at a time, and the confirming transaction's
count of a buyer's paid tickets then reads the buyer's index instead of every paid order."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, TypeAlias, cast

import asyncpg
import pytest

from server.booking import ledger
from server.store import db, planner_stats

EVENT = "stats-ev"
Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[Any]"
PARTITION = "public.orders__stats_ev"


async def grow(pool: asyncpg.Pool, orders: int) -> None:
    """An event with its partitions and `orders` paid orders of as many buyers, then pending
    ones: nothing has analyzed the partition yet."""
    await pool.execute(
        "INSERT INTO events (id, name, venue, starts_at, sale_starts_at, prequeue_opens_at,"
        " currency, rate_per_min, max_active, session_minutes, hold_minutes,"
        " max_seats_per_order) VALUES ($1, 'Stats', 'Hall', now() + interval '1 day', now(),"
        " now(), 'EUR', 100, 100, 10, 5, 6)",
        EVENT,
    )
    await db.add_event_partitions(pool, EVENT)
    await pool.execute(
        "INSERT INTO orders (id, event_id, hold_id, visitor_id, queue_id, email, status, amount,"
        " currency, provider, expires_at, buyer, paid_at) SELECT 'o' || i, $1, 'h' || i,"
        " 'v' || i, 'q' || i, 'b' || i || '@example.com', CASE WHEN i < $2 THEN 'paid' ELSE"
        " 'pending' END, 100, 'EUR', 'stripe', now(), 'b' || i || '@example.com', now()"
        " FROM generate_series(0, 2 * $2 - 1) AS i",
        EVENT,
        orders,
    )


async def analyzed_once(pool: asyncpg.Pool) -> list[str]:
    """analyze_grown's names once the server's statistics show the inserts (a backend reports
    them within a second or so); at most 30 s."""
    deadline = time.monotonic() + 30
    while True:
        names = await planner_stats.analyze_grown(pool)
        if PARTITION in names or time.monotonic() > deadline:
            return names
        await asyncio.sleep(0.2)


async def test_a_grown_partition_is_analyzed_once(pg: asyncpg.Pool) -> None:
    await grow(pg, 300)
    assert PARTITION in await analyzed_once(pg)
    analyzed = await pg.fetchval(
        "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'orders__stats_ev'"
    )
    assert analyzed is not None
    assert PARTITION not in await planner_stats.analyze_grown(pg)  # nothing changed since


async def test_one_process_at_a_time(pg: asyncpg.Pool) -> None:
    await grow(pg, 300)
    async with pg.acquire() as other, other.transaction():  # another process's round
        assert await other.fetchval("SELECT pg_try_advisory_xact_lock($1)", planner_stats.LOCK)
        assert await planner_stats.analyze_grown(pg) == []
    assert PARTITION in await analyzed_once(pg)


async def test_the_buyer_count_reads_the_buyer_index_once_analyzed(pg: asyncpg.Pool) -> None:
    """The plan a connection keeps for the count (generic: the one a prepared statement keeps)
    finds the buyer's orders by the buyer, not by walking the event's paid orders."""
    await grow(pg, 2000)
    await analyzed_once(pg)
    async with pg.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        count = ledger.paid_tickets("buyer", "$1", "$2")
        await conn.execute(f"PREPARE count_of(text, text) AS {count}")
        plan = "\n".join(
            r[0] for r in await conn.fetch("EXPLAIN EXECUTE count_of('stats-ev', 'b7@example.com')")
        )
        await conn.execute("DEALLOCATE count_of; RESET plan_cache_mode")
    assert "buyer = $2" in plan and "Index Cond" in plan, plan
    assert "Filter: (buyer" not in plan, plan
    assert await ledger.tickets_bought(pg, EVENT, buyer="b7@example.com") == 0  # no lines


async def test_partitions_it_may_not_analyze_are_left_to_autovacuum(
    pg: asyncpg.Pool, server_urls: tuple[str, str]
) -> None:
    """A database user that owns no partition (ANALYZE would skip them with a warning) analyzes
    nothing, rather than reporting the same partitions analyzed every round."""
    await grow(pg, 300)
    deadline = time.monotonic() + 30
    while not await pg.fetchval(  # the inserts have reached the statistics: it has grown
        "SELECT n_mod_since_analyze >= 300 FROM pg_stat_user_tables"
        " WHERE relname = 'orders__stats_ev'"
    ):
        assert time.monotonic() < deadline, "the inserts never reached the statistics"
        await asyncio.sleep(0.2)
    await pg.execute("DROP ROLE IF EXISTS bo_stats_reader")
    await pg.execute("CREATE ROLE bo_stats_reader LOGIN")
    try:
        reader = await asyncpg.create_pool(
            server_urls[1], user="bo_stats_reader", min_size=1, max_size=1
        )
        try:
            assert await planner_stats.analyze_grown(reader) == []
        finally:
            await reader.close()
        assert PARTITION in await analyzed_once(pg)  # the owner does analyze it
    finally:
        await pg.execute("DROP ROLE IF EXISTS bo_stats_reader")


async def blocks(conn: Conn, query: str, types: str, args: str) -> int:
    """Buffers read by the generic plan of `query` (the plan a prepared statement keeps)."""
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE q({types}) AS {query}")
    try:
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE q({args})")
    finally:
        await conn.execute("DEALLOCATE q; RESET plan_cache_mode")
    top = json.loads(plan)[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


async def logged(conn: Conn, call: Any) -> str:
    """The one query `call` runs on `conn`."""
    queries: list[str] = []
    with conn.query_logger(lambda q: queries.append(q.query)):
        await call
        await asyncio.sleep(0)  # the logger is called soon after the query, not within it
    assert len(queries) == 1, queries
    return queries[0]


@pytest.mark.parametrize("count", ["buyer", "card", "visitors", "visitor_orders"])
async def test_counts_of_paid_orders_do_not_walk_them_on_stale_statistics(
    pg: asyncpg.Pool, count: str
) -> None:
    """Statistics taken before the sale's first payment (every order pending) say no order is
    paid. The per-buyer counts (the confirming read's, the checkout's, the hold's) and a
    visitor's paid orders must still read one buyer's orders, not every paid order of the
    event (migration 017): 1,000 paid orders, a few buffers per count."""
    await grow(pg, 0)
    await pg.execute(
        "INSERT INTO orders (id, event_id, hold_id, visitor_id, queue_id, email, status, amount,"
        " currency, provider, expires_at, buyer) SELECT 'o' || i, $1, 'h' || i, 'v' || i,"
        " 'q' || i, 'b' || i || '@example.com', 'pending', 100, 'EUR', 'stripe', now(),"
        " 'b' || i || '@example.com' FROM generate_series(0, 1999) AS i",
        EVENT,
    )
    await pg.execute(  # a line each, so that every count has rows to sum
        "INSERT INTO order_lines (order_id, line_no, event_id, section_id, quantity, price)"
        " SELECT id, 1, event_id, 'A', 2, 100 FROM orders WHERE event_id = $1",
        EVENT,
    )
    await pg.execute(f"ALTER TABLE {PARTITION} SET (autovacuum_enabled = false)")
    await pg.execute(f"ANALYZE {PARTITION}")  # every order pending
    await pg.execute(
        "UPDATE orders SET status = 'paid', paid_at = now(), card_fingerprint = 'c' || substr(id, 2)"
        " WHERE event_id = $1 AND substr(id, 2)::int < 1000",
        EVENT,
    )
    async with pg.acquire() as conn:
        if count in ("buyer", "card"):
            column = {"buyer": "buyer", "card": "card_fingerprint"}[count]
            query, types = ledger.paid_tickets(column, "$1", "$2"), "text, text"
            value = {"buyer": "b7@example.com", "card": "c7"}[count]
            args = f"'{EVENT}', '{value}'"
        elif count == "visitors":
            query = await logged(conn, ledger.visitors_tickets_bought(conn, EVENT, ["v7"]))
            types, args = "text, text[]", f"'{EVENT}', '{{v7}}'"
        else:
            pool = cast(asyncpg.Pool, conn)  # one statement: the lookup (no order found)
            query = await logged(conn, ledger.paid_orders_of_visitor(pool, EVENT, "v-none"))
            types, args = "text, text", f"'{EVENT}', 'v7'"
        read = await blocks(conn, query, types, args)
        if count == "buyer":  # and the count is right: b7's one paid order of 2 tickets
            assert await ledger.tickets_bought(conn, EVENT, buyer="b7@example.com") == 2
    assert read < 50, f"{read} buffers for one buyer's count among 1,000 paid orders"
