"""Orders, order lines, sold seats, tickets and the outbox partitioned by event (migration 014).

The live migration: a database at migration 013 holding orders of several events is converted
while writers keep creating, confirming and expiring orders, creating a new event and relaying
the outbox; the first run is killed mid-copy and two processes then race to finish it. Nothing is
lost or duplicated, every writer's last word is what the database says, DESIGN.md's ledger
invariants hold, and sold_seats still refuses a seat sold twice. Then, on the session database:
a new event gets its partitions, event-scoped queries read one partition, a deleted event's
partitions can be dropped, and a row for an event without partitions is refused (there is no default)."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from server.booking import ledger
from server.core.messages import EventCreate
from server.core.tokens import new_id
from server.store import db
from server.store.migrations import v014_partition_by_event as partitioning
from server.store.migrations import v017_buyer_count_indexes as buyer_counts

from .helpers import SECRET, event_body, eventually
from .test_booking_races import check_ledger
from .test_pgbouncer import with_database

LIVE_DB = "bo_partition_live"
TABLES = ("orders", "order_lines", "sold_seats", "tickets", "outbox")
SECTIONS = [
    {"id": "A", "name": "Floor", "price": 5000, "rows": 6, "seats_per_row": 10},
    {"id": "GA", "name": "Standing", "price": 3500, "capacity": 40},
]
SEATS = [f"A-{r}-{n}" for r in range(1, 7) for n in range(1, 11)]


def code(order_id: str, number: int) -> str:
    return f"{order_id}-{number}-{SECRET[:4]}"


async def add_event(pool: db.Pool, event_id: str) -> None:
    body = msgspec.convert(event_body(id=event_id, sections=SECTIONS), EventCreate)
    async with pool.acquire() as conn:
        assert await db.insert_event(conn, event_id, body, body.sale_starts_at)


class Writers:
    """Buyers racing for the seats of a few events: what each order became, by their account."""

    def __init__(self, pool: db.Pool, events: list[str], seed: int) -> None:
        self.pool = pool
        self.events = events
        self.rng = random.Random(seed)
        self.last: dict[str, str] = {}  # order id -> the status its writer last saw
        self.created = Counter[str]()
        self.errors: list[BaseException] = []

    async def order(self, event_id: str | None = None) -> None:
        ev = event_id or self.rng.choice(self.events)
        order_id, hold_id = new_id(), new_id()
        if self.rng.random() < 0.7:
            seats = self.rng.sample(SEATS, self.rng.randint(1, 3))
            lines = [ledger.OrderLine("A", s, 1, 5000) for s in seats]
        else:
            lines = [ledger.OrderLine("GA", None, self.rng.randint(1, 4), 3500)]
        order, created = await ledger.create_order(
            self.pool, order_id=order_id, event_id=ev, hold_id=hold_id, visitor_id=new_id(),
            queue_id=new_id(), email=f"{order_id}@example.com",
            amount=sum(ln.price * ln.quantity for ln in lines), currency="EUR", provider="dev",
            expires_at=datetime.now(UTC) + timedelta(minutes=10), lines=lines,
        )  # fmt: skip
        assert created and order.id == order_id
        self.created[order_id] += 1
        self.last[order_id] = "pending"
        roll = self.rng.random()
        known = ev if self.rng.random() < 0.5 else None  # by id alone, or within its event
        if roll < 0.75:
            outcome, row = await ledger.confirm(self.pool, order_id, code, True, event_id=known)
            assert row is not None
            self.last[order_id] = row.status
            assert (outcome == "paid") == (row.status == "paid")
        elif roll < 0.85:
            row = await ledger.change_status(self.pool, order_id, "expired", "test", event_id=known)
            assert row is not None
            self.last[order_id] = "expired"

    async def run(self, until: asyncio.Event, rounds_after: int, limit: int) -> None:
        """Write until `until` is set and `rounds_after` more, at most `limit` orders."""
        after = 0
        for _ in range(limit):
            try:
                await self.order()
            except Exception as exc:
                self.errors.append(exc)
                return
            if until.is_set():
                after += 1
                if after >= rounds_after:
                    return


async def relay(pool: db.Pool, until: asyncio.Event, seen: Counter[int]) -> None:
    async def publish(items: list[ledger.OutboxItem]) -> None:
        seen.update(item.id for item in items)

    while not until.is_set():
        await ledger.relay_outbox(pool, publish, limit=20)
        await asyncio.sleep(0.005)
    while await ledger.relay_outbox(pool, publish):
        pass


@pytest.fixture
async def live(server_urls: tuple[str, str]) -> AsyncIterator[str]:
    """A database of its own, migrated to 013 (before partitioning)."""
    admin = await asyncpg.connect(server_urls[1])
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {LIVE_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {LIVE_DB}")
        url = with_database(server_urls[1], LIVE_DB)
        pool = await db.create_pool(url, 2)
        assert len(await db.migrate(pool, until=13)) == 13
        await pool.close()
        yield url
        await admin.execute(f"DROP DATABASE IF EXISTS {LIVE_DB} WITH (FORCE)")
    finally:
        await admin.close()


async def index_shapes(pool: db.Pool, table: str) -> set[str]:
    """What the table's indexes that back no key index, names left out."""
    rows = await pool.fetch(
        "SELECT pg_get_indexdef(indexrelid) AS ddl FROM pg_index"
        " WHERE indrelid = $1::regclass AND NOT indisunique",
        table,
    )
    return {re.sub(r"^CREATE INDEX \S+ ON (ONLY )?\S+ ", "", r["ddl"]) for r in rows}


