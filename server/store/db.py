"""PostgreSQL through asyncpg: pool, ordered SQL migrations, and the queries of the service."""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg
import msgspec
from aiohttp import web
from asyncpg.pool import PoolConnectionProxy

from server.core.messages import ChallengePolicy, EventCreate, EventPatch
from server.core.settings import Pooler

log = logging.getLogger("boxoffice.db")

# SQL migrations run in one transaction each; Python ones (`v<NNN>_<name>.py`, a module name
# cannot start with a digit) define `apply(conn)` and commit in steps of their own, so that they
# can run on a live database (`ONLINE = True`: this release's code works before and after them).
MIGRATION_NAME = re.compile(r"^v?(\d{3})_[a-z0-9_]+\.(sql|py)$")
# Session-level advisory lock id: several processes may start at once, and one runs the
# migrations while the others wait. Migrations run on a direct connection to the primary
# (Settings.migrate_url), never through a pooler: their DDL may hold locks for long, and online
# ones commit in steps under this session lock.
MIGRATION_LOCK = 0x626F78
MIGRATION_WAIT_SECONDS = 6 * 3600  # how long a process waits for another one's migrations
MIGRATION_POLL_SECONDS = 0.5  # ... asking for the lock this often

Pool = asyncpg.Pool


class SectionRow(msgspec.Struct, frozen=True):
    id: str
    position: int
    name: str
    price: int
    capacity: int
    rows: int | None
    seats_per_row: int | None
    accessible: frozenset[str] = frozenset()  # its accessible seats (012_accessible_seats.sql)


class EventRow(msgspec.Struct, frozen=True):
    id: str
    name: str
    venue: str
    starts_at: datetime
    sale_starts_at: datetime
    prequeue_opens_at: datetime
    currency: str
    rate_per_min: int
    max_active: int
    session_minutes: int
    hold_minutes: int
    max_seats_per_order: int
    paused: bool
    closed: bool
    sold_out: bool
    challenge: ChallengePolicy = "adaptive"
    max_tickets_per_buyer: int | None = None
    timezone: str = "UTC"  # the venue's IANA time zone (010_timezone.sql)
    description: str | None = None  # the event page (013_event_page.sql)
    image_url: str | None = None
    sections: list[SectionRow] = []

    @property
    def capacity(self) -> int:
        return sum(s.capacity for s in self.sections)


class SchemaBehind(Exception):
    """The database lacks migrations this release needs; `python -m server migrate` applies them."""


