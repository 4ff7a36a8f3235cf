"""NGINX bench (`python -m loadtest.bench_nginx`, part of `make bench`): the same two app
processes measured through NGINX and hit directly, side by side, in one run. Never asserted.

Figures: joins per second; websockets held and the time to push one tick to all of them; holds
per second; one spike (fans arriving together: join, websocket until admitted, hold) with
p50/p95/p99 of join, admission delivery (join sent -> `admitted` message) and hold. Beside
them, per phase: the kernel's listen-queue overflows and NGINX's most frequent error-log lines.

Set-up: private Redis and PostgreSQL (server.embedded) in a temporary folder; the stack of
`python -m server up`, started by server.runtime.stack.Stack: two `python -m server worker
--no-reuse-port` processes, each on its own 127.0.0.1 port, trusting NGINX on 127.0.0.1 to name
the client, and NGINX in front of them with the production configuration (rate limits
unchanged). "direct" splits the clients evenly over the two worker ports; "NGINX" sends every
client to NGINX's port. Each figure is
measured on a fresh event, direct first then NGINX, on the same two workers.

Rate limits: every join, hold and spike fan carries its own freshly minted, validly signed
`bo_visitor` cookie (Signer with the bench secret), so NGINX keys its limits on that visitor and
each key sees one join and one hold: well under the per-visitor limits. Per-address limits do
not apply: loopback clients are exempt in the template. The websocket visitors join without a
cookie (exempt on loopback) and take the cookie the app sets.

Load generators run on this machine, in their own processes, bound to 127.0.x.y source
addresses (one per client process and phase: no two share ephemeral ports); traffic goes to
127.0.0.1 only. Every loop is bounded in count and time; every process started here is
stopped at the end, on error too. Helpers come from loadtest.bench;
this file is also its own child processes (`--role joingen|holder|spike`, internal)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import msgspec
import uvloop

from loadtest.bench import Bench, levels_arg
from loadtest.benchkit.common import HOST, VISITOR_COOKIE, LoadResult, LoadSpec, Reply, WsSpec
from loadtest.benchkit.loadgen import Tally, client_session, loadgen, timed
from loadtest.benchkit.measure import (
    cpu_of,
    cpu_seconds,
    free_port,
    loadavg,
    machine,
    mint_cookies,
    open_fds,
    percentile,
    proc_parents,
    rss_kib,
    split,
)
from loadtest.benchkit.orchestra import (
    Child,
    Processes,
    arm_round,
    arrivals,
    collect,
    create_event,
    event_body,
    patch_event,
    quit_wsclients,
    read_round,
    run_embedded,
    spawn_wsclients,
    spec_args,
    ws_calls,
)
from loadtest.benchkit.report import error_lines, load_line, status_note, table, totals

if TYPE_CHECKING:
    from server.runtime.stack import Stack

Mode = Literal["direct", "nginx"]
MODES: tuple[Mode, Mode] = ("direct", "nginx")
SEATS_PER_ROW = 100
SEATS_PER_HOLD = 2
POLL_FALLBACK_S = 5.0


def log(message: str) -> None:
    print(f"[bench-nginx {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def seats_for(index: int) -> list[str]:
    """Two adjacent seats of section A, distinct for every index (no hold ever conflicts)."""
    per_row = SEATS_PER_ROW // SEATS_PER_HOLD
    row, slot = index // per_row + 1, index % per_row
    return [f"A-{row}-{SEATS_PER_HOLD * slot + k + 1}" for k in range(SEATS_PER_HOLD)]


# ---- messages to and from the child processes --------------------------------------------------


class HoldSpec(msgspec.Struct, frozen=True):
    base: str
    event_id: str
    count: int
    connections: int
    source: str
    first_index: int
    seconds: float
    prep_seconds: float


class SpikeSpec(msgspec.Struct, frozen=True):
    base: str
    event_id: str
    fans: int
    window: float
    source: str
    start_at: float
    first_index: int
    timeout: float


class SpikeResult(msgspec.Struct):
    fans: int = 0
    joined: int = 0
    admitted: int = 0
    held: int = 0
    join_ms: list[float] = msgspec.field(default_factory=list)
    admit_ms: list[float] = msgspec.field(default_factory=list)
    hold_ms: list[float] = msgspec.field(default_factory=list)
    statuses: dict[str, int] = msgspec.field(default_factory=dict)
    first_error: str = ""
    cpu_seconds: float = 0.0


# ---- child role: holds by admitted visitors ------------------------------------------------------


@dataclass
class Fan:
    index: int
    cookie: str
    queue_id: str = ""
    token: str = ""


async def holder(spec: HoldSpec) -> None:
    """Join `count` fresh visitors and wait (bounded) until each is admitted and has its access
    token (untimed); print a Reply line; read the start time (CLOCK_MONOTONIC) from stdin; then
    send one hold per admitted visitor as fast as `connections` allow and print a LoadResult."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    cookies = mint_cookies(spec.count)
    fans = [Fan(spec.first_index + i, cookie) for i, cookie in enumerate(cookies)]
    error = ""
    async with client_session(spec.connections, spec.source) as session:
        prep_deadline = time.monotonic() + spec.prep_seconds
        gate = asyncio.Semaphore(spec.connections)

        async def ask(method: str, path: str, fan: Fan, what: str) -> dict[str, Any] | None:
            """The decoded answer to one request as `fan`, or None (the first error noted)."""
            nonlocal error
            try:
                async with session.request(
                    method, spec.base + path, headers={"Cookie": f"{VISITOR_COOKIE}={fan.cookie}"}
                ) as response:
                    body = await response.read()
                    if response.status != 200:
                        error = error or f"{what} HTTP {response.status}"
                        return None
                    answer: dict[str, Any] = msgspec.json.decode(body)
                    return answer
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = error or f"{what} {type(exc).__name__}: {exc}"
                return None

        async def join(fan: Fan) -> None:
            async with gate:
                if time.monotonic() > prep_deadline:
                    return
                path = f"/api/events/{spec.event_id}/queue"
                status = await ask("POST", path, fan, "join")
                if status is not None:
                    fan.queue_id = str(status["queue_id"])
                    fan.token = str(status.get("access_token") or "")

        async def poll(fan: Fan) -> None:
            async with gate:
                status = await ask("GET", f"/api/queue/{fan.queue_id}", fan, "status")
                if status is not None:
                    fan.token = str(status.get("access_token") or "")

        await asyncio.gather(*(join(f) for f in fans))
        for _ in range(40):  # admission runs every tick_ms: a few polls suffice
            pending = [f for f in fans if f.queue_id and not f.token]
            if not pending or time.monotonic() > prep_deadline:
                break
            await asyncio.sleep(0.3)
            await asyncio.gather(*(poll(f) for f in pending))
        ready = [f for f in fans if f.token]
        sys.stdout.write(
            msgspec.json.encode(Reply(ok=len(ready), failed=len(fans) - len(ready), error=error))
            .decode()
            .strip()
            + "\n"
        )
        sys.stdout.flush()
        line = await asyncio.wait_for(reader.readline(), spec.prep_seconds + 120)
        start_at = float(line or b"0")
        tally = Tally()
        todo = list(reversed(ready))

        async def step() -> None:
            fan = todo.pop()
            headers = {
                "Cookie": f"{VISITOR_COOKIE}={fan.cookie}",
                "Authorization": f"Bearer {fan.token}",
            }
            body = msgspec.json.encode({"seats": seats_for(fan.index)})
            t0 = time.perf_counter()
            try:
                async with session.post(
                    f"{spec.base}/api/events/{spec.event_id}/holds",
                    data=body,
                    headers={**headers, "Content-Type": "application/json"},
                ) as response:
                    text = await response.read()
                    problem = f"HTTP {response.status} {text[:120]!r}"
                    tally.answered(response.status, 201, t0, problem)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                tally.failed(exc)

        window = await timed(start_at, spec.seconds, spec.connections, lambda: bool(todo), step)
    sys.stdout.write(msgspec.json.encode(tally.result(window)).decode() + "\n")
    sys.stdout.flush()


