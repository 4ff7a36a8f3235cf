"""Bot-challenge benchmark (`make bench`): what the proof of work costs fans, farms and the
server, printed side by side, never asserted.

(a) joins per second and server CPU per join with the challenge verified (policy adaptive, each
    join carrying a solved level-0 payload) against policy off, one app process, same run, after
    a warm-up: the difference is the verification's cost per join (CPU is read from /proc in
    10 ms ticks: use a few hundred joins); plus the check itself per level, in-process;
(b) the Python solver (the `altcha` library, loadtest/solver.py) per cost level: CPU per place
    and the places a farm gets per core-minute;
(c) a one-process farm against the app from one address (X-Forwarded-For from a trusted proxy),
    minting a fresh cookie per join, for a bounded time per policy: places, CPU, levels reached;
(d) the vendored widget in headless Chromium (static/js/challenge.js, as the waiting page calls
    it) per cost level: median solve time.

Private Redis and PostgreSQL in a temporary folder, app processes `python -m server worker`,
traffic to 127.0.0.1 only, every loop bounded in count and time, every process stopped at the
end. `--quick` is a short smoke run."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from loadtest import solver
from loadtest.benchkit.common import ADMIN_TOKEN, HOST, SECRET, log
from loadtest.benchkit.measure import cpu_seconds, free_port, loadavg, machine
from loadtest.benchkit.orchestra import (
    Child,
    Part,
    Processes,
    create_event,
    event_body,
    run_embedded,
    run_parts,
    wait_listening,
)
from loadtest.benchkit.report import error_lines, load_line, table

CHROMIUM = "/usr/bin/chromium"
FARM_ADDRESS = "198.51.100.7"  # the farm's one public address (TEST-NET-2), via X-Forwarded-For
GA = [{"id": "GA", "name": "Standing", "price": 3500, "capacity": 100_000}]


@dataclass
class JoinRow:
    policy: str
    joins: int = 0
    errors: int = 0
    rate: float = 0.0
    server_us: float = 0.0  # server CPU per join


@dataclass
class LevelRow:
    level: int
    expected_iterations: int
    solves: int = 0
    cpu_mean_s: float = 0.0
    cpu_median_s: float = 0.0
    check_us: float = 0.0  # the server's check of one solution, in-process
    chromium_median_s: float | None = None
    chromium_solves: int = 0

    @property
    def places_per_core_minute(self) -> float:
        return 60 / self.cpu_mean_s if self.cpu_mean_s else 0.0


@dataclass
class FarmRow:
    policy: str
    seconds: float = 0.0
    places: int = 0
    refused: int = 0
    cpu_s: float = 0.0
    levels: dict[int, int] = field(default_factory=dict)

    @property
    def per_core_minute(self) -> float:
        return 60 * self.places / self.cpu_s if self.cpu_s else 0.0


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Processes
    redis_url: str
    database_url: str
    joins: list[JoinRow] = field(default_factory=list)
    levels: list[LevelRow] = field(default_factory=list)
    farms: list[FarmRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    load_start: str = field(default_factory=loadavg)

    def __post_init__(self) -> None:
        from server.waiting.challenge import LEVELS

        top = self.args.top_level
        self.levels = [
            LevelRow(i, lvl.expected_iterations) for i, lvl in enumerate(LEVELS[: top + 1])
        ]

    # ---- the app ---------------------------------------------------------------------------

    async def start_app(self, port: int) -> Child:
        from server.core.settings import Settings, to_env

        settings = Settings(
            port=port,
            redis_url=self.redis_url,
            database_url=self.database_url,
            secret=SECRET,
            admin_token=ADMIN_TOKEN,
            trusted_proxies="127.0.0.1/32",
            rank_refresh_seconds=3600,
            grace_seconds=3600,
            return_window_seconds=3600,
            log_level="warning",
            log_format="text",
            database_pool_size=4,
        )
        child = await self.procs.spawn(
            "app", [sys.executable, "-m", "server", "worker"], to_env(settings)
        )
        await wait_listening([child], port)
        return child

    # ---- (a) joins with and without verification ---------------------------------------------

    async def bench_joins(self) -> None:
        n, port = self.args.joins, free_port()
        app = await self.start_app(port)
        base = f"http://{HOST}:{port}"
        try:
            for policy in ("off", "adaptive"):
                await create_event(port, event_body(f"join-{policy}", GA, challenge=policy,
                                                    rate_per_min=0, max_active=1000))  # fmt: skip
            log(f"(a) fetching and solving {n} level-0 challenges")
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
                challenges = []
                for _ in range(n):
                    async with s.get(f"{base}/api/events/join-adaptive/challenge") as r:
                        challenges.append(await r.json())
            payloads: list[str | None] = list(await asyncio.to_thread(solve_all, challenges))
            await self.join_round(base, app.pid, "join-off", [None] * max(20, n // 4))  # warm-up
            rounds: list[tuple[str, list[str | None]]] = [
                ("off", [None] * n),
                ("adaptive", payloads),
            ]
            for policy, bodies in rounds:
                row = await self.join_round(base, app.pid, f"join-{policy}", bodies)
                row.policy = policy
                self.joins.append(row)
                log(f"(a) policy {policy}: {row.rate:,.0f} joins/s, {row.server_us:,.0f} µs CPU")
        finally:
            await self.procs.stop([app])

    async def join_round(
        self, base: str, pid: int, event_id: str, bodies: list[str | None]
    ) -> JoinRow:
        row = JoinRow(event_id)
        url = f"{base}/api/events/{event_id}/queue"
        queue = list(bodies)
        connector = aiohttp.TCPConnector(limit=self.args.connections)
        async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                         timeout=aiohttp.ClientTimeout(total=60)) as s:  # fmt: skip

            async def worker() -> None:
                while queue:
                    body = queue.pop()
                    kwargs: dict[str, Any] = {} if body is None else {"json": {"altcha": body}}
                    async with s.post(url, **kwargs) as r:
                        await r.read()
                        if r.status == 200:
                            row.joins += 1
                        else:
                            row.errors += 1

            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            await asyncio.gather(*(worker() for _ in range(self.args.connections)))
            wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        row.rate = row.joins / wall if wall else 0.0
        row.server_us = 1e6 * cpu / max(1, row.joins + row.errors)
        return row

    # ---- (b) the Python solver per level, and the server's check -----------------------------

    def bench_solver(self) -> None:
        from redis.asyncio import Redis

        from server.core.tokens import Signer
        from server.waiting.challenge import Guard

        guard = Guard(Redis(), Signer(SECRET).subkey("altcha"))  # no Redis call is made
        for row in self.levels:
            spent: list[float] = []
            payload = ""
            deadline = time.monotonic() + self.args.level_seconds
            while len(spent) < self.args.samples and (not spent or time.monotonic() < deadline):
                solved = solver.solve(guard.challenge("bench", row.level))
                spent.append(solved.cpu_s)
                payload = solved.payload
            row.solves = len(spent)
            row.cpu_mean_s, row.cpu_median_s = statistics.fmean(spent), statistics.median(spent)
            checks = 20
            t0 = time.perf_counter()
            for _ in range(checks):
                assert guard.check("bench", payload) is not None
            row.check_us = 1e6 * (time.perf_counter() - t0) / checks
            log(f"(b) level {row.level}: {row.solves} solves, mean {row.cpu_mean_s:.3f} s CPU")

    async def run_solver(self) -> None:
        await asyncio.to_thread(self.bench_solver)

    # ---- (c) a one-process farm from one address, per policy -----------------------------------

    async def bench_farm(self) -> None:
        port = free_port()
        app = await self.start_app(port)
        base = f"http://{HOST}:{port}"
        try:
            for policy in ("off", "adaptive", "always"):
                event_id = f"farm-{policy}"
                await create_event(port, event_body(event_id, GA, challenge=policy,
                                                    rate_per_min=0, max_active=1000))  # fmt: skip
                row = await asyncio.to_thread(farm, base, event_id, policy, self.args.farm_seconds)
                self.farms.append(row)
                log(f"(c) farm, policy {policy}: {row.places} places, {row.cpu_s:.1f} s CPU")
        finally:
            await self.procs.stop([app])

    # ---- (d) the widget in headless Chromium -----------------------------------------------------

    async def bench_chromium(self) -> None:
        from playwright.async_api import async_playwright
        from redis.asyncio import Redis

        from server import assets
        from server.core.tokens import Signer
        from server.waiting.challenge import Guard

        guard = Guard(Redis(), Signer(SECRET).subkey("altcha"))
        page_html = (
            "<!doctype html><html><head><script src='/static/js/common.js' defer></script>"
            "<script src='/static/js/challenge.js' defer></script></head><body></body></html>"
        )

        async def index(_: web.Request) -> web.Response:
            return web.Response(text=page_html, content_type="text/html")

        app = web.Application()
        app.router.add_get("/", index)
        app.router.add_static("/static", assets.STATIC)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, HOST, port).start()
        try:
            async with async_playwright() as p:
                browser = await p.chromium.launch(
                    executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
                )
                page = await browser.new_page()
                await page.goto(f"http://{HOST}:{port}/")
                await page.wait_for_function("window.BO && window.BO.challenge")
                await page.evaluate("BO.challenge.load()")
                for row in self.levels:
                    times: list[float] = []
                    deadline = time.monotonic() + self.args.level_seconds
                    while len(times) < self.args.samples and (
                        not times or time.monotonic() < deadline
                    ):
                        seconds = await page.evaluate(
                            """async (challenge) => {
                                const t0 = performance.now();
                                await BO.challenge.solveChallenge(challenge);
                                return (performance.now() - t0) / 1000;
                            }""",
                            guard.challenge("bench", row.level),
                        )
                        times.append(float(seconds))
                    row.chromium_solves = len(times)
                    row.chromium_median_s = statistics.median(times)
                    log(f"(d) level {row.level}: Chromium median {row.chromium_median_s:.2f} s")
                await browser.close()
        finally:
            await runner.cleanup()

    # ---- report -------------------------------------------------------------------------------

    def render(self) -> str:
        out = [
            "",
            "Boxoffice bot-challenge benchmark (loadtest/bench_challenge.py)",
            f"machine: {machine()}",
            load_line(self.load_start),
            "",
            f"(a) joins, one app process, {self.args.connections} connections, a new visitor each",
            *table("policy | joins/s | ok | refused | server CPU µs per join"),
        ]
        for j in self.joins:
            out.append(
                f"    {j.policy} | {j.rate:,.0f} | {j.joins} | {j.errors} | {j.server_us:,.0f}"
            )
        if len(self.joins) == 2:
            off, on = self.joins
            out.append(
                f"    verification costs {on.server_us - off.server_us:,.0f} µs of server CPU per join"
            )
        out += [
            "",
            "(b) per cost level: Python solver (one core) and the widget in headless Chromium",
            *table("level | expected iterations | Chromium median s (n) | Python CPU s per place "
                   "mean / median (n) | farm places per core-minute | server check µs"),
        ]  # fmt: skip
        for r in self.levels:
            chromium = (
                "-" if r.chromium_median_s is None
                else f"{r.chromium_median_s:.2f} ({r.chromium_solves})"
            )  # fmt: skip
            python = (
                "-" if not r.solves else f"{r.cpu_mean_s:.3f} / {r.cpu_median_s:.3f} ({r.solves})"
            )
            out.append(
                f"    {r.level} | {r.expected_iterations / 1e6:.2f} M | {chromium} | {python} | "
                f"{r.places_per_core_minute:,.0f} | {r.check_us:,.0f}"
            )
        out += [
            "",
            f"(c) a one-process farm from one address, fresh cookie per join, "
            f"{self.args.farm_seconds:.0f} s per policy",
            *table("policy | places | refused | farm CPU s | places per core-minute | levels paid"),
        ]
        for f in self.farms:
            paid = ", ".join(f"L{k}: {v}" for k, v in sorted(f.levels.items())) or "none"
            out.append(
                f"    {f.policy} | {f.places} | {f.refused} | {f.cpu_s:.1f} | "
                f"{f.per_core_minute:,.0f} | {paid}"
            )
        out += error_lines(self.errors)
        return "\n".join(out)


def solve_all(challenges: list[dict[str, Any]]) -> list[str]:
    """Solve challenges on both cores (two solver processes)."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        return [p.payload for p in pool.map(solver.solve, challenges)]