async def create_pool(url: str, size: int, pooler: Pooler = "none") -> Pool:
    """A pool on `url`. Behind PgBouncer in transaction pooling mode each transaction may run on
    another server connection, so asyncpg's named prepared statements (its statement cache)
    would be looked up where they were never prepared ("prepared statement
    __asyncpg_stmt_N__ does not exist"): the cache is off there and every query is prepared
    unnamed in its own round trip (tests/test_pgbouncer.py)."""
    cache = 0 if pooler == "pgbouncer" else 100
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=size,
        command_timeout=10,
        statement_cache_size=cache,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is: the service keeps no session state (no
    LISTEN, session advisory lock, SET or cursor outside a transaction; migrate() resets its
    own connection), so asyncpg's reset query — a second round trip for every pooled query —
    is skipped. asyncpg still rolls back a transaction left open."""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str = ""  # a SQL migration: its text
    module: str = ""  # a Python migration: its module, whose apply(conn) runs it
    online: bool = False

    async def run(self, conn: asyncpg.Connection | PoolConnectionProxy) -> None:
        if self.module:
            await importlib.import_module(self.module).apply(conn)
            async with conn.transaction():
                await self._record(conn)
            return
        async with conn.transaction():
            await conn.execute(self.sql)
            await self._record(conn)

    async def _record(self, conn: asyncpg.Connection | PoolConnectionProxy) -> None:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            self.version,
            self.name,
        )


def migration_files() -> list[Migration]:
    found = []
    for entry in resources.files("server.store.migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if match.group(2) == "sql":
            found.append(Migration(version, entry.name, sql=entry.read_text()))
        else:
            module = f"server.store.migrations.{entry.name.removesuffix('.py')}"
            online = bool(getattr(importlib.import_module(module), "ONLINE", False))
            found.append(Migration(version, entry.name, module=module, online=online))
    return sorted(found, key=lambda m: m.version)


async def migrate(pool: Pool, until: int | None = None) -> list[str]:
    """Apply the migrations not yet recorded (up to version `until`), in order, under the
    migration lock; a migration that fails leaves those before it applied."""
    async with pool.acquire() as conn:
        try:
            return await _migrate(conn, until)
        finally:
            try:  # a migration may leave session state (SET, the lock): the pool does not reset
                await conn.reset()
            except Exception:
                conn.terminate()


async def _take_migration_lock(conn: Any) -> None:
    """The migration lock, asked for every MIGRATION_POLL_SECONDS rather than waited for (for
    up to MIGRATION_WAIT_SECONDS: an online migration copies whole tables or builds indexes).
    A statement waiting on the lock would hold a snapshot, which the running migration's
    CREATE INDEX CONCURRENTLY waits for in turn: a deadlock PostgreSQL breaks by killing one."""
    deadline = time.monotonic() + MIGRATION_WAIT_SECONDS
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the migration lock was held for {MIGRATION_WAIT_SECONDS} s")
        await asyncio.sleep(MIGRATION_POLL_SECONDS)


async def _migrate(conn: Any, until: int | None) -> list[str]:
    applied = []
    await _take_migration_lock(conn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migration_files():
            if migration.version in done or (until is not None and migration.version > until):
                continue
            await migration.run(conn)
            applied.append(migration.name)
            log.info("migration applied", extra={"migration": migration.name})
    finally:
        if conn.is_in_transaction():  # stopped (cancelled) inside a migration's transaction
            await conn.execute("ROLLBACK")
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


async def pending_migrations(pool: Pool) -> list[str]:
    """The migrations of this release not yet applied to the database, in order."""
    async with pool.acquire() as conn:
        done: set[int] = set()
        if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.name for m in migration_files() if m.version not in done]


async def require_current(pool: Pool) -> None:
    """Raise SchemaBehind unless every migration of this release is applied, online ones
    excepted: this release runs before and after them, and they run while it serves."""
    online = {m.name for m in migration_files() if m.online}
    pending = [name for name in await pending_migrations(pool) if name not in online]
    if pending:
        raise SchemaBehind(
            f"the database lacks migration(s) {', '.join(pending)}: run `python -m server "
            "migrate` (DATABASE_MIGRATE_URL = a direct connection to the primary) first"
        )


EVENT_COLUMNS = (
    "id, name, venue, starts_at, sale_starts_at, prequeue_opens_at, currency, rate_per_min,"
    " max_active, session_minutes, hold_minutes, max_seats_per_order, paused, closed, sold_out,"
    " challenge, max_tickets_per_buyer, timezone, description, image_url"
)


def _event(row: asyncpg.Record, sections: list[asyncpg.Record]) -> EventRow:
    data: dict[str, Any] = dict(row)
    data["sections"] = [dict(s) for s in sections]
    return msgspec.convert(data, EventRow)


async def _sections(conn: Any, event_ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    rows = await conn.fetch(
        "SELECT event_id, id, position, name, price, capacity, rows, seats_per_row,"
        " ARRAY(SELECT st.id FROM seats st WHERE st.event_id = s.event_id"
        " AND st.section_id = s.id AND st.accessible) AS accessible"
        " FROM sections s WHERE event_id = ANY($1) ORDER BY event_id, position",
        event_ids,
    )
    by_event: dict[str, list[asyncpg.Record]] = {}
    for r in rows:
        by_event.setdefault(r["event_id"], []).append(r)
    return by_event


async def get_event(pool: Pool, event_id: str) -> EventRow | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1", event_id)
        if row is None:
            return None
        return _event(row, (await _sections(conn, [event_id])).get(event_id, []))


async def list_events(pool: Pool, include_closed: bool = False) -> list[EventRow]:
    where = "" if include_closed else "WHERE NOT closed"
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT {EVENT_COLUMNS} FROM events {where} ORDER BY starts_at")
        sections = await _sections(conn, [r["id"] for r in rows])
        return [_event(r, sections.get(r["id"], [])) for r in rows]


async def add_event_partitions(pool: Pool, event_id: str) -> None:
    """Give an event its partitions of orders, order lines, sold seats, tickets and the outbox
    (migration 014) in a short transaction of their own, before the event is created: the
    trigger on events would otherwise create them inside the creating transaction and hold their
    locks while its seats are written. Nothing to do before 014 or when they exist."""
    if await pool.fetchval("SELECT to_regproc('bo_add_event_partitions') IS NOT NULL"):
        await pool.execute("SELECT bo_add_event_partitions($1)", event_id)


async def delete_event(pool: Pool, event_id: str) -> None:
    """Delete an event with everything of it (the demo's reset): its orders go by cascade, the
    mails and payment follow-ups naming them by hand (their foreign key to the partitioned
    orders went with migration 014), then its partitions."""
    async with pool.acquire() as conn, conn.transaction():
        for table in ("mails", "payment_actions"):
            await conn.execute(
                f"DELETE FROM {table} WHERE order_id IN"
                " (SELECT id FROM orders WHERE event_id = $1)",
                event_id,
            )
        await conn.execute("DELETE FROM events WHERE id = $1", event_id)
    await drop_orphan_partitions(pool)


async def drop_orphan_partitions(pool: Pool) -> int:
    """Drop the partitions whose event was deleted (empty: the delete cascaded); how many.
    Each DROP takes ACCESS EXCLUSIVE on its parent for a moment: run it outside a sale. To
    archive a past event instead, `ALTER TABLE … DETACH PARTITION … CONCURRENTLY`."""
    if not await pool.fetchval("SELECT to_regproc('bo_drop_orphan_partitions') IS NOT NULL"):
        return 0
    return int(await pool.fetchval("SELECT bo_drop_orphan_partitions()"))


async def insert_event(
    conn: asyncpg.Connection | PoolConnectionProxy,
    event_id: str,
    body: EventCreate,
    prequeue_opens_at: datetime,
) -> bool:
    """Insert an event and its sections (in the caller's transaction); False if the id is
    taken."""
    async with conn.transaction():
        inserted = await conn.fetchval(
            "INSERT INTO events (id, name, venue, starts_at, sale_starts_at, prequeue_opens_at,"
            " currency, rate_per_min, max_active, session_minutes, hold_minutes,"
            " max_seats_per_order, challenge, max_tickets_per_buyer, timezone, description,"
            " image_url) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)"
            " ON CONFLICT (id) DO NOTHING RETURNING id",
            event_id, body.name, body.venue, body.starts_at, body.sale_starts_at,
            prequeue_opens_at, body.currency, body.rate_per_min, body.max_active,
            body.session_minutes, body.hold_minutes, body.max_seats_per_order, body.challenge,
            body.max_tickets_per_buyer, body.timezone, body.description, body.image_url,
        )  # fmt: skip
        if inserted is None:
            return False
        await conn.executemany(
            "INSERT INTO sections (event_id, id, position, name, price, rows, seats_per_row,"
            " capacity) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
            [
                (event_id, s.id, i, s.name, s.price, s.rows, s.seats_per_row,
                 s.capacity if s.capacity is not None else (s.rows or 0) * (s.seats_per_row or 0))
                for i, s in enumerate(body.sections)
            ],
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO seats (event_id, id, section_id, row_no, seat_no)"
            " SELECT s.event_id, s.id || '-' || r || '-' || n, s.id, r, n FROM sections s,"
            " generate_series(1, s.rows) r, generate_series(1, s.seats_per_row) n"
            " WHERE s.event_id = $1 AND s.rows IS NOT NULL",
            event_id,
        )
        await conn.execute(
            "INSERT INTO ga_sales (event_id, section_id, capacity) SELECT event_id, id, capacity"
            " FROM sections WHERE event_id = $1 AND rows IS NULL",
            event_id,
        )
        accessible = [seat for s in body.sections for seat in s.accessible or ()]
        if accessible:
            await set_accessible(conn, event_id, accessible, True)
        return True


async def set_accessible(
    conn: asyncpg.Connection | PoolConnectionProxy, event_id: str, seats: list[str], value: bool
) -> list[str]:
    """Mark seats accessible or not; the ids whose attribute changed."""
    rows = await conn.fetch(
        "UPDATE seats SET accessible = $3 WHERE event_id = $1 AND id = ANY($2)"
        " AND accessible <> $3 RETURNING id",
        event_id,
        seats,
        value,
    )
    return [r["id"] for r in rows]


async def accessible_seats(
    conn: asyncpg.Connection | PoolConnectionProxy, event_id: str
) -> list[str]:
    """The event's accessible seats, by section, row and seat."""
    rows = await conn.fetch(
        "SELECT id FROM seats WHERE event_id = $1 AND accessible"
        " ORDER BY section_id, row_no, seat_no",
        event_id,
    )
    return [r["id"] for r in rows]


PATCHABLE = tuple(EventPatch.__struct_fields__)


async def update_event(
    pool: Pool | asyncpg.Connection | PoolConnectionProxy, event_id: str, patch: EventPatch
) -> dict[str, Any] | None:
    """Apply a patch in one statement; the patched fields' values before it, None if no event.
    Pass a connection inside a transaction to write an audit row atomically with the change."""
    changes = {f: getattr(patch, f) for f in PATCHABLE if getattr(patch, f) is not msgspec.UNSET}
    if not changes:
        found = await pool.fetchval("SELECT true FROM events WHERE id = $1", event_id)
        return {} if found is not None else None
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=2))
    olds = ", ".join(f"prev.{name}" for name in changes)
    row = await pool.fetchrow(
        f"UPDATE events e SET {assignments}, updated_at = now() FROM (SELECT id, {', '.join(changes)}"
        f" FROM events WHERE id = $1 FOR UPDATE) prev WHERE e.id = prev.id RETURNING {olds}",
        event_id,
        *changes.values(),
    )
    return None if row is None else dict(row)