async def wait_admitted(
    session: aiohttp.ClientSession,
    ws_base: str,
    base: str,
    status: dict[str, object],
    cookie: dict[str, str],
) -> str:
    """Open the queue websocket and wait for `admitted`: its access token. After
    POLL_FALLBACK_S without it, also ask GET /api/queue/{id} once a second (the browser's
    polling fallback) and return "poll:<token>" if that finds the visitor admitted; "!reason"
    on failure. Bounded by the caller's timeout and by a message count."""
    queue_id = str(status["queue_id"])
    async with session.ws_connect(
        f"{ws_base}/api/queue/{queue_id}/ws", headers=cookie, autoping=True
    ) as ws:
        poll_at = time.monotonic() + POLL_FALLBACK_S
        for _ in range(10_000):  # status, ticks, pongs, then admitted
            try:
                msg = await ws.receive(timeout=max(0.01, poll_at - time.monotonic()))
            except TimeoutError:
                poll_at = time.monotonic() + 1.0
                async with session.get(f"{base}/api/queue/{queue_id}", headers=cookie) as r:
                    body = msgspec.json.decode(await r.read()) if r.status == 200 else {}
                if body.get("state") == "admitted" and body.get("access_token"):
                    return "poll:" + str(body["access_token"])
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                return f"!websocket {msg.type.name}"
            data = msgspec.json.decode(msg.data)
            if data.get("type") == "admitted":
                return str(data["access_token"])
            if data.get("type") == "closed":
                return f"!websocket closed: {data.get('reason')}"
    return "!no admission"


# ---- child role: spike fans ------------------------------------------------------------------


