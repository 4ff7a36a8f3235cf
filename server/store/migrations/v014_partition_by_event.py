"""Migration 014, online: orders, order lines, sold seats, tickets and the outbox become tables
partitioned by event (LIST on event_id, one partition per event, created with the event), on a
database that keeps serving while it runs.

Steps, each its own short transaction and each safe to run again (a killed run resumes):
1. create the partitioned copies (`<table>_by_event`), a partition per existing event, the
   trigger that gives every new event its partitions, and triggers on the old tables that
   mirror every insert, update and delete into the copies (in the writer's own transaction);
2. copy the old rows over in batches by primary key (`FOR SHARE`, `ON CONFLICT DO NOTHING`: a
   row a writer changed meanwhile was mirrored already, and the copy never overwrites it);
3. swap: lock the five tables (in the order writers take them, `lock_timeout` short, retried),
   drop the mirrors, rename old -> `<table>_unpartitioned`, copy -> `<table>`;
4. drop the old tables.
Uniqueness now includes the partition key (PostgreSQL requires it): the arbiter, sold_seats'
primary key (event_id, seat_id), is unchanged; order ids, hold ids and ticket codes are unique
per event in the database and across events by construction (128 random bits). The foreign
keys of payment_actions and mails to orders (id) cannot name a partitioned table without
event_id, and are dropped in the swap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from server.store.migrations import short_transaction

log = logging.getLogger("boxoffice.db")

ONLINE = True  # this release's code runs on the schema before and after (db.require_current)
BATCH = 1000
T = TypeVar("T")


class Table(msgspec.Struct, frozen=True):
    name: str
    old_key: tuple[str, ...]  # the old primary key: the order in which rows are copied
    ddl: str  # keys and foreign keys of the partitioned table ({t} is its name); the other
    # indexes are the old table's, copied (_copy_indexes)
    parent: str | None = None  # the order a row belongs to: mirrored first (foreign key)


# In the order writers take them (an order, its lines, its seats, its tickets, the outbox).
TABLES = (
    Table(
        "orders",
        ("id",),
        "ALTER TABLE {t} ADD PRIMARY KEY (id, event_id),"
        " ADD UNIQUE (hold_id, event_id), ADD UNIQUE (payment_id, event_id),"
        " ADD FOREIGN KEY (event_id) REFERENCES events (id) ON DELETE CASCADE;",
    ),
    Table(
        "order_lines",
        ("order_id", "line_no"),
        "ALTER TABLE {t} ADD PRIMARY KEY (order_id, line_no, event_id),"
        " ADD FOREIGN KEY (order_id, event_id) REFERENCES {orders} (id, event_id)"
        " ON DELETE CASCADE;",
        parent="order_id",
    ),
    Table(
        "sold_seats",
        ("event_id", "seat_id"),
        # The arbiter: a seat is sold once per event, ever (DESIGN.md).
        "ALTER TABLE {t} ADD PRIMARY KEY (event_id, seat_id),"
        " ADD FOREIGN KEY (event_id, seat_id) REFERENCES seats (event_id, id) ON DELETE CASCADE,"
        " ADD FOREIGN KEY (order_id, event_id) REFERENCES {orders} (id, event_id)"
        " ON DELETE CASCADE;",
        parent="order_id",
    ),
    Table(
        "tickets",
        ("code",),
        "ALTER TABLE {t} ADD PRIMARY KEY (code, event_id),"
        " ADD UNIQUE (order_id, number, event_id),"
        " ADD FOREIGN KEY (order_id, event_id) REFERENCES {orders} (id, event_id)"
        " ON DELETE CASCADE;",
        parent="order_id",
    ),
    Table(
        "outbox",
        ("id",),
        "ALTER TABLE {t} ADD PRIMARY KEY (id, event_id);",
    ),
)
NAMES = [t.name for t in TABLES]

# Partitions follow events: created before the event (db.add_event_partitions, in a transaction
# of their own) and by a trigger on events as a safety net (no path that inserts an event can
# forget them), dropped with db.drop_orphan_partitions once their event is deleted. Creating them pauses writes to the five
# tables for as long as in-flight transactions take to finish (SHARE ROW EXCLUSIVE, see the
# function); reads go on. CREATE TABLE … LIKE then ATTACH avoids the ACCESS EXCLUSIVE lock that
# CREATE TABLE … PARTITION OF takes on the parent, which would stall reads too. There is no DEFAULT partition: every
# row's event exists (foreign keys) and got its partitions in the transaction that created it,
# and a default partition would be scanned and locked by every ATTACH.
FUNCTIONS = """
CREATE OR REPLACE FUNCTION bo_partition_name(tab text, event_id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT tab || '__' || replace(event_id, '-', '_') $$;

CREATE OR REPLACE FUNCTION bo_add_event_partitions(ev text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tabs text[] := ARRAY['orders', 'order_lines', 'sold_seats', 'tickets', 'outbox'];
    parents text[];
    tab text;
    part text;
BEGIN
    SELECT array_agg(CASE WHEN to_regclass(t || '_by_event') IS NOT NULL
                          THEN t || '_by_event' ELSE t END ORDER BY n)
      INTO parents FROM unnest(tabs) WITH ORDINALITY AS u(t, n);
    IF (SELECT count(*) FROM unnest(tabs) WITH ORDINALITY AS u(t, n)
        JOIN pg_inherits i ON i.inhrelid = to_regclass(bo_partition_name(t, ev))
                          AND i.inhparent = to_regclass(parents[n])) = 5 THEN
        RETURN;  -- all there: no lock taken
    END IF;
    -- Attaching clones foreign keys, which locks the tables they join: take those locks first,
    -- in the order writers take them, or a writer and this transaction can deadlock.
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', array_to_string(parents, ', '));
    FOR n IN 1..5 LOOP
        tab := tabs[n];
        part := bo_partition_name(tab, ev);
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(part));
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I (LIKE %I INCLUDING DEFAULTS'
                       ' INCLUDING CONSTRAINTS)', part, parents[n]);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%L)',
                       parents[n], part, ev);
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION bo_event_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM bo_add_event_partitions(NEW.id);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION bo_drop_orphan_partitions() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    parent regclass;
    part regclass;
    dropped integer := 0;