async def inventory_truth(pool: Pool, event_id: str) -> dict[str, Any]:
    """What PostgreSQL says is sold or owed a hold, for rebuilding Redis seat state."""
    async with pool.acquire() as conn:
        ga = await conn.fetch(
            "SELECT section_id, capacity, sold FROM ga_sales WHERE event_id = $1", event_id
        )
        sold = await conn.fetch("SELECT seat_id FROM sold_seats WHERE event_id = $1", event_id)
        paid = await conn.fetch(
            "SELECT id FROM orders WHERE event_id = $1 AND status = 'paid'", event_id
        )
        pending = await conn.fetch(
            "SELECT o.hold_id, o.visitor_id, o.queue_id, o.expires_at, l.section_id, l.seat_id,"
            " l.quantity FROM orders o JOIN order_lines l"
            " ON l.order_id = o.id AND l.event_id = o.event_id"
            " WHERE o.event_id = $1 AND o.status = 'pending' AND o.expires_at > now()"
            " ORDER BY o.created_at, l.line_no",
            event_id,
        )
    orders: dict[str, dict[str, Any]] = {}
    for r in pending:
        o = orders.setdefault(
            r["hold_id"],
            {"h": r["hold_id"], "v": r["visitor_id"], "q": r["queue_id"], "s": [], "g": {},
             "e": int(r["expires_at"].timestamp() * 1000)},
        )  # fmt: skip
        if r["seat_id"] is not None:
            o["s"].append(r["seat_id"])
        else:
            o["g"][r["section_id"]] = r["quantity"]
    return {
        "gacap": {r["section_id"]: r["capacity"] for r in ga},
        "gasold": {r["section_id"]: r["sold"] for r in ga},
        "sold": [r["seat_id"] for r in sold],
        "paid": [r["id"] for r in paid],
        "orders": list(orders.values()),
    }


async def next_redis_epoch(pool: Pool, event_id: str) -> int:
    """Count one more Redis epoch for the event (queue/new_epoch.lua); its number."""
    epoch = await pool.fetchval(
        "UPDATE events SET redis_epoch = redis_epoch + 1 WHERE id = $1 RETURNING redis_epoch",
        event_id,
    )
    return int(epoch or 1)


async def ping(pool: Pool) -> None:
    await pool.fetchval("SELECT 1")


POOL = web.AppKey("pool", Pool)