async def copying(pool: db.Pool) -> bool:
    """Whether migration 014 has copied some orders and not swapped yet."""
    if await relkind(pool, "orders_by_event") != "p":
        return False
    return bool(await pool.fetchval("SELECT count(*) >= 100 FROM orders_by_event"))


async def relkind(pool: db.Pool, table: str) -> str | None:
    kind: str | None = await pool.fetchval(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)", table
    )
    return kind


async def test_live_migration_loses_nothing_and_keeps_every_seat_sold_once(
    live: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partitioning, "BATCH", 25)  # many batches, interleaved with writers
    pool = await db.create_pool(live, 12)
    try:
        events = ["spring-a", "spring-b", "spring-c"]
        for ev in events:
            await add_event(pool, ev)
        writers = [Writers(pool, events, seed) for seed in range(4)]
        for w in writers:  # the rows there before: orders of every kind on every event
            for _ in range(60):
                await w.order()
        assert [await relkind(pool, t) for t in TABLES] == ["r"] * 5
        indexes = {t: await index_shapes(pool, t) for t in TABLES}

        done = asyncio.Event()
        published: Counter[int] = Counter()
        traffic = [asyncio.create_task(w.run(done, 15, 400)) for w in writers]
        quiet = asyncio.Event()  # the writers stopped: the relay drains the outbox and ends
        relayer = asyncio.create_task(relay(pool, quiet, published))

        # The first run dies part-way through the copy (its connection goes with it): a
        # long transaction holding an order in the middle keeps the copy waiting there ...
        middle = await pool.fetchval("SELECT id FROM orders ORDER BY id OFFSET 120 LIMIT 1")
        async with pool.acquire() as blocker:
            holding = blocker.transaction()
            await holding.start()
            await blocker.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", middle)
            first = asyncio.create_task(db.migrate(pool, until=14))
            # Step 1 waits for a moment between the writers' transactions (lock_timeout, retried)
            await eventually(lambda: copying(pool), "the copy under way", within=120)
            assert await relkind(pool, "orders") == "r"
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await holding.rollback()
        # ... a new event is created while the mirrors run, and sells ...
        await add_event(pool, "spring-late")
        for w in writers:
            w.events.append("spring-late")
        await asyncio.gather(*(w.order("spring-late") for w in writers))
        # ... and two processes race to finish it: one does, the other finds nothing to do.
        # (Up to 014: the writers are this release's code, which writes no later column.)
        runs = await asyncio.gather(db.migrate(pool, until=14), db.migrate(pool, until=14))
        assert sorted(runs) == [[], ["v014_partition_by_event.py"]], runs
        done.set()
        await asyncio.gather(*traffic)
        quiet.set()
        await relayer

        for w in writers:
            assert w.errors == [], w.errors
        assert [await relkind(pool, t) for t in TABLES] == ["p"] * 5
        assert {t: await index_shapes(pool, t) for t in TABLES} == indexes  # 011's card index too
        leftovers = await pool.fetch(
            "SELECT relname FROM pg_class WHERE relname LIKE '%unpartitioned'"
            " OR relname LIKE '%by_event' AND relkind IN ('r', 'p')"
        )
        assert leftovers == []
        triggers = await pool.fetch("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'bo_mirror%'")
        assert triggers == []
        assert await pool.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = 14"
        ) == 1  # fmt: skip

        # Nothing lost, nothing twice: every order a writer created, in the state it saw last.
        written = {oid: status for w in writers for oid, status in w.last.items()}
        assert all(n == 1 for w in writers for n in w.created.values())
        rows = await pool.fetch("SELECT id, status FROM orders")
        assert len(rows) == len({r["id"] for r in rows}) == len(written)
        assert {r["id"]: r["status"] for r in rows} == written
        assert await pool.fetchval(
            "SELECT count(*) FROM orders o WHERE NOT EXISTS"
            " (SELECT 1 FROM order_lines l WHERE l.order_id = o.id)"
        ) == 0  # fmt: skip
        for ev in [*events, "spring-late"]:
            await check_ledger(pool, ev)  # DESIGN.md: each seat sold once, tickets per unit
        paid = await pool.fetch("SELECT id FROM orders WHERE status = 'paid'")
        outbox = await pool.fetch(
            "SELECT id, payload->>'order_id' AS order_id FROM outbox WHERE kind = 'order_paid'"
        )
        assert sorted(r["order_id"] for r in outbox) == sorted(r["id"] for r in paid)
        assert set(published) == {r["id"] for r in outbox}
        assert max(published.values()) == 1  # the relay published each row once
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
        assert any(s == "paid" for s in written.values())
        late = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE event_id = 'spring-late'"
        )  # fmt: skip
        assert late > 0

        # The arbiter still holds after partitioning: a sold seat cannot be sold again.
        sold = await pool.fetchrow("SELECT event_id, seat_id, order_id FROM sold_seats LIMIT 1")
        assert sold is not None
        with pytest.raises(asyncpg.UniqueViolationError):
            await pool.execute(
                "INSERT INTO sold_seats (event_id, seat_id, order_id) VALUES ($1, $2, $3)",
                sold["event_id"], sold["seat_id"], sold["order_id"],
            )  # fmt: skip
        # A new order after the swap lands in its event's partition, sequence intact.
        before = await pool.fetchval("SELECT max(id) FROM outbox")
        await writers[0].order("spring-a")
        assert await pool.fetchval(
            "SELECT tableoid::regclass::text FROM orders ORDER BY created_at DESC LIMIT 1"
        ) == "orders__spring_a"  # fmt: skip
        assert (await pool.fetchval("SELECT max(id) FROM outbox") or 0) >= before
    finally:
        await pool.close()