def farm(base: str, event_id: str, policy: str, seconds: float) -> FarmRow:
    """One thread, one address, a fresh visitor per place: challenge, solve, join, repeat."""
    import json
    import urllib.error
    import urllib.request

    row = FarmRow(policy)
    headers = {"X-Forwarded-For": FARM_ADDRESS, "Content-Type": "application/json"}

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(base + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    cpu0, t0 = time.thread_time(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        body = b""
        if policy != "off":
            status, challenge = call("GET", f"/api/events/{event_id}/challenge")
            if status != 200:
                row.refused += 1
                time.sleep(0.1)
                continue
            solved = solver.solve(challenge)
            if solved.level is not None:
                row.levels[solved.level] = row.levels.get(solved.level, 0) + 1
            body = json.dumps({"altcha": solved.payload}).encode()
        status, _ = call("POST", f"/api/events/{event_id}/queue", body)
        if status == 200:
            row.places += 1
        else:
            row.refused += 1
            if status == 429:
                time.sleep(0.1)
    row.seconds, row.cpu_s = time.monotonic() - t0, time.thread_time() - cpu0
    return row


async def orchestrate(
    args: argparse.Namespace, folder: Path, urls: tuple[str, str], redis_pid: int
) -> tuple[str, bool]:
    redis_url, database_url = urls
    bench = Bench(args, Processes(folder), redis_url, database_url)
    chromium = args.chromium
    parts = [
        Part("(a) joins with and without verification", False, bench.bench_joins, "(a)"),
        Part("(b) Python solver per level", False, bench.run_solver, "(b)"),
        Part("(c) farm per policy", False, bench.bench_farm, "(c)"),
        Part("(d) Chromium per level", not chromium, bench.bench_chromium, "(d)"),
    ]
    if not chromium:
        bench.errors.append(f"(d) skipped: {CHROMIUM} not found or --skip-chromium")
    return await run_parts(bench, parts)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    from server.waiting.challenge import LEVELS

    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_challenge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--joins", type=int, default=400, help="(a) joins per policy")
    parser.add_argument("--connections", type=int, default=20, help="(a) concurrent joins")
    parser.add_argument("--samples", type=int, default=9, help="(b, d) solves per level at most")
    parser.add_argument("--level-seconds", type=float, default=30.0,
                        help="(b, d) time per level after which no new solve starts")  # fmt: skip
    parser.add_argument("--top-level", type=int, default=len(LEVELS) - 1, help="(b, d) last level")
    parser.add_argument("--farm-seconds", type=float, default=40.0, help="(c) per policy")
    parser.add_argument("--skip-chromium", action="store_true")
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="stop the run after")
    args = parser.parse_args(argv)
    if args.quick:
        args.joins, args.samples, args.level_seconds = 40, 2, 2.0
        args.top_level, args.farm_seconds, args.max_seconds = 3, 6.0, 300.0
    args.top_level = max(0, min(args.top_level, len(LEVELS) - 1))
    args.chromium = os.path.exists(CHROMIUM) and not args.skip_chromium
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_embedded(args, orchestrate, "boxoffice-bench-challenge-", "bot-challenge benchmark")


if __name__ == "__main__":
    sys.exit(main())
