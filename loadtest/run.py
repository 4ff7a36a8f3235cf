"""One on-sale load test, end to end (`make loadtest`, `python -m loadtest.run --help`).

1. starts private Redis and PostgreSQL (server.runtime.embedded) in a fresh temporary folder, then the
   service on them: `python -m server up` when server/runtime/up.py exists (NGINX in front of the
   workers), else `python -m server serve --workers 2`, on a free port of 127.0.0.1;
2. creates a load-test event through the admin API, its sale opening shortly, its capacity and
   admission rate sized to the run;
3. runs locust headless (loadtest/locustfile.py, a load shape from loadtest/shapes.py) while
   sampling the admin stats endpoint every second;
4. checks the outcome straight from PostgreSQL and Redis, prints one table (PASS/FAIL with
   figures) and exits non-zero if any check fails.

Reports (locust CSV + HTML, the samples, a PNG plot, the service's and locust's logs) go to
<timestamp>/ under --reports (loadtest/reports by default; any folder, relative or absolute).
Traffic goes to 127.0.0.1 only; the run is bounded in time; every process started here is
stopped at the end, on error too."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtest import eta
from loadtest.arrivals import CURVES

if TYPE_CHECKING:
    from server.core.keys import EventKeys

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
EVENT_ID = "loadtest"
SEATS_PER_ROW = 20
AVG_SEATS_PER_ORDER = 2.5  # FanUser picks 1..4
FAN_SHARE = 0.8  # FanUser weight 4, WaiterUser weight 1
STARTUP_ALLOWANCE_S = 3.0  # between creating the event and locust's first user
SHAPE_OFFSETS = {"none": 5.0}
LOCUST_ONLY_VARIABLES = (
    "BOXOFFICE_EVENT",
    "BOXOFFICE_SHAPE",
    "BOXOFFICE_MAX_WAIT",
    "BOXOFFICE_ADMISSIONS_LOG",
)


def log(message: str) -> None:
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- options and sizing ----------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n")[0])
    p.add_argument("--users", "-u", type=int, default=300, help="fans arriving in all (300)")
    p.add_argument("--run-time", "-t", type=int, default=120, help="seconds of load (120)")
    p.add_argument(
        "--shape",
        choices=["flash", "prequeue", "trickle", "none"],
        default=os.environ.get("BOXOFFICE_SHAPE", "flash"),
        help="arrival shape (flash); none = locust's -u/-r ramp",
    )
    p.add_argument("--spawn-rate", "-r", type=float, default=0.0, help="with --shape none")
    p.add_argument(
        "--classes",
        default="FanUser,WaiterUser",
        help="locust user classes, comma-separated (FanUser,WaiterUser: 4 buyers to 1 idler)",
    )
    p.add_argument("--workers", type=int, default=2, help="app processes (2)")
    p.add_argument("--server", choices=["auto", "up", "serve"], default="auto")
    p.add_argument("--rate-per-min", type=int, default=0, help="admissions/min (auto)")
    p.add_argument("--max-active", type=int, default=0, help="admitted sessions at once (auto)")
    p.add_argument("--capacity", type=int, default=0, help="seats + standing places (auto)")
    p.add_argument("--settle", type=float, default=20.0, help="max seconds to let Redis catch up")
    p.add_argument("--reports", type=Path, default=ROOT / "loadtest" / "reports")
    p.add_argument("--keep-data", action="store_true", help="keep the Redis/PostgreSQL folder")
    args = p.parse_args(argv)
    if not 1 <= args.users <= 50_000:
        p.error("--users: between 1 and 50000")
    if not 10 <= args.run_time <= 3600:
        p.error("--run-time: between 10 and 3600 seconds")
    if not 1 <= args.workers <= 16:
        p.error("--workers: between 1 and 16")
    return args


@dataclass(frozen=True)
class Plan:
    users: int
    run_time_s: int
    sale_offset_s: float
    rate_per_min: int
    max_active: int
    rows: int
    ga: int

    @property
    def capacity(self) -> int:
        return self.rows * SEATS_PER_ROW + self.ga


def sale_offset(shape: str, run_time_s: float) -> float:
    if shape in SHAPE_OFFSETS:
        return SHAPE_OFFSETS[shape]
    return CURVES[shape].sale_offset_s(run_time_s)


def make_plan(args: argparse.Namespace) -> Plan:
    offset = sale_offset(args.shape, args.run_time)
    selling_s = max(10.0, args.run_time - offset)
    fan_share = FAN_SHARE if "WaiterUser" in args.classes else 1.0
    # About half the crowd gets through by the end: the bucket is the bottleneck and a line
    # is left waiting, so the admission-order check has both sides to compare.
    rate = args.rate_per_min or max(6, round(args.users * 0.5 * 60 / selling_s))
    admitted = min(args.users, rate * selling_s / 60)
    # Seats for ~80% of what the admitted fans want: they compete, and it may sell out.
    capacity = args.capacity or max(
        SEATS_PER_ROW, round(admitted * fan_share * AVG_SEATS_PER_ORDER * 0.8)
    )
    rows = max(1, round(capacity * 0.75) // SEATS_PER_ROW)
    ga = max(0, capacity - rows * SEATS_PER_ROW)
    max_active = args.max_active or max(10, rate)
    return Plan(args.users, args.run_time, offset, rate, max_active, rows, ga)


# ---- the admin API (stdlib HTTP, to 127.0.0.1 only) ------------------------------------------


class Api:
    def __init__(self, base: str, admin_token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {admin_token}"}

    def call(self, method: str, path: str, body: object = None, timeout: float = 5.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def event_body(plan: Plan, now: datetime) -> dict[str, Any]:
    sections: list[dict[str, Any]] = [
        {
            "id": "A",
            "name": "Floor",
            "price": 5000,
            "rows": plan.rows,
            "seats_per_row": SEATS_PER_ROW,
        }
    ]
    if plan.ga:
        sections.append({"id": "GA", "name": "Standing", "price": 3500, "capacity": plan.ga})
    sale = now + timedelta(seconds=plan.sale_offset_s + STARTUP_ALLOWANCE_S)
    return {
        "id": EVENT_ID,
        "name": "Load test on-sale",
        "venue": "Loopback Arena",
        "starts_at": (now + timedelta(days=30)).isoformat(),
        "sale_starts_at": sale.isoformat(),
        "prequeue_opens_at": now.isoformat(),
        "currency": "EUR",
        "sections": sections,
        "rate_per_min": plan.rate_per_min,
        "max_active": plan.max_active,
        "session_minutes": 10,
        "hold_minutes": 10,
        "max_seats_per_order": 6,
    }


# ---- processes -------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19]


def descendants(pid: int) -> dict[int, str]:
    """Every live process below `pid` (pid -> start time): children that left its group."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [pid]
    while todo and len(found) < 10_000:
        for child in children.get(todo.pop(), []):
            if child not in found and (stat := _proc_stat(child)) is not None:
                found[child] = stat[1]
                todo.append(child)
    return found