async def test_a_new_event_gets_its_partitions_and_queries_read_only_them(
    pg: asyncpg.Pool,
) -> None:
    await add_event(pg, "part-one")
    await add_event(pg, "part-two")
    for table in TABLES:
        parts = await pg.fetch(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass"
            " ORDER BY c.relname",
            table,
        )
        assert [(r["relname"], r["bound"]) for r in parts] == [
            (f"{table}__part_one", "FOR VALUES IN ('part-one')"),
            (f"{table}__part_two", "FOR VALUES IN ('part-two')"),
        ]
    writer = Writers(pg, ["part-one"], 7)
    for _ in range(5):
        await writer.order()

    for sql in (
        "SELECT count(*) FROM orders WHERE event_id = 'part-one' AND status = 'paid'",
        "SELECT seat_id FROM sold_seats WHERE event_id = 'part-one'",
        "SELECT o.id FROM orders o JOIN order_lines l ON l.order_id = o.id"
        " AND l.event_id = o.event_id WHERE o.event_id = 'part-one'",
        "SELECT code FROM tickets WHERE event_id = 'part-one'",
    ):
        plan = "\n".join(r[0] for r in await pg.fetch(f"EXPLAIN {sql}"))
        assert "__part_one" in plan and "__part_two" not in plan, plan
    # A parameter prunes too (asyncpg sends every query with parameters, prepared).
    async with pg.acquire() as conn:
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT * FROM orders WHERE event_id = $1", "part-one"
        )
    assert '"orders__part_one"' in plan and "part_two" not in plan, plan
    # No default partition: a row for an event that has none is refused, not parked.
    with pytest.raises(asyncpg.CheckViolationError, match="no partition"):
        await pg.execute(
            "INSERT INTO outbox (event_id, kind, payload) VALUES ('nowhere', 'x', '{}')"
        )
    # The partitions follow the events: deleted, they go, and what named their orders too.
    await pg.execute(
        "INSERT INTO mails (kind, order_id, email) SELECT 'confirmation', id, email FROM orders"
        " WHERE event_id = 'part-one' AND status = 'paid' LIMIT 1"
    )
    assert await pg.fetchval("SELECT count(*) FROM mails") == 1
    await db.delete_event(pg, "part-one")
    await db.delete_event(pg, "part-two")
    assert await pg.fetchval("SELECT count(*) FROM mails") == 0
    assert await db.drop_orphan_partitions(pg) == 0  # nothing left to drop
    assert await pg.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders'::regclass"
    ) == 0  # fmt: skip
    await add_event(pg, "part-one")  # and come back with an event of the same id
    assert await pg.fetchval("SELECT count(*) FROM orders__part_one") == 0


