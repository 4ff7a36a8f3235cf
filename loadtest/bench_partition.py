"""Migration 014 on a live database: `python -m loadtest.bench_partition [--quick]`.

A private PostgreSQL (server.embedded) at migration 013 is filled with `--orders` paid orders
of five events (a standing place each: a line, a ticket, a published outbox row), written in
bulk by SQL. Then `--writers` coroutines create and confirm orders through the app's ledger for
`--seconds` (the reference), again while `migrate` partitions the tables, and again after. It
prints, side by side from the same run, the orders/s and the latency of one order (create +
confirm) in each phase, the slowest one during the migration (what the swap and the batches
cost a writer), and how long the migration took. Nothing is asserted; everything started here
is stopped at the end, on error too."""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import uvloop

from loadtest.benchkit.common import log
from loadtest.benchkit.measure import machine, percentile
from server.booking import ledger
from server.core.messages import EventCreate, SectionIn
from server.core.tokens import new_id
from server.runtime.embedded import EmbeddedServers
from server.store import db

EVENTS = [f"bench-{i}" for i in range(5)]
ROWS, PER_ROW = 10, 10  # a seated section, as events have; the bench sells standing places
STANDING = 200_000  # the most a section may hold (core.messages.Capacity)


def event(event_id: str) -> EventCreate:
    now = datetime.now(UTC)
    return EventCreate(
        id=event_id,
        name="Bench",
        venue="Arena",
        starts_at=now + timedelta(days=30),
        sale_starts_at=now,
        currency="EUR",
        sections=[
            SectionIn(id="A", name="Floor", price=5000, rows=ROWS, seats_per_row=PER_ROW),
            SectionIn(id="GA", name="Standing", price=3500, capacity=STANDING),
        ],
    )


FILL = """
WITH o AS (
    INSERT INTO orders (id, event_id, hold_id, visitor_id, queue_id, email, status, amount,
                        currency, provider, expires_at, paid_at, order_key, buyer)
    SELECT 'fill' || n, $1, 'hold' || n || $1, 'v' || n, 'q' || n, 'f' || n || '@example.com',
           'paid', 3500, 'EUR', 'dev', now(), now(), md5(n::text), 'f' || n || '@example.com'
    FROM generate_series($2::int, $3::int) n RETURNING id, event_id
), l AS (
    INSERT INTO order_lines (order_id, line_no, event_id, section_id, seat_id, quantity, price)
    SELECT id, 0, event_id, 'GA', NULL, 1, 3500 FROM o RETURNING order_id
), t AS (
    INSERT INTO tickets (code, order_id, event_id, section_id, number)
    SELECT 'c' || id, id, event_id, 'GA', 1 FROM o RETURNING code
)
INSERT INTO outbox (event_id, kind, payload, published_at)
SELECT event_id, 'order_paid', jsonb_build_object('order_id', id), now() FROM o
"""


async def fill(pool: db.Pool, orders: int) -> None:
    per_event = orders // len(EVENTS)
    for ev in EVENTS:
        async with pool.acquire() as conn:
            body = event(ev)
            assert await db.insert_event(conn, ev, body, body.sale_starts_at)
        for start in range(0, per_event, 5000):
            end = min(per_event, start + 5000) - 1
            await pool.execute(FILL.replace("'fill' || n", f"'fill-{ev}-' || n"), ev, start, end)
    await pool.execute("UPDATE ga_sales SET sold = $1 WHERE section_id = 'GA'", per_event)
    await pool.execute("ANALYZE")


class Phase(msgspec.Struct):
    name: str
    latencies: list[float] = []
    seconds: float = 0.0


async def writer(pool: db.Pool, rng: random.Random, phase: Phase, until: asyncio.Event) -> None:
    while not until.is_set():
        ev = rng.choice(EVENTS)
        order_id = new_id()
        started = time.perf_counter()
        await ledger.create_order(
            pool, order_id=order_id, event_id=ev, hold_id=new_id(), visitor_id=new_id(),
            queue_id=new_id(), email=f"{order_id}@example.com", amount=3500, currency="EUR",
            provider="dev", expires_at=datetime.now(UTC) + timedelta(minutes=10),
            lines=[ledger.OrderLine("GA", None, 1, 3500)],
        )  # fmt: skip
        await ledger.confirm(pool, order_id, lambda o, n: f"{o}-{n}", True, event_id=ev)
        phase.latencies.append(time.perf_counter() - started)


async def phase(pool: db.Pool, name: str, writers: int, seconds: float, migrate: bool) -> Phase:
    result = Phase(name)
    stop = asyncio.Event()
    started = time.perf_counter()
    tasks = [
        asyncio.create_task(writer(pool, random.Random(i), result, stop)) for i in range(writers)
    ]
    try:
        if migrate:
            applied = await db.migrate(pool, until=14)
            assert applied == ["v014_partition_by_event.py"], applied
        else:
            await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started
    return result


def row(p: Phase) -> str:
    lat = sorted(p.latencies)
    ms = [percentile(lat, q) * 1000 for q in (0.5, 0.99)] + [(lat[-1] if lat else 0) * 1000]
    rate = len(lat) / p.seconds if p.seconds else 0
    return (
        f"| {p.name} | {p.seconds:.1f} | {len(lat):,} | {rate:,.0f} |"
        f" {ms[0]:.1f} | {ms[1]:.1f} | {ms[2]:.0f} |"
    )


async def bench(url: str, args: argparse.Namespace) -> list[str]:
    pool = await db.create_pool(url, args.writers + 2)
    try:
        await db.migrate(pool, until=13)
        started = time.perf_counter()
        await fill(pool, args.orders)
        log(f"filled {args.orders:,} orders in {time.perf_counter() - started:.1f} s")
        before = await phase(pool, "before (013)", args.writers, args.seconds, False)
        during = await phase(pool, "during migration 014", args.writers, 0, True)
        after = await phase(pool, "after (partitioned)", args.writers, args.seconds, False)
        kind = await pool.fetchval("SELECT relkind::text FROM pg_class WHERE relname = 'orders'")
        parts = await pool.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders'::regclass"
        )
    finally:
        await pool.close()
    return [
        f"migration 014 over {args.orders:,} orders of {len(EVENTS)} events (+ lines, tickets,"
        f" outbox), {args.writers} writers (create + confirm through server.booking.ledger);"
        f" {machine()}",
        "",
        "| phase | seconds | orders | orders/s | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|",
        row(before),
        row(during),
        row(after),
        "",
        f"orders is now relkind {kind!r} with {parts} partitions; the migration took"
        f" {during.seconds:.1f} s while the writers ran",
    ]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.quick:
        args.orders, args.seconds = min(args.orders, 10_000), min(args.seconds, 3.0)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    folder = Path(tempfile.mkdtemp(prefix="bo-bench-partition-", dir="/tmp"))
    servers = EmbeddedServers(folder)
    try:
        _, url = servers.start(need_redis=False)
        report = uvloop.run(bench(url, args))
    finally:
        servers.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