def stop_group(proc: subprocess.Popen[bytes] | None, name: str, timeout: float = 15.0) -> None:
    """SIGTERM the process group this run started, then SIGKILL what is left of it, including
    descendants that started their own sessions (and so left the group)."""
    if proc is None:
        return
    tree = descendants(proc.pid) if proc.poll() is None else {}
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            log(f"{name} did not stop after {sig.name}")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [p for p, started in tree.items() if (st := _proc_stat(p)) and st[1] == started]
        if not left:
            return
        time.sleep(0.2)
    for pid in left:
        log(f"{name}: killing leftover process {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def service_env(
    redis_url: str,
    database_url: str,
    data_dir: Path,
    port: int,
    workers: int,
    secret: str,
    admin_token: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LOCUST_ONLY_VARIABLES}
    env.update(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        BOXOFFICE_SECRET=secret,
        BOXOFFICE_ADMIN_TOKEN=admin_token,
        BOXOFFICE_DATA_DIR=str(data_dir),
        BOXOFFICE_HOST=HOST,
        BOXOFFICE_PORT=str(port),
        BOXOFFICE_WORKERS=str(workers),
        BOXOFFICE_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT),
    )
    return env


def spawn_logged(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `cmd` from the repository root in a session of its own, output to `log_path`."""
    with open(log_path, "wb") as f:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def start_service(
    args: argparse.Namespace, env: dict[str, str], port: int, out: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    use_up = args.server == "up" or (
        args.server == "auto" and (ROOT / "server" / "runtime" / "up.py").exists()
    )
    if use_up:
        cmd = [sys.executable, "-m", "server", "up"]
    else:
        cmd = [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ]
    log(f"starting the service: {' '.join(cmd[1:])}")
    proc = spawn_logged(cmd, env, out)
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 90
    found = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with {proc.returncode}; see {out}")
        text = out.read_text(errors="replace")
        match = re.search(r"running at (https?://[^\s/]+)", text)
        if match and not found:
            found = True
            base = match.group(1).replace("localhost", HOST)
        if (found or not use_up) and Api(base, "").ready():
            return proc, base, "up" if use_up else "serve"
        time.sleep(0.25)
    raise RuntimeError(f"the service was not ready within 90 s; see {out}")


# ---- sampling the admin stats ----------------------------------------------------------------


@dataclass
class Sampler:
    api: Api
    event_id: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0
    t0: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, max_seconds: float) -> None:
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, args=(max_seconds,), daemon=True)
        self._thread.start()

    def _run(self, max_seconds: float) -> None:
        n = 0
        while not self._stop.is_set() and n < max_seconds:
            n += 1
            try:
                stats = self.api.call("GET", f"/api/admin/events/{self.event_id}/stats", timeout=2)
                stats["t"] = round(time.monotonic() - self.t0, 2)
                self.samples.append(stats)
            except (urllib.error.URLError, OSError, ValueError):
                self.errors += 1
            self._stop.wait(max(0.0, self.t0 + n - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


# ---- checks ----------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool | None  # None: information only
    figures: str


@dataclass(frozen=True)
class Sales:
    """What PostgreSQL says was sold: read once, after the outbox relay has settled."""

    capacity: int
    ga_cap: dict[str, int]  # standing section -> capacity
    paid_lines: list[Any]  # order lines of paid orders
    sold_seated: int
    ga_sold: dict[str, int]  # standing section -> ga_sales.sold

    @property
    def paid_seats(self) -> list[tuple[str, str]]:
        return [(r["order_id"], r["seat_id"]) for r in self.paid_lines if r["seat_id"]]

    @property
    def sold(self) -> int:
        return self.sold_seated + sum(self.ga_sold.values())

    @property
    def orders_paid(self) -> int:
        return len({r["order_id"] for r in self.paid_lines})


@dataclass(frozen=True)
class Admission:
    """The admission step's own figures in Redis, read at the end of the run."""

    rate: int
    tick_ms: int
    max_active: int
    admitted_total: int
    serving: int
    elapsed_ms: int  # since the sale opened, by Redis TIME


async def read_sales(pool: Any, redis: Any, k: EventKeys, event_id: str, settle_s: float) -> Sales:
    capacity = int(
        await pool.fetchval(
            "SELECT coalesce(sum(capacity), 0) FROM sections WHERE event_id = $1", event_id
        )
    )
    ga_cap = {
        r["id"]: r["capacity"]
        for r in await pool.fetch(
            "SELECT id, capacity FROM sections WHERE event_id = $1 AND rows IS NULL", event_id
        )
    }
    paid_lines = await pool.fetch(
        """SELECT o.id AS order_id, l.section_id, l.seat_id, l.quantity
           FROM orders o JOIN order_lines l ON l.order_id = o.id
           WHERE o.event_id = $1 AND o.status = 'paid'""",
        event_id,
    )
    paid_seats = [r["seat_id"] for r in paid_lines if r["seat_id"]]
    # Let the outbox relay finish marking paid seats sold in Redis (bounded).
    deadline = time.monotonic() + settle_s
    while True:
        unmarked = await _unmarked(redis, k.seats, paid_seats)
        pending = await pool.fetchval(
            "SELECT count(*) FROM outbox WHERE event_id = $1 AND published_at IS NULL", event_id
        )
        if (not unmarked and not pending) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    sold_seated = int(
        await pool.fetchval("SELECT count(*) FROM sold_seats WHERE event_id = $1", event_id)
    )
    ga_sold = {
        r["section_id"]: r["sold"]
        for r in await pool.fetch(
            "SELECT section_id, sold FROM ga_sales WHERE event_id = $1", event_id
        )
    }
    return Sales(capacity, ga_cap, paid_lines, sold_seated, ga_sold)


async def read_admission(redis: Any, k: EventKeys) -> Admission:
    cfg = await redis.hgetall(k.cfg)
    stats = await redis.hgetall(k.stats)
    sec, usec = await redis.time()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    opened_ms = int(cfg.get("opened_ms") or now_ms)
    return Admission(
        rate=int(cfg.get("rate_per_min", 0)),
        tick_ms=int(cfg.get("tick_ms", 200)),
        max_active=int(cfg.get("max_active", 0)),
        admitted_total=int(stats.get("admitted", 0)),
        serving=int(stats.get("serving", 0)),
        elapsed_ms=max(0, now_ms - opened_ms),
    )


def check_capacity(sales: Sales) -> Check:
    """1. seats sold <= capacity, per standing section too."""
    ga_sold, ga_cap = sales.ga_sold, sales.ga_cap
    ga_text = ", ".join(f"section {s} {ga_sold.get(s, 0)}/{c}" for s, c in ga_cap.items())
    return Check(
        "seats sold <= capacity",
        sales.sold <= sales.capacity and all(ga_sold.get(s, 0) <= c for s, c in ga_cap.items()),
        f"{sales.sold} sold of {sales.capacity} (seated {sales.sold_seated}{'; standing ' + ga_text if ga_text else ''})",
    )


async def check_sold_once(pool: Any, event_id: str, sales: Sales) -> Check:
    """2. no seat sold twice: neither two sold_seats rows nor two paid orders for one seat."""
    dup_pk = await pool.fetchval(
        """SELECT count(*) FROM (SELECT seat_id FROM sold_seats WHERE event_id = $1
           GROUP BY seat_id HAVING count(*) > 1) d""",
        event_id,
    )
    dup_orders = [
        r["seat_id"]
        for r in await pool.fetch(
            """SELECT l.seat_id FROM orders o JOIN order_lines l ON l.order_id = o.id
           WHERE o.event_id = $1 AND o.status = 'paid' AND l.seat_id IS NOT NULL
           GROUP BY l.seat_id HAVING count(DISTINCT o.id) > 1""",
            event_id,
        )
    ]
    return Check(
        "no seat sold twice",
        dup_pk == 0 and not dup_orders,
        f"{len(sales.paid_seats)} seats in paid orders, {len(dup_orders)} in two paid orders"
        + (f" e.g. {dup_orders[:3]}" if dup_orders else "")
        + f"; {dup_pk} duplicate sold_seats keys",
    )


async def check_paid_have_seats(pool: Any, event_id: str, sales: Sales) -> Check:
    """3. every paid order has its seats (PostgreSQL), and nothing else is sold."""
    sold_rows = {
        (r["order_id"], r["seat_id"])
        for r in await pool.fetch(
            "SELECT order_id, seat_id FROM sold_seats WHERE event_id = $1", event_id
        )
    }
    paid_seats = sales.paid_seats
    missing = [p for p in paid_seats if p not in sold_rows]
    extra = sold_rows - set(paid_seats)
    ga_paid: dict[str, int] = {}
    for r in sales.paid_lines:
        if r["seat_id"] is None:
            ga_paid[r["section_id"]] = ga_paid.get(r["section_id"], 0) + r["quantity"]
    ga_sold = sales.ga_sold
    ga_bad = {
        s: (ga_paid.get(s, 0), ga_sold.get(s, 0))
        for s in set(ga_paid) | set(ga_sold)
        if ga_paid.get(s, 0) != ga_sold.get(s, 0)
    }
    return Check(
        "paid orders have their seats (PG)",
        not missing and not extra and not ga_bad,
        f"{sales.orders_paid} paid orders; {len(missing)} seats missing from sold_seats, "
        f"{len(extra)} sold without a paid order; GA paid {sum(ga_paid.values())} = "
        f"ga_sales {sum(ga_sold.values())}" + (f" MISMATCH {ga_bad}" if ga_bad else ""),
    )


async def check_redis_sold(redis: Any, k: EventKeys, sales: Sales) -> Check:
    """4. every seat of a paid order is marked sold in Redis; GA counts agree."""
    paid_seats = sales.paid_seats
    unmarked = await _unmarked(redis, k.seats, [s for _, s in paid_seats])
    redis_ga = {s: int(v) for s, v in (await redis.hgetall(k.gasold)).items()}
    redis_sold = sum(1 for v in (await redis.hgetall(k.seats)).values() if v == "sold")
    ga_sold = sales.ga_sold
    ga_redis_bad = {
        s: (redis_ga.get(s, 0), ga_sold.get(s, 0))
        for s in sales.ga_cap
        if redis_ga.get(s, 0) != ga_sold.get(s, 0)
    }
    return Check(
        "paid seats marked sold in Redis",
        not unmarked and not ga_redis_bad,
        f'{len(paid_seats) - len(unmarked)}/{len(paid_seats)} seats "sold" in {k.seats} '
        f"({redis_sold} in all); GA sold in Redis {sum(redis_ga.values())}"
        + (f" MISMATCH {ga_redis_bad}" if ga_redis_bad else "")
        + (f"; unmarked e.g. {unmarked[:3]}" if unmarked else ""),
    )


def check_bucket_ceiling(adm: Admission) -> Check:
    """5. admissions within the bucket for the rate over the run."""
    from server.core.rules import admission_ceiling

    ceiling = admission_ceiling(adm.rate, adm.tick_ms, adm.elapsed_ms)
    return Check(
        "admitted <= bucket ceiling",
        adm.admitted_total <= ceiling,
        f"{adm.admitted_total} admitted in {adm.elapsed_ms / 1000:.0f} s since the sale opened; "
        f"ceiling {ceiling} at {adm.rate}/min (tick {adm.tick_ms} ms)",
    )


def check_sampled_windows(samples: list[dict[str, Any]], adm: Admission) -> Check:
    """5b. no sampled window of at most a minute admitted more than its bucket allows."""
    n, span, cap, over = _worst_minute(samples, adm.rate, adm.tick_ms)
    return Check(
        "admitted per sampled window <= bucket",
        over == 0 and len(samples) > 1,
        f"busiest window <= 60 s: {n} in {span:.0f} s (ceiling {cap}); "
        f"{over} windows over their ceiling, {len(samples)} samples",
    )


def check_max_active(samples: list[dict[str, Any]], adm: Admission) -> Check:
    """5c. never more admitted sessions at once than max_active (as sampled)."""
    peak = max((int(s.get("active", 0)) for s in samples), default=0)
    return Check(
        "active <= max_active (sampled)",
        peak <= adm.max_active,
        f"peak {peak} of {adm.max_active} over {len(samples)} samples",
    )


async def check_admission_order(
    pool: Any,
    redis: Any,
    k: EventKeys,
    event_id: str,
    admissions: list[dict[str, Any]],
    adm: Admission,
) -> Check:
    """6. admission order = line (ticket) order: every admitted ticket is at or below `serving`,
    every waiting one above it."""
    admitted_ids = {a["queue_id"] for a in admissions if a.get("queue_id")}
    admitted_ids |= {
        r["queue_id"]
        for r in await pool.fetch(
            "SELECT DISTINCT queue_id FROM orders WHERE event_id = $1", event_id
        )
    }
    admitted_ids |= set(await redis.zrange(k.active, 0, -1))
    ids = sorted(admitted_ids)
    tickets = await redis.hmget(k.tickets, ids) if ids else []
    admitted_tickets = [int(t) for t in tickets if t is not None]
    no_ticket = len(ids) - len(admitted_tickets)
    line = await redis.zrange(k.line, 0, 0, withscores=True)
    first_waiting = int(line[0][1]) if line else None
    waiting = int(await redis.zcard(k.line))
    serving = adm.serving
    last_admitted = max(admitted_tickets, default=0)
    ordered = (
        no_ticket == 0
        and last_admitted <= serving
        and (first_waiting is None or serving < first_waiting)
    )
    return Check(
        "admission order = ticket order",
        ordered,
        f"{len(ids)} admitted seen (highest ticket {last_admitted}, {no_ticket} without one); "
        f"serving {serving}; {waiting} waiting, lowest ticket {first_waiting}",
    )


def check_clients_saw(admissions: list[dict[str, Any]], adm: Admission) -> Check:
    """7. the locust users saw no more admissions than the server made."""
    return Check(
        "clients saw <= server admitted",
        len(admissions) <= adm.admitted_total,
        f"{len(admissions)} admissions seen by locust users, {adm.admitted_total} by the server",
    )


ETA_AIM = 0.10  # median error of the half-way ETA the fans' pages aim at


def check_eta_error(admissions: list[dict[str, Any]]) -> Check:
    """9. the ETA a fan's page showed at half its wait, against its real admission
    (loadtest/eta.py): median and p90 of the error, and whether the median met ETA_AIM. A figure
    of quality, not an invariant: information only, it never fails the run."""
    summary = eta.summarize(admissions)
    if summary is None:
        return Check("ETA error at half-way", None, f"no fan waited {eta.MIN_WAIT_S:.0f} s or more")
    verdict = "met" if summary.median <= ETA_AIM else "missed"
    return Check(
        "ETA error at half-way",
        None,
        f"median {summary.median:.1%}, p90 {summary.p90:.1%} over {summary.fans} fans who "
        f"waited >= {eta.MIN_WAIT_S:.0f} s (aim <= {ETA_AIM:.0%} median: {verdict}); "
        f"median signed {summary.bias:+.1%} (+ = said later than it came)",
    )


def check_purchases(sales: Sales) -> Check:
    """8. the run sold something at all."""
    return Check(
        "fans completed purchases",
        sales.orders_paid > 0,
        f"{sales.orders_paid} orders paid, {sales.sold} seats/places sold",
    )


async def verify(
    redis_url: str,
    database_url: str,
    event_id: str,
    samples: list[dict[str, Any]],
    admissions: list[dict[str, Any]],
    settle_s: float,
) -> list[Check]:
    import asyncpg
    from redis.asyncio import Redis

    from server.core.keys import EventKeys

    k = EventKeys(event_id)
    pool = await asyncpg.connect(database_url)
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        sales = await read_sales(pool, redis, k, event_id, settle_s)
        checks = [
            check_capacity(sales),
            await check_sold_once(pool, event_id, sales),
            await check_paid_have_seats(pool, event_id, sales),
            await check_redis_sold(redis, k, sales),
        ]
        adm = await read_admission(redis, k)
        return [
            *checks,
            check_bucket_ceiling(adm),
            check_sampled_windows(samples, adm),
            check_max_active(samples, adm),
            await check_admission_order(pool, redis, k, event_id, admissions, adm),
            check_clients_saw(admissions, adm),
            check_eta_error(admissions),
            check_purchases(sales),
        ]
    finally:
        await pool.close()
        await redis.aclose()


async def _unmarked(redis: Any, key: str, seats: list[str]) -> list[str]:
    if not seats:
        return []
    values = await redis.hmget(key, seats)
    return [s for s, v in zip(seats, values, strict=True) if v != "sold"]


def _worst_minute(
    samples: list[dict[str, Any]], rate: int, tick_ms: int
) -> tuple[int, float, int, int]:
    """Over every pair of samples at most 60 s apart: the busiest window (admissions, seconds,
    the bucket's ceiling for it) and how many windows exceed their ceiling. 1 s is added to each
    window for the jitter between a sample and the admission step."""
    from server.core.rules import admission_ceiling

    busiest, over = (0, 0.0, admission_ceiling(rate, tick_ms, 1000)), 0
    for i, a in enumerate(samples):
        for b in samples[i + 1 :]:
            span = float(b["t"]) - float(a["t"])
            if span > 60:
                break
            n = int(b["admitted_total"]) - int(a["admitted_total"])
            cap = admission_ceiling(rate, tick_ms, int((span + 1) * 1000))
            over += n > cap
            if n > busiest[0]:
                busiest = (n, span, cap)
    return busiest[0], busiest[1], busiest[2], over


# ---- reports ---------------------------------------------------------------------------------


def locust_figures(csv_prefix: Path) -> list[Check]:
    path = csv_prefix.parent / (csv_prefix.name + "_stats.csv")
    if not path.exists():
        return [Check("locust", None, f"no {path.name}")]
    rows = {(r["Type"], r["Name"]): r for r in csv.DictReader(path.open())}
    out = []
    agg = rows.get(("", "Aggregated"))
    if agg:
        out.append(
            Check(
                "locust requests",
                None,
                f"{agg['Request Count']} requests/messages, {agg['Failure Count']} failures, "
                f"{float(agg['Requests/s']):.1f}/s",
            )
        )
    adm = rows.get(("WS", "admitted"))
    if adm:
        out.append(
            Check(
                "queue wait until admitted",
                None,
                f"{adm['Request Count']} admitted; wait p50 {int(adm['50%']) / 1000:.1f} s, "
                f"p95 {int(adm['95%']) / 1000:.1f} s, max {float(adm['Max Response Time']) / 1000:.1f} s",
            )
        )
    for name in ("/api/events/[id]/queue", "/api/events/[id]/holds", "/api/orders/[id]/pay"):
        r = rows.get(("POST", name))
        if r:
            out.append(
                Check(
                    f"POST {name}",
                    None,
                    f"{r['Request Count']} ({r['Failure Count']} failed), p50 {r['50%']} ms, "
                    f"p95 {r['95%']} ms",
                )
            )
    return out


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> bool:
    if len(samples) < 2:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[dev]'): no plot")
        return False
    t = [float(s["t"]) for s in samples]
    waiting = [int(s["waiting"]) + int(s.get("prequeue", 0)) for s in samples]
    admitted = [int(s["admitted_total"]) for s in samples]
    per_min = []
    for i, ti in enumerate(t):  # admissions over the trailing 10 s, per minute
        j = i
        while j > 0 and ti - t[j - 1] <= 10:
            j -= 1
        span = max(1.0, ti - t[j]) if i > j else 1.0
        per_min.append((admitted[i] - admitted[j]) * 60 / span if i > j else 0.0)
    sold = [int(s["seats_sold"]) for s in samples]
    held = [int(s.get("seats_held", 0)) for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, waiting, color="tab:blue")
    axes[0].set_ylabel("waiting")
    axes[1].plot(t, per_min, color="tab:green", label="measured (trailing 10 s)")
    axes[1].axhline(int(samples[-1]["rate_per_min"]), color="grey", ls="--", label="rate_per_min")
    axes[1].set_ylabel("admitted / min")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].plot(t, sold, color="tab:red", label="sold")
    axes[2].plot(t, held, color="tab:orange", label="held")
    axes[2].set_ylabel("seats")
    axes[2].set_xlabel("seconds since the event was created")
    axes[2].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(width)}  result  figures", f"{'-' * width}  ------  {'-' * 60}"]
    for c in checks:
        result = "INFO" if c.ok is None else ("PASS" if c.ok else "FAIL")
        lines.append(f"{c.name.ljust(width)}  {result:<6}  {c.figures}")
    return "\n".join(lines)