async def test_buyer_count_indexes_are_built_while_orders_are_written(live: str) -> None:
    """Migration 017 (online) on a database with events and orders, writers going on: each new
    index valid on the parent and attached on every partition, the paid-only ones gone. A run
    stopped in its second index resumes, a partition made meanwhile gets its indexes from the
    parent (the second one still invalid there), and a second run finds nothing to do."""
    pool = await db.create_pool(live, 8)
    try:
        assert len(await db.migrate(pool, until=16)) == 3
        events = ["autumn-a", "autumn-b"]
        for ev in events:
            await add_event(pool, ev)
        writers = [Writers(pool, events, seed) for seed in range(3)]
        for w in writers:
            for _ in range(30):
                await w.order()
        before = await index_shapes(pool, "orders")
        assert len([s for s in before if re.search(buyer_counts.OLD, s)]) == 3, before
        async with pool.acquire() as conn:  # a run that stopped in its second index
            await buyer_counts._build(conn, *buyer_counts.INDEXES[0])
            name, columns, where = buyer_counts.INDEXES[1]
            await conn.execute(f"CREATE INDEX {name} ON ONLY orders {columns}{where}")
            assert not await conn.fetchval(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = $1::text::regclass", name
            )
        await add_event(pool, "autumn-late")  # its partition gets both from the parent
        for w in writers:
            w.events.append("autumn-late")
        done = asyncio.Event()
        traffic = [asyncio.create_task(w.run(done, 5, 200)) for w in writers]
        # Two processes migrate at once: the second waits for the first's lock without holding
        # a snapshot, which the first's CREATE INDEX CONCURRENTLY would wait for (a deadlock).
        runs = await asyncio.gather(db.migrate(pool), db.migrate(pool))
        assert sorted(runs) == [[], ["v017_buyer_count_indexes.py"]], runs
        done.set()
        await asyncio.gather(*traffic)
        for w in writers:
            assert w.errors == [], w.errors

        names = [name for name, _, _ in buyer_counts.INDEXES]
        valid = await pool.fetch(
            "SELECT indexrelid::regclass::text AS name, indisvalid FROM pg_index"
            " WHERE indexrelid = ANY($1::text[]::regclass[])",
            names,
        )
        assert {r["name"]: r["indisvalid"] for r in valid} == dict.fromkeys(names, True)
        partitions = await pool.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders'::regclass"
        )
        assert partitions == 3
        for name in names:
            assert await pool.fetchval(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = $1::text::regclass", name
            ) == partitions  # fmt: skip
        shapes = await index_shapes(pool, "orders")
        assert {
            "USING btree (event_id, buyer)",
            "USING btree (event_id, visitor_id)",
            "USING btree (event_id, card_fingerprint) WHERE (card_fingerprint IS NOT NULL)",
        } <= shapes, shapes
        assert not [s for s in shapes if re.search(buyer_counts.OLD, s)], shapes
        async with pool.acquire() as conn:  # again: nothing left to do
            await buyer_counts.apply(conn)
        assert await index_shapes(pool, "orders") == shapes
        for ev in [*events, "autumn-late"]:
            await check_ledger(pool, ev)
    finally:
        await pool.close()