async def spike(spec: SpikeSpec) -> SpikeResult:
    """`fans` fans arrive at random over `window` seconds from `start_at`. Each, on its own
    connections like a browser: POST join (fresh signed cookie), open the queue websocket and
    wait for `admitted`, then POST one hold with the access token."""
    result = SpikeResult(fans=spec.fans)
    statuses: Counter[str] = Counter()
    cookies = mint_cookies(spec.fans)
    rng = random.Random(spec.first_index)
    offsets = sorted(rng.uniform(0, spec.window) for _ in range(spec.fans))
    ws_base = "ws" + spec.base[len("http") :]
    cpu0 = time.process_time()

    def fail(what: str) -> None:
        statuses[what] += 1
        result.first_error = result.first_error or what

    async def fan(i: int) -> None:
        await asyncio.sleep(max(0.0, spec.start_at + offsets[i] - time.monotonic()))
        cookie = {"Cookie": f"{VISITOR_COOKIE}={cookies[i]}"}
        try:
            async with (
                asyncio.timeout(spec.timeout),
                client_session(2, spec.source, spec.timeout) as session,
            ):
                t0 = time.monotonic()
                async with session.post(
                    f"{spec.base}/api/events/{spec.event_id}/queue", headers=cookie
                ) as response:
                    body = await response.read()
                    if response.status != 200:
                        return fail(f"join HTTP {response.status}")
                status = msgspec.json.decode(body)
                result.join_ms.append(1000 * (time.monotonic() - t0))
                result.joined += 1
                token = str(status.get("access_token") or "")
                if not token:
                    token = await wait_admitted(session, ws_base, spec.base, status, cookie)
                    if token.startswith("!"):
                        return fail(token[1:])
                    if token.startswith("poll:"):
                        token = token[len("poll:") :]
                        statuses["admitted, but no `admitted` message (GET status found it)"] += 1
                result.admit_ms.append(1000 * (time.monotonic() - t0))
                result.admitted += 1
                t1 = time.monotonic()
                async with session.post(
                    f"{spec.base}/api/events/{spec.event_id}/holds",
                    data=msgspec.json.encode({"seats": seats_for(spec.first_index + i)}),
                    headers={
                        **cookie,
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                ) as response:
                    await response.read()
                    if response.status != 201:
                        return fail(f"hold HTTP {response.status}")
                result.hold_ms.append(1000 * (time.monotonic() - t1))
                result.held += 1
        except TimeoutError:
            fail(f"over {spec.timeout:g} s")
        except (aiohttp.ClientError, OSError, ValueError, KeyError) as exc:
            fail(f"{type(exc).__name__}: {str(exc)[:80]}")
        return None

    await asyncio.gather(*(fan(i) for i in range(spec.fans)))
    result.statuses = dict(statuses)
    result.cpu_seconds = time.process_time() - cpu0
    for values in (result.join_ms, result.admit_ms, result.hold_ms):
        values[:] = [round(x, 3) for x in values]
    return result


# ---- orchestrator --------------------------------------------------------------------------------


def own_role_args(role: str, spec: msgspec.Struct) -> list[str]:
    return spec_args(role, spec, module="loadtest.bench_nginx")


def nginx_workers_of(master: int) -> list[int]:
    """The worker processes of an NGINX master (not its cache manager and loader)."""
    return [
        pid
        for pid, (ppid, cmdline) in proc_parents().items()
        if ppid == master and cmdline.startswith("nginx: worker")
    ]


def listen_overflows() -> int:
    """TcpExt ListenOverflows of this network namespace: SYNs or handshakes dropped because a
    listening socket's accept queue was full."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for head, vals in zip(lines[::2], lines[1::2], strict=False):
            if head.startswith("TcpExt:"):
                return int(vals.split()[head.split().index("ListenOverflows")])
    return 0


NGINX_LOG_LINE = re.compile(r"\[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$")


def summarise_nginx_log(text: str, top: int = 3) -> str:
    """The most frequent NGINX error-log messages (levels warn and above), with counts."""
    found: Counter[str] = Counter()
    for line in text.splitlines():
        match = NGINX_LOG_LINE.search(line)
        if match and match.group(1) in ("warn", "error", "crit", "alert", "emerg"):
            message = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "ADDR", match.group(2))
            found[f"[{match.group(1)}] {message[:110]}"] += 1
    return "; ".join(f"{n} x {m}" for m, n in found.most_common(top))


def source_address(phase: int, mode: Mode, client: int) -> str:
    """A loopback source address of its own for each phase, mode and client process."""
    return f"127.0.{phase}.{(100 if mode == 'nginx' else 10) + client}"


def pcts(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    return " / ".join(f"{percentile(ordered, q):.0f}" for q in (0.5, 0.95, 0.99))


@dataclass
class Cell:
    """One figure in one mode: the main value, and short extras shown under it."""

    value: float = float("nan")
    text: str = ""
    extras: dict[str, str] = field(default_factory=dict)
    note: str = ""
    runs: list[float] = field(default_factory=list)


CPU = tuple[float, float, float]  # seconds used so far: app workers, NGINX workers, Redis


def costs(cell: Cell, what: str, ok: int, latencies: list[float], cpu0: CPU, cpu1: CPU) -> None:
    """Latency percentiles and app and NGINX CPU per good answer, as extras of `cell`."""
    cell.extras["latency p50 / p99 ms"] = (
        f"{percentile(latencies, 0.5):.1f} / {percentile(latencies, 0.99):.1f}"
    )
    if ok:
        cell.extras[f"app CPU ms/{what}"] = f"{1000 * (cpu1[0] - cpu0[0]) / ok:.3f}"
        cell.extras[f"NGINX CPU ms/{what}"] = f"{1000 * (cpu1[1] - cpu0[1]) / ok:.3f}"


@dataclass
class NginxBench:
    args: argparse.Namespace
    procs: Processes
    bench: Bench
    folder: Path
    stack: Stack | None = None  # the two workers and NGINX, as `up` starts them
    rows: dict[str, dict[Mode, Cell]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    load_start: str = field(default_factory=loadavg)
    nginx_workers: int = 0
    nginx_max_files: int = 0
    run_order: str = ""
    log_offset: int = 0
    nginx_log: list[str] = field(default_factory=list)

    # -- start-up ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Two workers (`server worker --no-reuse-port`, each on its own port) and NGINX in
        front of them: server.runtime.stack.Stack, as `python -m server up` starts them
        (imported here: the load-generating children of this module need none of it)."""
        from server.runtime import nginx, stack

        binary = nginx.find_nginx()
        if binary is None:
            raise RuntimeError("nginx not found (apt-get install nginx)")
        settings = self.bench.settings(free_port())
        self.stack = stack.Stack(settings, self.folder, binary, free_port())
        await asyncio.to_thread(self.stack.start)
        for _ in range(200):  # the master forks its workers right after it listens
            if self.nginx_worker_pids():
                break
            await asyncio.sleep(0.05)
        self.nginx_workers = len(self.nginx_worker_pids())
        self.nginx_max_files = self.stack.params.max_files if self.stack.params else 0
        log(
            f"workers on {self.worker_ports}, NGINX on {self.nginx_port} "
            f"({self.nginx_workers} NGINX workers)"
        )

    async def stop(self) -> None:
        """NGINX first, then the workers (Stack.stop), off the event loop."""
        if self.stack is not None:
            await asyncio.to_thread(self.stack.stop)

    @property
    def worker_ports(self) -> list[int]:
        return self.stack.worker_ports if self.stack is not None else []

    @property
    def nginx_port(self) -> int:
        return self.stack.port if self.stack is not None else 0

    def diagnose(self, label: str, mode: Mode, overflows: int) -> None:
        """Note what the kernel and NGINX's error log saw during one phase."""
        cell = self.cell(f"kernel listen-queue overflows during {label}", mode)
        cell.value, cell.text = overflows, f"{overflows:,}"
        if mode != "nginx":
            return
        path = self.folder / "nginx" / "logs" / "error.log"
        with contextlib.suppress(OSError):
            with path.open("rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
                self.log_offset = f.tell()
            summary = summarise_nginx_log(text)
            if summary:
                self.nginx_log.append(f"{label}: {summary}")

    def nginx_worker_pids(self) -> list[int]:
        front = self.stack.front if self.stack is not None else None
        return nginx_workers_of(front.pid) if front is not None else []

    def app_pids(self) -> list[int]:
        return [w.pid for w in self.stack.workers] if self.stack is not None else []

    def base(self, mode: Mode, client: int) -> str:
        port = self.worker_ports[client % 2] if mode == "direct" else self.nginx_port
        return f"http://{HOST}:{port}"

    def port(self, mode: Mode, client: int) -> int:
        return self.worker_ports[client % 2] if mode == "direct" else self.nginx_port

    def cell(self, name: str, mode: Mode) -> Cell:
        if name not in self.rows:
            self.rows[name] = {}
            self.order.append(name)
        return self.rows[name].setdefault(mode, Cell())

    async def create_event(self, event_id: str, rows: int, rate_per_min: int) -> None:
        sections = [
            {
                "id": "A",
                "name": "Floor",
                "price": 5000,
                "rows": rows,
                "seats_per_row": SEATS_PER_ROW,
            }
        ]
        body = event_body(
            event_id,
            sections,
            rate_per_min=rate_per_min,
            max_active=1_000_000,
            max_seats_per_order=6,
        )
        await create_event(self.worker_ports[0], body)

    def cpu(self) -> CPU:
        app, front = cpu_of(self.app_pids()), cpu_of(self.nginx_worker_pids())
        return app, front, cpu_seconds(self.bench.redis_pid)

    # -- joins per second -------------------------------------------------------------------

    async def joins(self, mode: Mode, run: int) -> None:
        """One timed run of joins; the table keeps the best of the runs (the least disturbed
        by the other work on the box) and lists every run's rate."""
        a = self.args
        event_id = f"bn-join-{mode}-{run}"
        await self.create_event(event_id, 1, 0)
        start_at = time.monotonic() + 1.5
        gens = []
        for i, (n, c) in enumerate(zip(split(a.requests, 2), split(a.connections, 2), strict=True)):
            source = source_address(1, mode, 2 * run + i)
            url = f"{self.base(mode, i)}/api/events/{event_id}/queue"
            spec = LoadSpec(url, n, a.seconds, c, source, start_at)
            gens.append(
                await self.procs.spawn("joingen", own_role_args("joingen", spec), capture=True)
            )
        try:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            cpu0 = self.cpu()
            results = await collect(gens, a.seconds + 60, LoadResult, "join generator")
            cpu1 = self.cpu()
        finally:
            await self.procs.stop(gens)
        wall, ok, errors, lat, rate = totals(results)
        log(f"joins {mode} run {run + 1}: {rate:,.0f}/s ({ok} ok, {errors} errors in {wall:.1f} s)")
        cell = self.cell("joins per second (best run)", mode)
        cell.runs.append(rate)
        if len(cell.runs) > 1:
            cell.extras["every run, joins/s"] = " ".join(f"{x:,.0f}" for x in cell.runs)
        if rate < max(cell.runs):
            return
        cell.value, cell.text = rate, f"{rate:,.0f}"
        cell.extras["ok / errors (best run)"] = f"{ok:,} / {errors}"
        costs(cell, "join", ok, lat, cpu0, cpu1)
        cell.note = status_note(results) if errors else ""

    # -- websockets held, tick to all -------------------------------------------------------

    async def websockets(self, mode: Mode) -> None:
        a = self.args
        levels = sorted(a.ws_levels)
        event_id = f"bn-ws-{mode}"
        await self.create_event(event_id, 1, 0)
        clients: list[Child] = []
        count = a.ws_clients
        try:
            specs = [
                WsSpec(self.port(mode, i), event_id, source_address(2, mode, i), a.open_concurrency)
                for i in range(count)
            ]
            await spawn_wsclients(self.procs, clients, specs)
            cap = a.phase_seconds
            replies = await ws_calls(clients, "join", levels[-1], cap)
            joined = sum(r.ok for r in replies)
            if joined < levels[-1]:
                self.errors.append(f"websockets {mode}: {joined} joined: {replies[0].error}")
            await asyncio.sleep(0.5)
            app0 = sum(rss_kib(p) for p in self.app_pids())
            front0 = sum(rss_kib(p) for p in self.nginx_worker_pids())
            paused = False
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                for level in levels:
                    name = f"websockets held (asked {level:,})"
                    cell = self.cell(name, mode)
                    started = time.monotonic()
                    replies = await ws_calls(clients, "open", level, cap)
                    opened = sum(r.open for r in replies)
                    failed = sum(r.failed for r in replies)
                    cell.value, cell.text = opened, f"{opened:,}"
                    cell.extras["open s (all so far)"] = f"{time.monotonic() - started:.1f}"
                    if failed:
                        cell.note = f"{failed} failed: " + next(
                            (r.error for r in replies if r.error), ""
                        )
                    await asyncio.sleep(a.settle)
                    app = sum(rss_kib(p) for p in self.app_pids())
                    # Only the first websocket run grows the app: the second reuses memory the
                    # first freed (CPython keeps it), so its growth would read as ~0.
                    cell.extras["app RSS +kB/socket"] = (
                        f"{(app - app0) * 1.024 / opened:.1f}"
                        if opened and mode == "direct"
                        else "n/a (reused)"
                    )
                    if mode == "nginx":
                        front = sum(rss_kib(p) for p in self.nginx_worker_pids())
                        fds = sum(open_fds(p) for p in self.nginx_worker_pids())
                        cell.extras["NGINX RSS +kB/socket"] = (
                            f"{(front - front0) * 1.024 / opened:.1f}" if opened else "n/a"
                        )
                        cell.extras["NGINX worker fds"] = f"{fds:,}"
                    log(f"websockets {mode}: {opened} open ({failed} failed)")
                    tick = self.cell(f"tick to all of them (asked {level:,}): PATCH->last ms", mode)
                    e2e: list[float] = []
                    spread: list[float] = []
                    delivered: list[int] = []
                    for _ in range(a.rounds):
                        paused = not paused
                        got = await self.tick_round(session, clients, event_id, paused)
                        if got is not None:
                            e2e.append(got[0])
                            spread.append(got[1])
                            delivered.append(got[2])
                        await asyncio.sleep(a.broadcast_ms / 1000 + 0.2)
                    if e2e:
                        tick.value = statistics.median(e2e)
                        tick.text = f"{tick.value:.0f}"
                        tick.extras["first->last ms (median)"] = f"{statistics.median(spread):.0f}"
                        tick.extras["delivered (worst round)"] = f"{min(delivered):,}/{opened:,}"
                        tick.extras["rounds (min-max ms)"] = (
                            f"{len(e2e)} ({min(e2e):.0f}-{max(e2e):.0f})"
                        )
                        log(f"tick {mode} {opened}: median {tick.value:.0f} ms")
        finally:
            await quit_wsclients(self.procs, clients)
            await asyncio.sleep(1.0)  # let the workers (and NGINX) drop the closed sockets

    async def tick_round(
        self, session: aiohttp.ClientSession, clients: list[Child], event_id: str, paused: bool
    ) -> tuple[float, float, int] | None:
        """One admin PATCH toggling `paused`; the next admission step on each worker broadcasts
        a tick. (PATCH->last, first->last, sockets reached), or None if none was."""
        timeout = self.args.round_timeout
        await arm_round(clients, paused, timeout)
        sent = time.monotonic()
        await patch_event(session, self.worker_ports[0], event_id, {"paused": paused})
        results = await read_round(clients, timeout)
        seen = arrivals(results)
        if seen is None:
            return None
        first, last = seen
        return 1000 * (last - sent), 1000 * (last - first), sum(r.ok for r in results)

    # -- holds per second -------------------------------------------------------------------

    async def holds(self, mode: Mode) -> None:
        a = self.args
        event_id = f"bn-hold-{mode}"
        rows = math.ceil(a.holds * SEATS_PER_HOLD / SEATS_PER_ROW) + 1
        await self.create_event(event_id, rows, 1_000_000)
        gens = []
        try:
            first = 0
            for i, (n, c) in enumerate(
                zip(split(a.holds, 2), split(a.connections, 2), strict=True)
            ):
                spec = HoldSpec(self.base(mode, i), event_id, n, c,
                                source_address(3, mode, i), first,
                                a.seconds, a.phase_seconds)  # fmt: skip
                first += n
                gens.append(
                    await self.procs.spawn("holder", own_role_args("holder", spec), pipes=True)
                )
            ready = await asyncio.gather(*(g.read(a.phase_seconds + 60) for g in gens))
            prepared = sum(r.ok for r in ready)
            start_at = time.monotonic() + 0.3
            cpu0 = self.cpu()
            outs = await asyncio.gather(
                *(
                    asyncio.wait_for(g.proc.communicate(f"{start_at}\n".encode()), a.seconds + 60)
                    for g in gens
                )
            )
            cpu1 = self.cpu()
        finally:
            await self.procs.stop(gens)
        results = [msgspec.json.decode(out, type=LoadResult) for out, _ in outs]
        wall, ok, errors, lat, rate = totals(results)
        cell = self.cell(f"holds per second ({SEATS_PER_HOLD} seats each)", mode)
        cell.value, cell.text = rate, f"{rate:,.0f}"
        cell.extras["ok / errors / admitted"] = f"{ok:,} / {errors} / {prepared:,}"
        costs(cell, "hold", ok, lat, cpu0, cpu1)
        notes = [r.error for r in ready if r.error] + [
            r.first_error for r in results if r.first_error
        ]
        if prepared < a.holds or errors or notes:
            cell.note = f"{prepared}/{a.holds} admitted; " + "; ".join(notes[:2])
        log(f"holds {mode}: {rate:,.0f}/s ({ok} ok, {errors} errors in {wall:.1f} s)")

    # -- spike ------------------------------------------------------------------------------

    async def spike(self, mode: Mode) -> None:
        a = self.args
        event_id = f"bn-spike-{mode}"
        rows = math.ceil(a.fans * SEATS_PER_HOLD / SEATS_PER_ROW) + 1
        await self.create_event(event_id, rows, 1_000_000)
        start_at = time.monotonic() + 2.0
        gens = []
        first = 0
        for i, n in enumerate(split(a.fans, 2)):
            spec = SpikeSpec(self.base(mode, i), event_id, n, a.window,
                             source_address(4, mode, i), start_at, first,
                             a.fan_timeout)  # fmt: skip
            first += n
            gens.append(await self.procs.spawn("spike", own_role_args("spike", spec), capture=True))
        try:
            within = a.window + a.fan_timeout + 60
            results = await collect(gens, within, SpikeResult, "spike client")
        finally:
            await self.procs.stop(gens)
        joined = sum(r.joined for r in results)
        admitted = sum(r.admitted for r in results)
        held = sum(r.held for r in results)
        cell = self.cell(f"spike: {a.fans:,} fans over {a.window:g} s, fans completed", mode)
        cell.value, cell.text = held, f"{held:,}/{a.fans:,}"
        cell.extras["joined / admitted"] = f"{joined:,} / {admitted:,}"
        statuses: Counter[str] = Counter()
        for r in results:
            statuses.update(r.statuses)
        if statuses:
            cell.note = f"outcomes besides the plain path: {dict(statuses)}"
        cpu = sum(r.cpu_seconds for r in results)
        cell.extras["spike clients CPU s"] = f"{cpu:.1f}"
        for name, values in (
            ("join p50/p95/p99 ms", [x for r in results for x in r.join_ms]),
            ("admission p50/p95/p99 ms", [x for r in results for x in r.admit_ms]),
            ("hold p50/p95/p99 ms", [x for r in results for x in r.hold_ms]),
        ):
            row = self.cell(f"spike {name}", mode)
            row.text = pcts(values)
            row.value = percentile(sorted(values), 0.5) if values else float("nan")
        log(f"spike {mode}: {held}/{a.fans} completed")

    # -- report -----------------------------------------------------------------------------

    def render(self) -> str:
        a = self.args
        out = [
            "",
            "Boxoffice NGINX bench — " + machine(),
            f"Two app processes (`server worker --no-reuse-port`, ports {self.worker_ports}); "
            f"'direct' splits the clients over both ports, 'NGINX' sends them all to NGINX "
            f"({self.nginx_workers} workers, production config, worker_rlimit_nofile "
            f"{self.nginx_max_files:,}) in front of the same two processes.",
            "Load generators, Redis and PostgreSQL share this 2-core box with the servers (and "
            "other jobs were running): every figure is a LOWER BOUND on the server, noisy.",
            "",
        ]
        width = 48
        header = f"  {'measurement':<{width}}{'direct':>22}{'NGINX':>22}{'NGINX/direct':>14}"
        out += table(header, 2)
        for name in self.order:
            cells = self.rows[name]
            d, n = cells.get("direct", Cell()), cells.get("nginx", Cell())
            ratio = ""
            if d.value and not math.isnan(d.value) and not math.isnan(n.value):
                ratio = f"{n.value / d.value:.2f}x"
            out.append(f"  {name:<{width}}{d.text or 'n/a':>22}{n.text or 'n/a':>22}{ratio:>14}")
            keys = list(dict.fromkeys([*d.extras, *n.extras]))
            for key in keys:
                out.append(
                    f"    {key:<{width - 2}}{d.extras.get(key, '-'):>22}"
                    f"{n.extras.get(key, '-'):>22}"
                )
            for label, c in (("direct", d), ("NGINX", n)):
                if c.note:
                    out.append(f"    note ({label}): {c.note}")
        out += [
            "",
            "How: joins — 2 client processes, "
            f"{a.connections} keep-alive connections, {a.requests:,} joins or {a.seconds:g} s, "
            "rate-0 event (nobody admitted), each join a fresh visitor with its own signed cookie.",
            "  websockets — "
            f"{a.ws_clients} raw-protocol client processes (loadtest.bench wsclient); visitors "
            "join first, sockets open level by level; a tick = admin PATCH toggling `paused`, "
            f"broadcast at each worker's next admission step (tick_ms={a.tick_ms}); "
            "'PATCH->last' = PATCH sent to the last socket's receipt (CLOCK_MONOTONIC).",
            "  holds — visitors joined and admitted first (untimed), then one 2-seat hold each, "
            f"distinct seats (never a conflict), over {a.connections} connections.",
            f"  spike — fans arrive uniformly over {a.window:g} s, each on its own connections: "
            "join, websocket until `admitted`, hold; admission rate unlimited "
            "(1,000,000/min), so 'admission' is join sent -> `admitted` received: "
            "the system's delay, not a queue wait. A fan with no `admitted` message "
            f"{POLL_FALLBACK_S:g} s after opening its websocket asks GET /api/queue/{{id}} once a "
            "second (the polling fallback; counted in the note).",
            "  Client-side latencies include the load generators' own CPU contention. "
            f"Order run (D direct, N NGINX; alternated against drift): {self.run_order}.",
            load_line(self.load_start),
        ]
        out.append(
            "Listen-queue overflows: TcpExt ListenOverflows of the whole network namespace "
            "(other jobs' sockets too), i.e. connections dropped because an accept queue was "
            "full; the app and NGINX both listen with a backlog of 4096."
        )
        if self.nginx_log:
            out += ["", "NGINX error log, most frequent messages per phase:"]
            out += [f"  {line}" for line in self.nginx_log]
        out += error_lines(self.errors)
        return "\n".join(out)


async def orchestrate(
    args: argparse.Namespace, folder: Path, urls: tuple[str, str], redis_pid: int
) -> tuple[str, bool]:
    procs = Processes(folder)
    bench = Bench(args, procs, urls[0], urls[1], redis_pid)
    stack = NginxBench(args, procs, bench, folder)
    complete = True
    try:
        async with asyncio.timeout(args.max_seconds):
            await stack.start()
            steps: list[tuple[str, int, Mode]] = []
            if "joins" not in args.skip:
                # Alternate the order between runs, so drift in the box's load hits both.
                for run in range(args.join_runs):
                    steps += [("joins", run, m) for m in (MODES if run % 2 == 0 else MODES[::-1])]
            for i, name in enumerate(("websockets", "holds", "spike")):
                if name not in args.skip:
                    steps += [(name, 0, m) for m in (MODES if i % 2 == 0 else MODES[::-1])]
            stack.run_order = ", ".join(
                f"{name}{run + 1 if name == 'joins' else ''} {'D' if mode == 'direct' else 'N'}"
                for name, run, mode in steps
            )
            for name, run, mode in steps:
                log(f"{name} ({mode})")
                overflows = listen_overflows()
                try:
                    if name == "joins":
                        await stack.joins(mode, run)
                    else:
                        await getattr(stack, name)(mode)
                except Exception as exc:
                    stack.errors.append(f"{name} ({mode}): {type(exc).__name__}: {exc}")
                    log(f"{name} ({mode}) failed: {exc}")
                finally:
                    label = f"{name}{run + 1 if name == 'joins' else ''}"
                    stack.diagnose(label, mode, listen_overflows() - overflows)
    except TimeoutError:
        stack.errors.append(f"stopped after --max-seconds {args.max_seconds}")
        complete = False
    except asyncio.CancelledError:
        stack.errors.append("interrupted: partial figures")
        complete = False
    except Exception as exc:
        stack.errors.append(f"{type(exc).__name__}: {exc}")
        complete = False
    finally:
        await stack.stop()
        await procs.stop_all()
    return stack.render(), complete


def run(args: argparse.Namespace) -> int:
    return run_embedded(
        args, orchestrate, "bo-bench-nginx-", "NGINX bench", log, world_readable=True
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_nginx", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--requests", type=int, default=20_000, help="joins per mode")
    parser.add_argument("--seconds", type=float, default=6.0, help="time cap per timed phase")
    parser.add_argument("--connections", type=int, default=100, help="HTTP connections")
    parser.add_argument("--join-runs", type=int, default=2, help="join runs per mode (best kept)")
    parser.add_argument(
        "--ws-levels",
        type=levels_arg,
        default=[2000, 5000],
        help="sockets per level (NGINX: 2 fds each)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="ticks timed per level")
    parser.add_argument("--open-concurrency", type=int, default=50, help="per ws client process")
    parser.add_argument("--holds", type=int, default=2000, help="holds per mode")
    parser.add_argument("--fans", type=int, default=1500, help="spike fans per mode")
    parser.add_argument("--window", type=float, default=2.0, help="spike arrival window, s")
    parser.add_argument("--fan-timeout", type=float, default=30.0, help="per fan, s")
    parser.add_argument("--tick-ms", type=int, default=100)
    parser.add_argument("--broadcast-ms", type=int, default=500)
    parser.add_argument("--round-timeout", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=0.5, help="pause before reading RSS")
    parser.add_argument("--phase-seconds", type=float, default=60.0, help="cap on set-up phases")
    parser.add_argument("--max-seconds", type=float, default=290.0, help="whole-run cap")
    parser.add_argument(
        "--skip",
        default="",
        type=lambda s: {x.strip() for x in s.split(",") if x.strip()},
        help="comma-separated: joins,websockets,holds,spike",
    )
    parser.add_argument("--role", choices=["joingen", "holder", "spike"], help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.seconds = min(args.requests, 2000), min(args.seconds, 2.0)
        args.join_runs, args.ws_levels, args.rounds = 1, [500], min(args.rounds, 2)
        args.holds, args.fans, args.window = min(args.holds, 300), min(args.fans, 200), 1.0
        args.fan_timeout, args.phase_seconds = min(args.fan_timeout, 15.0), 20.0
        args.max_seconds = min(args.max_seconds, 90.0)
    # Each client process holds at most ~9k sockets (20k descriptors a process here); an even
    # count keeps the direct split equal over the two worker ports.
    args.ws_clients = max(2, 2 * math.ceil(max(args.ws_levels) / 18_000))
    if not 2 <= args.connections <= 1000 or args.requests < 1 or args.seconds <= 0:
        parser.error("--connections 2..1000, --requests and --seconds positive")
    if not 1 <= args.join_runs <= 5:
        parser.error("--join-runs 1..5")
    if args.rounds < 1 or args.holds < 2 or args.fans < 2:
        parser.error("--rounds >= 1, --holds >= 2, --fans >= 2")
    if args.holds > 40_000 or args.fans > 40_000:
        parser.error("--holds and --fans at most 40000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.role == "joingen":
        result = uvloop.run(loadgen(msgspec.json.decode(args.spec, type=LoadSpec), signed=True))
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return 0
    if args.role == "holder":
        uvloop.run(holder(msgspec.json.decode(args.spec, type=HoldSpec)))
        return 0
    if args.role == "spike":
        spiked = uvloop.run(spike(msgspec.json.decode(args.spec, type=SpikeSpec)))
        sys.stdout.write(msgspec.json.encode(spiked).decode() + "\n")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