def report_folder(reports: Path, stamp: str) -> Path:
    """This run's folder under --reports, made absolute: locust writes into it from the
    repository root, so a folder relative to where the run started must not move."""
    return reports.expanduser().resolve() / stamp


def shown(path: Path, root: Path = ROOT) -> str:
    """A path as the summary prints it: relative to the repository when inside it."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def report(checks: list[Check], samples: list[dict[str, Any]], out: Path, title: str) -> int:
    """Write the samples, the plot and the summary into `out`, print the summary and the
    verdict; the exit code (1 if any check failed)."""
    (out / "samples.json").write_text(json.dumps(samples))
    if plot(samples, out / "run.png", title):
        checks = [*checks, Check("plot", None, shown(out / "run.png"))]
    summary = table(checks)
    (out / "summary.txt").write_text(summary + "\n")
    print(summary, flush=True)
    failed = [c for c in checks if c.ok is False]
    print(
        f"\n{'FAIL' if failed else 'PASS'}: {len(failed)} of "
        f"{sum(c.ok is not None for c in checks)} checks failed; reports in {out}"
    )
    return 1 if failed else 0


# ---- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from server.runtime.embedded import EmbeddedServers, free_port

    plan = make_plan(args)
    out = report_folder(args.reports, datetime.now().strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="boxoffice-loadtest-"))
    log(f"reports in {out}; data in {data}")
    log(
        f"plan: {plan.users} users, {plan.run_time_s} s, shape {args.shape}, sale opens at "
        f"+{plan.sale_offset_s + STARTUP_ALLOWANCE_S:.0f} s, rate {plan.rate_per_min}/min, "
        f"max_active {plan.max_active}, capacity {plan.capacity} "
        f"({plan.rows}x{SEATS_PER_ROW} seated + {plan.ga} standing)"
    )
    embedded = EmbeddedServers(data / "servers")
    service: subprocess.Popen[bytes] | None = None
    locust: subprocess.Popen[bytes] | None = None
    sampler: Sampler | None = None
    admin_token, secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    try:
        redis_url, database_url = embedded.start()
        port = free_port(HOST)
        env = service_env(
            redis_url, database_url, data / "service", port, args.workers, secret, admin_token
        )
        service, base, mode = start_service(args, env, port, out / "service.log")
        api = Api(base, admin_token)
        log(f"service ({mode}) ready at {base}")
        api.call("POST", "/api/admin/events", event_body(plan, datetime.now(UTC)))
        sampler = Sampler(api, EVENT_ID)
        sampler.start(max_seconds=plan.run_time_s + 300)

        admissions_log = out / "admissions.jsonl"
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "--host",
            base,
            "-u",
            str(plan.users),
            "--run-time",
            f"{plan.run_time_s}s",
            "--csv",
            str(out / "locust"),
            "--html",
            str(out / "report.html"),
            "--event",
            EVENT_ID,
            "--admissions-log",
            str(admissions_log),
            "--max-wait",
            str(plan.run_time_s + 30),
            "--stop-timeout",
            "3",
            "--only-summary",
        ]
        if args.shape == "none":
            cmd += ["-r", str(args.spawn_rate or max(1.0, plan.users / 10))]
        cmd += [c.strip() for c in args.classes.split(",") if c.strip()]
        locust_env = {**os.environ, "PYTHONPATH": str(ROOT), "BOXOFFICE_SHAPE": args.shape}
        log(f"locust: {plan.users} users over {plan.run_time_s} s ({args.shape})")
        locust = spawn_logged(cmd, locust_env, out / "locust.log")
        try:
            code = locust.wait(plan.run_time_s + 120)
        except subprocess.TimeoutExpired:
            log("locust overran its run time; stopping it")
            code = -1
        stop_group(locust, "locust")
        locust = None
        log(f"locust finished (exit {code}; 1 means some requests failed)")
        sampler.stop()

        admissions = []
        if admissions_log.exists():
            admissions = [json.loads(x) for x in admissions_log.read_text().splitlines() if x]
        checks = asyncio.run(
            verify(redis_url, database_url, EVENT_ID, sampler.samples, admissions, args.settle)
        )
        checks += locust_figures(out / "locust")
        if code not in (0, 1):
            checks.append(Check("locust ran to the end", False, f"exit code {code}"))
        title = f"{plan.users} users, {args.shape}, {plan.rate_per_min}/min, {plan.capacity} seats"
        return report(checks, sampler.samples, out, title)
    finally:
        if sampler is not None:
            sampler.stop()
        stop_group(locust, "locust")
        stop_group(service, "service")
        embedded.stop()
        if args.keep_data:
            log(f"data kept in {data}")
        else:
            shutil.rmtree(data, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        return run(args)
    except (RuntimeError, OSError, urllib.error.URLError) as exc:
        log(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