BEGIN
    FOR parent, part IN SELECT i.inhparent::regclass, c.oid::regclass
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent::regclass::text = ANY(
                          ARRAY['orders', 'order_lines', 'sold_seats', 'tickets', 'outbox'])
                  AND NOT EXISTS (SELECT 1 FROM events e WHERE c.relname
                                  = bo_partition_name(i.inhparent::regclass::text, e.id))
                ORDER BY i.inhparent::regclass::text = 'orders'  -- referenced: last
    LOOP
        -- Detached first: a partition of orders carries the foreign keys that reference it.
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, part);
        EXECUTE format('DROP TABLE %s', part);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

DROP TRIGGER IF EXISTS bo_event_partitions ON events;
CREATE TRIGGER bo_event_partitions AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION bo_event_inserted();
"""


async def apply(conn: Any) -> None:
    """Run (or resume) the conversion on `conn`, a direct connection outside any transaction;
    the caller holds the migration lock (server.store.db.migrate)."""
    if await _swapped(conn):
        await _drop_old(conn)
        return
    if await conn.fetchval("SELECT to_regclass('orders_by_event') IS NULL"):
        await _short(conn, lambda: _prepare(conn))
    for table in TABLES:
        copied = await _backfill(conn, table)
        log.info("partitioning: rows copied", extra={"table": table.name, "rows": copied})
        # Statistics before the swap: until autovacuum comes by, the planner would take the
        # new partitions for empty and pick any index (a buyer's count scanned the event).
        await conn.execute(f"ANALYZE {table.name}_by_event")
    await _swap(conn)
    await _drop_old(conn)


async def _swapped(conn: Any) -> bool:
    kind = await conn.fetchval("SELECT relkind FROM pg_class WHERE oid = 'orders'::regclass")
    return bool(kind == "p")


async def _columns(conn: Any, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum",
        table,
    )
    return [r["attname"] for r in rows]


async def _prepare(conn: Any) -> None:
    """Step 1, one transaction: partitioned copies, partitions, new-event trigger, mirrors."""
    # Creating the events trigger takes SHARE ROW EXCLUSIVE on events until commit, so
    # every event either exists when they are listed below or gets its partitions from
    # the trigger.
    for table in TABLES:
        copy = f"{table.name}_by_event"
        await conn.execute(
            f"CREATE TABLE {copy} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING"
            f" CONSTRAINTS) PARTITION BY LIST (event_id)"
        )
        await conn.execute(table.ddl.format(t=copy, orders="orders_by_event"))
        await _copy_indexes(conn, table.name, copy)
    await conn.execute(FUNCTIONS)
    await conn.execute("SELECT bo_add_event_partitions(id) FROM events ORDER BY id")
    for table in TABLES:
        await conn.execute(await _mirror_sql(conn, table))


async def _copy_indexes(conn: Any, table: str, copy: str) -> None:
    """The old table's indexes that back no key (those are in Table.ddl, with event_id), as
    they are, whichever migration made them."""
    rows = await conn.fetch(
        "SELECT pg_get_indexdef(indexrelid) AS ddl FROM pg_index"
        " WHERE indrelid = $1::regclass AND NOT indisunique",
        table,
    )
    for r in rows:
        await conn.execute(
            re.sub(r"^CREATE INDEX \S+ ON \S+ ", f"CREATE INDEX ON {copy} ", r["ddl"])
        )


async def _mirror_sql(conn: Any, table: Table) -> str:
    """A trigger on the old table that applies each change to the copy, in the same
    transaction; a child row first copies its order (the copy's foreign key)."""
    cols = await _columns(conn, table.name)
    copy = f"{table.name}_by_event"
    key = _new_key(table)
    names = ", ".join(cols)
    values = ", ".join(f"NEW.{c}" for c in cols)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c not in key)
    match = " AND ".join(f"{c} = OLD.{c}" for c in key)
    parent = ""
    if table.parent:
        order_cols = ", ".join(await _columns(conn, "orders"))
        parent = (
            f"INSERT INTO orders_by_event ({order_cols}) SELECT {order_cols} FROM orders"
            f" WHERE id = NEW.{table.parent} ON CONFLICT DO NOTHING;"
        )
    fn = f"bo_mirror_{table.name}"
    return f"""
CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM {copy} WHERE {match};
        RETURN NULL;
    END IF;
    {parent}
    INSERT INTO {copy} ({names}) VALUES ({values})
        ON CONFLICT ({", ".join(key)}) DO UPDATE SET {updates};
    RETURN NULL;
END $$;
CREATE TRIGGER {fn} AFTER INSERT OR UPDATE OR DELETE ON {table.name}
    FOR EACH ROW EXECUTE FUNCTION {fn}();
"""


def _new_key(table: Table) -> tuple[str, ...]:
    return table.old_key + (() if "event_id" in table.old_key else ("event_id",))


async def _backfill(conn: Any, table: Table) -> int:
    """Step 2: copy the old rows in primary-key order, one batch per short transaction. Each
    batch holds FOR SHARE on its rows: a writer changing one waits for the batch to commit and
    then mirrors its own version over the copied one."""
    cols = ", ".join(await _columns(conn, table.name))
    key = ", ".join(table.old_key)
    descending = ", ".join(f"{c} DESC" for c in table.old_key)  # the batch's last key
    after = f"({key}) > ({', '.join(f'${i + 1}' for i in range(len(table.old_key)))})"

    def batch(where: str) -> str:
        return (
            f"WITH batch AS (SELECT {cols} FROM {table.name} {where}"
            f" ORDER BY {key} LIMIT {BATCH} FOR SHARE),"
            f" copied AS (INSERT INTO {table.name}_by_event ({cols}) SELECT {cols} FROM batch"
            f" ON CONFLICT DO NOTHING)"
            f" SELECT {key}, (SELECT count(*) FROM batch) AS n FROM batch"
            f" ORDER BY {descending} LIMIT 1"
        )

    first, rest = batch(""), batch(f"WHERE {after}")
    row = await _short(conn, lambda: conn.fetchrow(first))
    total = 0
    while row is not None:
        total += row["n"]
        last = [row[c] for c in table.old_key]
        row = await _short(conn, lambda: conn.fetchrow(rest, *last))  # noqa: B023
    return total


async def _short(conn: Any, run: Callable[[], Awaitable[T]]) -> T:
    return await short_transaction(conn, run, "partitioning")


async def _swap(conn: Any) -> None:
    """Step 3: one short transaction under ACCESS EXCLUSIVE locks taken in writers' order."""
    renames = []
    for name in NAMES:
        renames.append(f"DROP TRIGGER bo_mirror_{name} ON {name};")
        renames.append(f"DROP FUNCTION bo_mirror_{name}();")
        renames.append(f"ALTER TABLE {name} RENAME TO {name}_unpartitioned;")
        renames.append(f"ALTER TABLE {name}_by_event RENAME TO {name};")
    sql = (
        f"LOCK TABLE {', '.join(NAMES)} IN ACCESS EXCLUSIVE MODE;"
        " ALTER TABLE payment_actions DROP CONSTRAINT IF EXISTS payment_actions_order_id_fkey;"
        " ALTER TABLE mails DROP CONSTRAINT IF EXISTS mails_order_id_fkey;"
        + "".join(renames)
        + " ALTER SEQUENCE outbox_id_seq OWNED BY outbox.id;"
    )
    await _short(conn, lambda: conn.execute(sql))
    log.info("partitioning: tables swapped")


async def _drop_old(conn: Any) -> None:
    """Step 4: the old tables go (children first; they are no longer read or written)."""
    for name in reversed(NAMES):
        sql = f"DROP TABLE IF EXISTS {name}_unpartitioned"
        await _short(conn, lambda: conn.execute(sql))  # noqa: B023
