"""Boxoffice booking bench (`make bench`, after loadtest.bench): figures printed, never asserted.

(a) seat holds per second over HTTP on one app process, with and without contention;
(b) confirmations per second through the Stripe webhook path (fake Stripe on 127.0.0.1);
(c) the Redis hold script against the classic PostgreSQL row-lock booking, same seats and clients.

Everything runs on this machine, reusing loadtest.bench: private Redis and PostgreSQL
(server.embedded) in a temporary folder, app processes started as `python -m server worker`,
HTTP load generators in their own processes. Traffic goes to 127.0.0.x only; every loop is
bounded in count and in time; every process started here is stopped at the end, on error too.

The same file is the load generator child process: `--role httpgen` (internal)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import uvloop

from loadtest.bench import Bench
from loadtest.benchkit.common import ADMIN, HOST, VISITOR_COOKIE, log
from loadtest.benchkit.loadgen import client_session, timed
from loadtest.benchkit.measure import (
    cores,
    cpu_of,
    cpu_seconds,
    free_port,
    machine,
    mint_cookies,
    percentile,
    proc_parents,
    split,
)
from loadtest.benchkit.orchestra import (
    Child,
    Part,
    Processes,
    collect,
    event_body,
    post_event,
    role_args,
    run_embedded,
    run_parts,
    wait_listening,
)
from loadtest.benchkit.report import error_lines, load_line, table

STRIPE_KEY = "sk_test_bench_" + "k" * 24
STRIPE_WEBHOOK_SECRET = "whsec_bench_" + "w" * 24
CONFIRM_TARGET = 500  # issue #14: confirmations a second through signed webhooks
# The report that confirms: the Charge (its card's fingerprint in it), or the PaymentIntent's
# (the card read from Stripe before deciding).
WEBHOOK_KINDS = ("charge.succeeded", "payment_intent.amount_capturable_updated")
SCRATCH_SCHEMA = "bench_scratch"
JSON = {"Content-Type": "application/json"}

# ---- messages between the orchestrator and the load generator ---------------------------------


class Req(msgspec.Struct, array_like=True, frozen=True):
    method: str
    path: str
    headers: dict[str, str]
    body: str = ""


class GenSpec(msgspec.Struct, frozen=True):
    base: str
    requests: list[Req]
    seconds: float
    connections: int
    source: str
    start_at: float  # time.monotonic(): CLOCK_MONOTONIC is shared by every process
    expect: list[int]
    timeout: float = 15.0


class GenResult(msgspec.Struct, frozen=True):
    sent: int
    errors: int
    statuses: dict[str, int]
    latencies_ms: dict[str, list[float]]  # by HTTP status
    started: float
    ended: float
    cpu_seconds: float
    first_error: str = ""
    first_unexpected: str = ""


# ---- child role: HTTP load generator replaying prepared requests ------------------------------


async def httpgen(spec: GenSpec) -> GenResult:
    """`spec.connections` keep-alive connections send the prepared requests in order until all
    are sent or `spec.seconds` have passed. Warm-up (one GET /healthz per connection) opens the
    connections without touching any rate limit."""
    statuses: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    errors = 0
    first_error = first_unexpected = ""
    next_index = 0
    async with client_session(
        spec.connections, spec.source, spec.timeout, ttl_dns_cache=None
    ) as session:

        async def warm() -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.get(f"{spec.base}/healthz") as response:
                    await response.read()

        await asyncio.gather(*(warm() for _ in range(spec.connections)))

        async def step() -> None:
            nonlocal next_index, errors, first_error, first_unexpected
            req = spec.requests[next_index]
            next_index += 1
            t0 = time.perf_counter()
            try:
                async with session.request(
                    req.method, spec.base + req.path, headers=req.headers, data=req.body or None
                ) as response:
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
                return
            key = str(response.status)
            statuses[key] += 1
            latencies.setdefault(key, []).append(round((time.perf_counter() - t0) * 1000, 3))
            if response.status not in spec.expect and not first_unexpected:
                first_unexpected = f"{response.status} {body[:200].decode(errors='replace')}"

        started, ended, cpu = await timed(
            spec.start_at,
            spec.seconds,
            spec.connections,
            lambda: next_index < len(spec.requests),
            step,
        )
    return GenResult(
        sent=sum(statuses.values()) + errors,
        errors=errors,
        statuses=dict(statuses),
        latencies_ms=latencies,
        started=started,
        ended=ended,
        cpu_seconds=cpu,
        first_error=first_error,
        first_unexpected=first_unexpected,
    )


# ---- orchestrator: helpers ---------------------------------------------------------------------


@dataclass
class Fan:
    """One visitor: a signed cookie (as the browser would carry) and, once admitted, a token."""

    cookie: str
    queue_id: str = ""
    token: str = ""

    def headers(self) -> dict[str, str]:
        return {**JSON, "Cookie": self.cookie, "Authorization": f"Bearer {self.token}"}


def new_fans(count: int) -> list[Fan]:
    return [Fan(f"{VISITOR_COOKIE}={cookie}") for cookie in mint_cookies(count)]


def seat(section: str, index: int, per_row: int) -> str:
    return f"{section}-{index // per_row + 1}-{index % per_row + 1}"


async def bounded(items: Sequence[Any], work: Callable[[Any], Awaitable[None]], width: int) -> None:
    """Run work(item) for every item, at most `width` at a time."""
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(items):
            item = items[position]
            position += 1
            await work(item)

    await asyncio.gather(*(worker() for _ in range(min(width, len(items)) or 1)))


async def poll_count(
    pool: Any, query: str, args: list[Any], target: int, within: float, pause: float
) -> Any:
    """Run `query` (its row counts something as `n`) every `pause` s until `n` reaches `target`
    or `within` s have passed; its last row."""
    deadline = time.monotonic() + within
    while True:
        record = await pool.fetchrow(query, *args)
        if record["n"] >= target or time.monotonic() > deadline:
            return record
        await asyncio.sleep(pause)


def compose_cpu_ms(count: int = 40) -> float:
    """CPU ms to compose one two-ticket confirmation (text, HTML, 2 QR PNGs, the PDF, the .ics)
    in this process: the ceiling of one notifier process is 1000 / this, mails a second."""
    from datetime import UTC, datetime

    from server.core.tokens import Signer, new_id
    from server.notify import compose
    from server.notify.views import OrderView, TicketView

    signer = Signer(new_id() * 2)

    def view(n: int) -> OrderView:
        order_id = new_id()  # as the app's: 22 characters, so the codes and QR sizes are too
        tickets = [
            TicketView(k, signer.ticket_code(order_id, k), f"Paid, row {n}, seat {k}")
            for k in (1, 2)
        ]
        return OrderView(
            order_id=order_id, event_id="bench-webhooks", event_name="Bench night",
            venue="The bench hall", starts_at=datetime(2027, 6, 1, 20, tzinfo=UTC), zone="UTC",
            link=f"http://{HOST}/orders/{order_id}?key={new_id()}", amount="EUR 90.00",
            email=f"fan{n}@example.com", tickets=tickets,
        )  # fmt: skip

    views = [view(n) for n in range(count)]
    started = time.process_time()
    for v in views:
        compose.confirmation(v, "Boxoffice <tickets@example.com>", f"<c.{v.order_id}@x>").as_bytes()
    return 1000 * (time.process_time() - started) / count


def postgres_pids(folder: Path) -> list[int]:
    """The embedded postmaster (its command line names our data folder) and its children."""
    procs = proc_parents()
    roots = {p for p, (_, cmd) in procs.items() if "postgres" in cmd and str(folder) in cmd}
    return sorted(roots | {p for p, (ppid, _) in procs.items() if ppid in roots})


def gen_args(*extra: str) -> list[str]:
    return role_args("httpgen", *extra, module="loadtest.bench_booking")


@dataclass
class HttpRow:
    name: str
    visitors: int
    seats: int
    sent: int = 0
    rate: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    p50_by: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    server_cpu: float = 0.0
    redis_cpu: float = 0.0
    client_cpu: float = 0.0
    cpu_ms: float = 0.0  # app CPU milliseconds per answered request
    note: str = ""


@dataclass
class WebhookRow:
    orders: int
    setup_seconds: float = 0.0
    checkouts_per_s: float = 0.0
    http: HttpRow | None = None
    paid: int = 0
    paid_seconds: float = 0.0
    confirm_rate: float = 0.0
    captures: int = 0
    captured_seconds: float = 0.0  # first webhook sent -> last capture recorded
    capture_cpu: float = 0.0  # app CPU s after the posting ended, until every capture was done
    pg_ms: float = 0.0  # PostgreSQL CPU ms per paid order, posting and captures
    duplicate_pg_ms: float = 0.0  # PostgreSQL CPU ms per duplicate answered
    app_ms: float = 0.0  # the app's CPU ms per paid order, posting and captures
    redis_ms: float = 0.0  # Redis CPU ms per paid order, posting and captures
    loadgen_ms: float = 0.0  # the load generator's CPU ms per paid order
    stripe_ms: float = 0.0  # the bench process's (the fake Stripe's) CPU ms per paid order
    duplicates: HttpRow | None = None
    mail: MailRow | None = None
    note: str = ""


@dataclass
class MailRow:
    """The confirmations mailed by the notifier process(es) to the bench's SMTP server."""

    delay_ms: float  # the SMTP server's answer to each message waits this long (a relay away)
    owed: int = 0
    processes: int = 1  # notifier processes
    mailed: int = 0  # rows `sent` when the wait ended
    seconds: float = 0.0  # first mail sent -> last mail sent
    p50_s: float = 0.0  # paid_at -> sent_at, per order
    p99_s: float = 0.0
    max_s: float = 0.0
    cpu_ms: float = 0.0  # the notifiers' CPU per mail (their whole life in the run)
    connections: int = 0  # SMTP connections the server saw
    messages: int = 0  # messages it accepted
    compose_ms: float = 0.0  # reference: composing one confirmation, CPU, in the bench process
    in_flight: int = 1  # mails the notifier sends side by side (its SEND_CONCURRENCY)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.mailed / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RaceRow:
    name: str
    clients: int
    seats: int
    won: int = 0
    distinct: int = 0
    stored: int = 0  # what the store says afterwards (Redis live holds / PG rows not free)
    attempts: int = 0
    exhausted_s: float = 0.0
    done_s: float = 0.0
    errors: int = 0
    client_cpu: float = 0.0  # CPU seconds of the bench process during the race
    store_cpu: float = 0.0  # CPU seconds of redis-server, or of every PostgreSQL process
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.won == self.distinct == self.stored == self.seats and not self.errors

    @property
    def rate(self) -> float:
        return self.attempts / self.done_s if self.done_s > 0 else 0.0


@dataclass
class RefreshRow:
    """One way a seat page refreshes a big venue's map after each of `rounds` changes."""

    name: str
    rounds: int = 0
    bytes_each: float = 0.0
    server_ms: float = 0.0  # app CPU ms per change + refresh (the hold that changed it included)
    wall_ms: float = 0.0  # p50 of one refresh as the client saw it


@dataclass
class BookingBench(Bench):
    extra_env: dict[str, str] = field(default_factory=dict)
    holds: list[HttpRow] = field(default_factory=list)
    webhook: WebhookRow | None = None
    races: list[RaceRow] = field(default_factory=list)
    refresh: list[RefreshRow] = field(default_factory=list)

    def settings_env(self, port: int) -> dict[str, str]:
        env = super().settings_env(port)
        env["BOXOFFICE_DATABASE_POOL_SIZE"] = str(self.args.pool_size)
        return {**env, **self.extra_env}

    # -- shared steps ------------------------------------------------------------------------

    async def create_seated_event(
        self, session: aiohttp.ClientSession, port: int, event_id: str, sections: list[Any]
    ) -> None:
        body = event_body(
            event_id,
            sections,
            rate_per_min=1_000_000,
            max_active=10_000_000,
            session_minutes=60,
            hold_minutes=30,
            max_seats_per_order=6,
        )
        await post_event(session, port, body)

    async def admit(
        self, session: aiohttp.ClientSession, port: int, event_id: str, fans: list[Fan]
    ) -> None:
        """Join every fan, admit them at once (admin admit, rate and max_active huge), then
        poll each one's status until admitted and keep the access token. Bounded in time."""
        base = f"http://{HOST}:{port}"
        deadline = time.monotonic() + self.args.phase_seconds

        async def join(fan: Fan) -> None:
            url = f"{base}/api/events/{event_id}/queue"
            async with session.post(url, headers={"Cookie": fan.cookie}) as response:
                data = await response.json()
                if response.status != 200 or not data.get("queue_id"):
                    raise RuntimeError(f"join: HTTP {response.status} {data}")
                fan.queue_id = data["queue_id"]
                fan.token = data.get("access_token") or ""

        await bounded(fans, join, 50)
        for chunk in range(0, len(fans), 10_000):
            count = min(10_000, len(fans) - chunk)
            async with session.post(
                f"{base}/api/admin/events/{event_id}/admit", json={"count": count}, headers=ADMIN
            ) as response:
                await response.read()

        async def poll(fan: Fan) -> None:
            url = f"{base}/api/queue/{fan.queue_id}"
            async with session.get(url, headers={"Cookie": fan.cookie}) as response:
                data = await response.json()
                if data.get("state") == "admitted" and data.get("access_token"):
                    fan.token = data["access_token"]

        while time.monotonic() < deadline:
            waiting = [f for f in fans if not f.token]
            if not waiting:
                return
            await bounded(waiting, poll, 50)
            if any(not f.token for f in fans):
                await asyncio.sleep(0.1)
        missing = sum(not f.token for f in fans)
        raise RuntimeError(f"{missing} of {len(fans)} visitors not admitted in time")

    async def generate(
        self,
        port: int,
        requests: list[list[Req]],
        connections: int,
        seconds: float,
        expect: list[int],
        servers: list[Child],
        request_timeout: float = 15.0,
    ) -> tuple[list[GenResult], float, float]:
        """Run one load generator process per request list; (results, server CPU s, Redis CPU s)
        over the measured window."""
        start_at = time.monotonic() + 2.0
        gens = []
        for i, (reqs, conns) in enumerate(
            zip(requests, split(connections, len(requests)), strict=True)
        ):
            spec = GenSpec(
                f"http://{HOST}:{port}",
                reqs,
                seconds,
                conns,
                f"127.0.0.{2 + i}",
                start_at,
                expect,
                request_timeout,
            )
            path = self.procs.folder / f"httpgen-{len(self.procs.children)}-{i}.json"
            path.write_bytes(msgspec.json.encode(spec))
            gens.append(
                await self.procs.spawn("httpgen", gen_args("--spec-file", str(path)), capture=True)
            )
        try:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            pids = [s.pid for s in servers]
            cpu0 = cpu_of(pids)
            redis0 = cpu_seconds(self.redis_pid)
            results = await collect(gens, seconds + request_timeout + 60, GenResult)
            cpu = cpu_of(pids) - cpu0
            redis = cpu_seconds(self.redis_pid) - redis0
        finally:
            await self.procs.stop(gens)
        return results, cpu, redis

    @staticmethod
    def http_row(
        row: HttpRow, results: list[GenResult], server_cpu: float, redis_cpu: float
    ) -> HttpRow:
        wall = max(r.ended for r in results) - min(r.started for r in results)
        statuses: Counter[str] = Counter()
        by: dict[str, list[float]] = {}
        for r in results:
            statuses.update(r.statuses)
            for status, values in r.latencies_ms.items():
                by.setdefault(status, []).extend(values)
        every = sorted(x for values in by.values() for x in values)
        row.sent = sum(r.sent for r in results)
        row.errors = sum(r.errors for r in results)
        row.statuses = dict(statuses)
        row.seconds = wall
        row.rate = len(every) / wall if wall > 0 else 0.0
        row.p50, row.p99 = percentile(every, 0.5), percentile(every, 0.99)
        row.p50_by = {s: percentile(sorted(v), 0.5) for s, v in by.items()}
        row.server_cpu = 100 * server_cpu / wall if wall > 0 else 0.0
        row.cpu_ms = 1000 * server_cpu / len(every) if every else 0.0
        row.redis_cpu = 100 * redis_cpu / wall if wall > 0 else 0.0
        row.client_cpu = 100 * sum(r.cpu_seconds for r in results) / wall if wall > 0 else 0.0
        problems = [r.first_unexpected for r in results if r.first_unexpected]
        problems += [r.first_error for r in results if r.first_error]
        if problems:
            row.note = problems[0][:160]
        return row

    # -- (a) holds over HTTP -----------------------------------------------------------------

    async def bench_holds(self) -> None:
        a = self.args
        port = free_port()
        event_id = "bench-holds"
        contended, own = new_fans(a.contention_visitors), new_fans(a.own_visitors)
        own_rows = -(-2 * len(own) // 100)
        servers = await self.start_app(1, port)
        try:
            async with aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=15)
            ) as session:
                sections = [
                    {"id": "A", "name": "Contended", "price": 5000, "rows": 5,
                     "seats_per_row": a.contention_seats // 5},
                    {"id": "B", "name": "Plenty", "price": 4000, "rows": own_rows,
                     "seats_per_row": 100},
                ]  # fmt: skip
                await self.create_seated_event(session, port, event_id, sections)
                started = time.monotonic()
                await self.admit(session, port, event_id, contended + own)
                log(
                    f"(a) {len(contended) + len(own)} visitors admitted in "
                    f"{time.monotonic() - started:.1f} s"
                )
            path = f"/api/events/{event_id}/holds"
            rng = random.Random(20261129)
            seats_a = [seat("A", i, a.contention_seats // 5) for i in range(a.contention_seats)]
            runs: list[tuple[str, list[Fan], Callable[[int, int], list[str]], int]] = [
                (
                    f"contention: random 2 of {len(seats_a)} seats",
                    contended,
                    lambda _v, _n: rng.sample(seats_a, 2),
                    len(seats_a),
                ),
                (
                    "no contention: own 2 seats each",
                    own,
                    lambda v, _n: [seat("B", 2 * v, 100), seat("B", 2 * v + 1, 100)],
                    2 * len(own),
                ),
            ]
            for name, fans, pick, seat_count in runs:
                # Round robin over visitors, at most `attempts` each (<= the 10 per 10 s limit).
                lists: list[list[Req]] = [[] for _ in range(a.clients)]
                for n in range(a.attempts):
                    for v, fan in enumerate(fans):
                        body = msgspec.json.encode({"seats": pick(v, n)}).decode()
                        lists[v % a.clients].append(Req("POST", path, fan.headers(), body))
                results, cpu, redis = await self.generate(
                    port, lists, a.connections, a.seconds, [201, 409], servers
                )
                row = self.http_row(HttpRow(name, len(fans), seat_count), results, cpu, redis)
                self.holds.append(row)
                log(f"(a) {name}: {row.rate:,.0f}/s {row.statuses} in {row.seconds:.1f} s")
        finally:
            await self.procs.stop(servers)

    # -- (b) webhooks ------------------------------------------------------------------------

    async def bench_webhooks(self) -> None:
        from server.store import db
        from tests.fakestripe import FakeStripe

        a = self.args
        fake = FakeStripe(STRIPE_KEY)
        pool: db.Pool | None = None
        servers: list[Child] = []
        mailer: list[Child] = []
        sink: list[Child] = []
        row = WebhookRow(a.orders)
        self.webhook = row
        try:
            stripe_url = await fake.start()
            self.extra_env = {
                "STRIPE_SECRET_KEY": STRIPE_KEY,
                "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
                "STRIPE_API_BASE": stripe_url,
            }
            # The confirming process runs every role but the notifier: mail (a QR code and a PDF
            # per ticket) is its own role and process, as on sale day, so its CPU is not
            # counted as the webhooks' nor does it share their event loop.
            self.extra_env["BOXOFFICE_ROLES"] = "web,admission,relay,payments"
            port = free_port()
            servers = await self.start_app(1, port)
            # Mail goes to an SMTP server of its own (loadtest/smtp_sink.py) that answers each
            # message after --smtp-delay-ms, as a relay that far away would. With
            # --notifiers 0 nothing mails: the confirmations alone, as when the notifiers run
            # on other machines.
            smtp_port, sink_stats = free_port(), self.procs.folder / "smtp-sink.json"
            if a.notifiers:
                sink = [await self.procs.spawn("smtp-sink", [
                    sys.executable, "-m", "loadtest.smtp_sink", "--port", str(smtp_port),
                    "--delay-ms", str(a.smtp_delay_ms), "--stats", str(sink_stats),
                ])]  # fmt: skip
                await wait_listening(sink, smtp_port)
                self.extra_env["BOXOFFICE_ROLES"] = "notifier"
                self.extra_env["BOXOFFICE_SMTP_URL"] = f"smtp://{HOST}:{smtp_port}"
                mailer = await self.start_app(a.notifiers, free_port())
            event_id = "bench-webhooks"
            fans = new_fans(a.orders)
            base = f"http://{HOST}:{port}"
            orders: list[str] = []
            async with aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=30)
            ) as session:
                rows = -(-2 * len(fans) // 100)
                sections = [{"id": "C", "name": "Paid", "price": 4500, "rows": rows,
                             "seats_per_row": 100}]  # fmt: skip
                await self.create_seated_event(session, port, event_id, sections)
                started = time.monotonic()
                await self.admit(session, port, event_id, fans)
                t_checkout = time.monotonic()

                async def buy(item: tuple[int, Fan]) -> None:
                    v, fan = item
                    body = {"seats": [seat("C", 2 * v, 100), seat("C", 2 * v + 1, 100)]}
                    url = f"{base}/api/events/{event_id}/holds"
                    async with session.post(url, json=body, headers=fan.headers()) as response:
                        hold = await response.json()
                        if response.status != 201:
                            raise RuntimeError(f"hold: HTTP {response.status} {hold}")
                    url = f"{base}/api/holds/{hold['hold_id']}/checkout"
                    email = {"email": f"fan{v}@example.com"}
                    async with session.post(url, json=email, headers=fan.headers()) as response:
                        order = await response.json()
                        if response.status != 201:
                            raise RuntimeError(f"checkout: HTTP {response.status} {order}")
                    orders.append(order["order_id"])

                await bounded(list(enumerate(fans)), buy, 20)
                done = time.monotonic()
            row.setup_seconds = done - started
            row.checkouts_per_s = len(orders) / (done - t_checkout) if done > t_checkout else 0.0
            log(f"(b) {len(orders)} orders checked out in {done - t_checkout:.1f} s")
            by_order = {pi["metadata"].get("order_id"): pi["id"] for pi in fake.intents.values()}
            reqs: list[Req] = []
            for n, order_id in enumerate(orders):
                intent_id = by_order[order_id]
                fake.authorize(intent_id, f"4000{n:012d}")  # a card each: its limit is counted
                if a.webhook_kind == "charge.succeeded":
                    payload = fake.charge_event(a.webhook_kind, intent_id)
                else:
                    payload = fake.event(a.webhook_kind, intent_id)
                headers = {**JSON, "Stripe-Signature": fake.sign(payload, STRIPE_WEBHOOK_SECRET)}
                reqs.append(Req("POST", "/api/webhooks/stripe", headers, payload.decode()))
            pool = await db.create_pool(self.database_url, 2)
            captures0 = len(fake.captures())
            offset = time.time() - time.monotonic()
            pg0 = cpu_of(postgres_pids(self.procs.folder))
            bench0 = time.process_time()
            results, cpu, redis = await self.generate(
                port, [reqs], a.webhook_connections, a.webhook_seconds, [200], servers[:1], 60.0
            )
            tail0, redis0 = cpu_of([servers[0].pid]), cpu_seconds(self.redis_pid)
            # Confirmations land in PostgreSQL within the request; read them back from paid_at.
            record = await pool.fetchrow(
                "SELECT count(*) AS n, max(paid_at) AS last FROM orders"
                " WHERE event_id = $1 AND status = 'paid'",
                event_id,
            )
            assert record is not None
            row.paid, last = int(record["n"]), record["last"]
            # The webhook answers at the commit; its capture runs after. Wait (bounded) for every
            # capture to be recorded and count the app's CPU meanwhile as the confirmations'.
            captured = await self.captures_done(pool, event_id, row.paid, 30.0)
            row.capture_cpu = cpu_of([servers[0].pid]) - tail0
            if row.paid:
                row.pg_ms = 1000 * (cpu_of(postgres_pids(self.procs.folder)) - pg0) / row.paid
                tail_redis = cpu_seconds(self.redis_pid) - redis0
                row.redis_ms = 1000 * (redis + tail_redis) / row.paid
                row.app_ms = 1000 * (cpu + row.capture_cpu) / row.paid
                row.loadgen_ms = 1000 * sum(r.cpu_seconds for r in results) / row.paid
                row.stripe_ms = 1000 * (time.process_time() - bench0) / row.paid
            row.http = self.http_row(HttpRow("webhooks", len(orders), 0), results, cpu, redis)
            answered = sum(len(v) for r in results for v in r.latencies_ms.values())
            if answered:
                row.http.cpu_ms = 1000 * (cpu + row.capture_cpu) / answered
            first_post = min(r.started for r in results) + offset
            if last is not None:
                row.paid_seconds = last.timestamp() - first_post
                row.confirm_rate = row.paid / row.paid_seconds if row.paid_seconds > 0 else 0.0
            if captured is not None:
                row.captured_seconds = captured.timestamp() - first_post
            row.captures = len(fake.captures()) - captures0
            # The same-run reference: every webhook again, now a duplicate (signature checked,
            # one PostgreSQL lookup, answered) - the route's own cost without a confirmation.
            pg0 = cpu_of(postgres_pids(self.procs.folder))
            again, cpu, redis = await self.generate(
                port, [reqs], a.webhook_connections, a.webhook_seconds, [200], servers[:1], 60.0
            )
            row.duplicate_pg_ms = (
                1000 * (cpu_of(postgres_pids(self.procs.folder)) - pg0) / len(reqs)
            )
            row.duplicates = self.http_row(HttpRow("duplicates", len(orders), 0), again, cpu, redis)
            if row.paid != len(orders):
                row.note = f"only {row.paid}/{len(orders)} orders paid"
            log(f"(b) {row.paid} orders paid, {row.confirm_rate:,.0f}/s")
            if not a.notifiers:
                return
            row.mail = await self.mails_done(pool, event_id, row.paid, a.mail_seconds, mailer)
            await self.procs.stop(sink)
            if sink_stats.exists():
                counts = msgspec.json.decode(sink_stats.read_bytes())
                row.mail.connections, row.mail.messages = counts["connections"], counts["messages"]
            row.mail.compose_ms = compose_cpu_ms()
            from server.notify.mailer import SEND_CONCURRENCY  # imported late, as compose_cpu_ms

            row.mail.in_flight = SEND_CONCURRENCY
            log(f"(b) {row.mail.mailed} mails sent, {row.mail.rate:,.0f}/s")
        finally:
            self.extra_env = {}
            await self.procs.stop(servers + mailer + sink)
            if pool is not None:
                await pool.close()
            await fake.close()

    async def mails_done(
        self, pool: Any, event_id: str, owed: int, within: float, notifiers: list[Child]
    ) -> MailRow:
        """Wait (at most `within` s) until the event's `owed` confirmations are sent; then how
        fast and how soon after each payment they went."""
        row = MailRow(self.args.smtp_delay_ms, owed, processes=len(notifiers))
        query = (
            "SELECT count(*) AS n, min(m.sent_at) AS first, max(m.sent_at) AS last,"
            " percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP"
            "   (ORDER BY extract(epoch FROM m.sent_at - o.paid_at)) AS p,"
            " max(extract(epoch FROM m.sent_at - o.paid_at)) AS worst"
            " FROM mails m JOIN orders o ON o.id = m.order_id"
            " WHERE o.event_id = $1 AND m.kind = 'confirmation' AND m.state = 'sent'"
        )
        record = await poll_count(pool, query, [event_id], owed, within, 0.25)
        row.mailed = int(record["n"])
        if row.mailed:
            row.seconds = (record["last"] - record["first"]).total_seconds()
            row.p50_s, row.p99_s = (float(x) for x in record["p"])
            row.max_s = float(record["worst"])
        row.cpu_ms = 1000 * cpu_of([n.pid for n in notifiers]) / max(row.mailed, 1)
        if row.mailed < owed:
            row.note = f"only {row.mailed}/{owed} mailed within {within:.0f} s"
        return row

    @staticmethod
    async def captures_done(pool: Any, event_id: str, orders: int, within: float) -> Any:
        """Wait until the event's `orders` captures are recorded done (at most `within` s);
        when the last was (a datetime), or None if they were not all done in time."""
        query = (
            "SELECT count(*) AS n, max(a.done_at) AS last FROM payment_actions a"
            " JOIN orders o ON o.id = a.order_id WHERE o.event_id = $1"
            " AND a.action = 'capture' AND a.done_at IS NOT NULL"
        )
        record = await poll_count(pool, query, [event_id], orders, within, 0.05)
        return record["last"] if record["n"] >= orders else None

    # -- (d) a big venue's seat map, refreshed after every change ---------------------------

    async def bench_refresh(self) -> None:
        a = self.args
        port = free_port()
        event_id = "bench-map"
        sections = [
            {"id": f"S{i}", "name": f"Block {i}", "price": 5000, "rows": 40, "seats_per_row": 50}
            for i in range(a.map_seats // 2000)
        ]
        fans = new_fans(a.map_rounds)
        servers = await self.start_app(1, port)
        base = f"http://{HOST}:{port}"
        try:
            async with aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=60)
            ) as session:
                await self.create_seated_event(session, port, event_id, sections)
                await self.admit(session, port, event_id, fans)
                async with session.get(f"{base}/api/events/{event_id}/seats/status") as r:
                    version = (await r.json())["version"]
                for name, path, delta in (
                    ("full map (GET /seats)", "seats", False),
                    ("compact delta (GET /seats/status?since=)", "seats/status", True),
                ):
                    row = RefreshRow(name)
                    walls, sizes = [], []
                    cpu0 = cpu_of([s.pid for s in servers])
                    for n, fan in enumerate(fans):
                        seats = [
                            f"S0-{1 + n // 25 + (0 if delta else 20)}-{1 + 2 * (n % 25) + i}"
                            for i in (0, 1)
                        ]
                        async with session.post(
                            f"{base}/api/events/{event_id}/holds",
                            json={"seats": seats},
                            headers=fan.headers(),
                        ) as r:
                            if r.status != 201:
                                raise RuntimeError(f"hold: HTTP {r.status} {await r.text()}")
                        query = f"?since={version}" if delta else ""
                        started = time.perf_counter()
                        async with session.get(f"{base}/api/events/{event_id}/{path}{query}") as r:
                            body = await r.read()
                        walls.append(1000 * (time.perf_counter() - started))
                        sizes.append(len(body))
                        if delta:
                            version = msgspec.json.decode(body)["version"]
                    cpu = cpu_of([s.pid for s in servers]) - cpu0
                    row.rounds = len(fans)
                    row.bytes_each = sum(sizes) / len(sizes)
                    row.server_ms = 1000 * cpu / len(fans)
                    row.wall_ms = percentile(sorted(walls), 0.5)
                    self.refresh.append(row)
                    log(f"(d) {name}: {row.bytes_each:,.0f} B, {row.server_ms:.1f} ms CPU a round")
        finally:
            await self.procs.stop(servers)

    # -- (c) Redis hold script against PostgreSQL row locks ----------------------------------

    async def bench_race(self) -> None:
        from redis.asyncio import Redis

        from server.booking.inventory import Inventory
        from server.core.keys import EventKeys
        from server.store import db
        from server.store.redis_client import blocking_pool

        a = self.args
        clients, count = a.race_clients, a.race_seats
        seats = [seat("R", i, 100) for i in range(count)]
        event_id = "bench-race"
        k = EventKeys(event_id)
        redis_pool = blocking_pool(self.redis_url, clients + 2, timeout=20)  # as the app's
        client = Redis(connection_pool=redis_pool)
        pool = await db.create_pool(self.database_url, clients + 2)
        try:
            await db.migrate(pool)
            # Redis: seat state as a rebuild from (empty) PostgreSQL leaves it; one admitted
            # session per client, as admission would leave it.
            inventory = Inventory(client)
            await client.delete(*k.all())
            await inventory.rebuild(k, pool, force=True)
            queue_ids = [f"{event_id}.q{c}" for c in range(clients)]
            expiry = time.time_ns() // 1_000_000 + 3_600_000
            await client.zadd(k.active, dict.fromkeys(queue_ids, expiry))

            async def redis_client(
                c: int, row: RaceRow, won: list[str], clock: list[float]
            ) -> None:
                deadline = time.monotonic() + a.race_seconds
                for i, s in enumerate(seats):
                    if time.monotonic() > deadline:
                        row.note = row.note or "stopped by --race-seconds"
                        break
                    # A fresh visitor per attempt: a visitor's new hold would replace the old.
                    r = await inventory.hold(
                        k, f"{event_id}.h{c}x{i}", f"v{c}x{i}", queue_ids[c], 1_800_000, [s]
                    )
                    row.attempts += 1
                    if r.status == "ok":
                        won.append(s)
                        clock.append(time.monotonic())
                    elif r.status != "unavailable":
                        row.errors += 1
                        row.note = row.note or f"hold: {r.status}"

            async def redis_count() -> int:
                state = await inventory.snapshot(k)
                return len(state.held)

            await self.race(
                RaceRow("Redis: hold.lua via Inventory.hold", clients, count),
                redis_client,
                redis_count,
                lambda: cpu_seconds(self.redis_pid),
            )

            # PostgreSQL: a scratch schema with a plain seats table.
            table = f"{SCRATCH_SCHEMA}.seats"
            await pool.execute(f"DROP SCHEMA IF EXISTS {SCRATCH_SCHEMA} CASCADE")
            await pool.execute(f"CREATE SCHEMA {SCRATCH_SCHEMA}")
            await pool.execute(
                f"CREATE TABLE {table} (event_id text NOT NULL, id text NOT NULL,"
                " status text NOT NULL DEFAULT 'free', hold_id text, held_until timestamptz,"
                " PRIMARY KEY (event_id, id))"
            )

            async def reset() -> None:
                await pool.execute(f"TRUNCATE {table}")
                await pool.executemany(
                    f"INSERT INTO {table} (event_id, id) VALUES ($1, $2)",
                    [(event_id, s) for s in seats],
                )
                await pool.execute(f"VACUUM ANALYZE {table}")

            async def pg_count() -> int:
                n = await pool.fetchval(
                    f"SELECT count(*) FROM {table} WHERE event_id = $1 AND status <> 'free'",
                    event_id,
                )
                return int(n)

            def pg_cpu() -> float:
                return cpu_of(postgres_pids(self.procs.folder))

            def pg_client(single: bool) -> Callable[..., Awaitable[None]]:
                async def run(c: int, row: RaceRow, won: list[str], clock: list[float]) -> None:
                    deadline = time.monotonic() + a.race_seconds
                    async with pool.acquire() as conn:
                        for i, s in enumerate(seats):
                            if time.monotonic() > deadline:
                                row.note = row.note or "stopped by --race-seconds"
                                break
                            hold_id = f"{event_id}.h{c}x{i}"
                            if single:
                                got = await conn.fetchval(
                                    f"UPDATE {table} SET status = 'held', hold_id = $3,"
                                    " held_until = now() + interval '30 minutes'"
                                    " WHERE event_id = $1 AND id = $2 AND status = 'free'"
                                    " RETURNING true",
                                    event_id, s, hold_id,
                                )  # fmt: skip
                            else:
                                got = None
                                async with conn.transaction():
                                    status = await conn.fetchval(
                                        f"SELECT status FROM {table}"
                                        " WHERE event_id = $1 AND id = $2 FOR UPDATE",
                                        event_id,
                                        s,
                                    )
                                    if status == "free":
                                        await conn.execute(
                                            f"UPDATE {table} SET status = 'held', hold_id = $3,"
                                            " held_until = now() + interval '30 minutes'"
                                            " WHERE event_id = $1 AND id = $2",
                                            event_id, s, hold_id,
                                        )  # fmt: skip
                                        got = True
                            row.attempts += 1
                            if got:
                                won.append(s)
                                clock.append(time.monotonic())

                return run

            await reset()
            await self.race(
                RaceRow("PG: BEGIN; SELECT..FOR UPDATE; UPDATE; COMMIT", clients, count),
                pg_client(single=False),
                pg_count,
                pg_cpu,
            )
            if not a.skip_pg_single:
                await reset()
                await self.race(
                    RaceRow("PG: UPDATE..WHERE status='free' RETURNING", clients, count),
                    pg_client(single=True),
                    pg_count,
                    pg_cpu,
                )
        finally:
            with contextlib.suppress(Exception):
                await pool.execute(f"DROP SCHEMA IF EXISTS {SCRATCH_SCHEMA} CASCADE")
            with contextlib.suppress(Exception):
                await client.delete(*k.all())
            await pool.close()
            await client.aclose()
            await redis_pool.disconnect()

    async def race(
        self,
        row: RaceRow,
        run: Callable[[int, RaceRow, list[str], list[float]], Awaitable[None]],
        count: Callable[[], Awaitable[int]],
        store_cpu: Callable[[], float],
    ) -> None:
        """All clients start together, each walks the seats in the same order."""
        self.races.append(row)
        won: list[str] = []
        clock: list[float] = []
        store0, client0 = store_cpu(), time.process_time()
        started = time.monotonic()
        try:
            results = await asyncio.gather(
                *(run(c, row, won, clock) for c in range(row.clients)), return_exceptions=True
            )
        finally:
            row.done_s = time.monotonic() - started
            row.exhausted_s = (max(clock) - started) if clock else 0.0
            row.won, row.distinct = len(won), len(set(won))
            row.client_cpu = time.process_time() - client0
            row.store_cpu = store_cpu() - store0
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            row.errors += len(failures)
            row.note = f"{type(failures[0]).__name__}: {failures[0]}"[:160]
        row.stored = await count()
        log(
            f"(c) {row.name}: {row.won} won ({row.distinct} distinct) in {row.exhausted_s:.1f} s, "
            f"{row.rate:,.0f} attempts/s"
        )

    # -- report ------------------------------------------------------------------------------

    def confirmation_budget(self) -> list[str]:
        """What a confirmation would have to cost for CONFIRM_TARGET a second on this machine:
        its cores' CPU per confirmation at that rate, less what the other processes of the run
        spent per confirmation (PostgreSQL, Redis, the load generator, the fake Stripe)."""
        w = self.webhook
        if w is None or not w.paid:
            return []
        box_ms = 1000 * cores() / CONFIRM_TARGET
        others_ms = w.pg_ms + w.redis_ms + w.loadgen_ms + w.stripe_ms
        app_ms = box_ms - others_ms
        verdict = (
            f"the app may spend at most {app_ms:.2f} ms a confirmation (now {w.app_ms:.2f})"
            if app_ms > 0
            else "more than the machine has, whatever the app spends"
        )
        return [
            f"    {CONFIRM_TARGET:,} confirmations/s is at most {box_ms:.2f} ms of this machine's"
            f" CPU ({cores()} cores) a confirmation; PostgreSQL ({w.pg_ms:.2f}), Redis"
            f" ({w.redis_ms:.2f}), the load generator ({w.loadgen_ms:.2f}) and the fake Stripe"
            f" with the bench ({w.stripe_ms:.2f}) take {others_ms:.2f} ms of it now, so {verdict}."
        ]

    def render(self) -> str:
        a = self.args
        out = [
            "",
            "Boxoffice booking bench — " + machine(),
            "NOISY FIGURES: 2-core box shared by the servers, the load generators and other jobs "
            "running now; take them as lower bounds and compare within this run only.",
            "",
        ]
        if self.holds:
            out += [
                f"(a) Seat holds over HTTP (POST /api/events/{{id}}/holds), one app process, "
                f"{a.connections} keep-alive connections from {a.clients} aiohttp client "
                "process(es) (127.0.0.2+), each run capped at "
                f"{a.seconds:g} s.",
                f"    Visitors admitted first (access token kept); each sends at most "
                f"{a.attempts} hold attempts, round robin (the server allows 10 per visitor per "
                "10 s). A visitor's new hold replaces their previous one.",
                "    req/s counts every answer; under contention most answers are 409 (the "
                "refusal path of the script) once the seats are held. CPU% is per core; "
                "'ms/req' = app CPU per answer.",
                "",
            ]
            header = (
                f"    {'run':<36}{'visitors':>9}{'seats':>7}{'sent':>7}{'req/s':>8}{'201':>7}"
                f"{'409':>7}{'other':>7}{'p50 ms':>8}{'p99 ms':>8}{'p50 201':>8}{'p50 409':>8}"
                f"{'app CPU%':>9}{'ms/req':>7}{'redis CPU%':>11}{'client CPU%':>12}"
            )
            out += table(header)
            for r in self.holds:
                other = sum(n for s, n in r.statuses.items() if s not in ("201", "409"))
                other += r.errors
                out.append(
                    f"    {r.name:<36}{r.visitors:>9,}{r.seats:>7,}{r.sent:>7,}{r.rate:>8,.0f}"
                    f"{r.statuses.get('201', 0):>7,}{r.statuses.get('409', 0):>7,}{other:>7,}"
                    f"{r.p50:>8.1f}{r.p99:>8.1f}{r.p50_by.get('201', float('nan')):>8.1f}"
                    f"{r.p50_by.get('409', float('nan')):>8.1f}{r.server_cpu:>8.0f}%"
                    f"{r.cpu_ms:>7.2f}{r.redis_cpu:>10.0f}%{r.client_cpu:>11.0f}%"
                    + (f"  {r.note}" if r.note else "")
                )
            out.append("")
        w = self.webhook
        if w is not None:
            out += [
                "(b) Confirmations through Stripe webhooks: one app process with STRIPE_* "
                "pointing at tests/fakestripe.py (in the bench process, 127.0.0.1).",
                f"    {w.orders:,} visitors admitted, held 2 seats each and checked out (the app "
                "creates each PaymentIntent at the fake); then every intent is authorised with "
                f"a card of its own and one signed `{a.webhook_kind}`",
                f"    per order is posted over {a.webhook_connections} connections. Each webhook "
                "verifies the signature, "
                + (
                    "takes the card's fingerprint from the Charge it reports"
                    if a.webhook_kind == "charge.succeeded"
                    else "reads the card's fingerprint from Stripe"
                )
                + ", confirms in PostgreSQL (orders, sold_seats, tickets, outbox, the capture "
                "owed, the buyer's and the card's counts) in one transaction",
                "    and answers; the captures run after the commit in batches (one claim and one "
                "record per batch). The notifier (mail) is a process of its own, as on sale day.",
                "    confirmations/s = orders paid / (first webhook sent -> last paid_at in "
                "PostgreSQL); captured s = first webhook sent -> last capture recorded; ms/req = "
                "app CPU per webhook, the captures' included; PG ms = PostgreSQL's CPU per order "
                "paid (its processes alive throughout).",
                "",
            ]
            header = (
                f"    {'orders':>7}{'checkouts/s':>12}{'webhooks/s':>11}{'paid':>7}"
                f"{'confirmations/s':>16}{'all paid s':>11}{'p50 ms':>8}{'p99 ms':>8}"
                f"{'capture calls':>14}{'captured s':>11}{'app CPU%':>9}{'ms/req':>7}"
                f"{'PG ms':>6}  statuses"
            )
            out += table(header)
            h = w.http or HttpRow("webhooks", 0, 0)
            notes = "; ".join(x for x in (w.note, h.note) if x)
            out.append(
                f"    {w.orders:>7,}{w.checkouts_per_s:>12,.0f}{h.rate:>11,.0f}{w.paid:>7,}"
                f"{w.confirm_rate:>16,.0f}{w.paid_seconds:>11.2f}{h.p50:>8.1f}{h.p99:>8.1f}"
                f"{w.captures:>14,}{w.captured_seconds:>11.2f}{h.server_cpu:>8.0f}%"
                f"{h.cpu_ms:>7.2f}{w.pg_ms:>6.2f}  {h.statuses}" + (f"  {notes}" if notes else "")
            )
            out += self.confirmation_budget()
            d = w.duplicates
            if d is not None:
                out.append(
                    f"    reference, same run: the {d.visitors:,} webhooks posted again "
                    f"(duplicates: verified, looked up, answered) {d.rate:,.0f}/s, p50 "
                    f"{d.p50:.1f} ms, app CPU {d.cpu_ms:.2f} ms, PostgreSQL "
                    f"{w.duplicate_pg_ms:.2f} ms each {d.statuses}; confirmations "
                    f"at {w.confirm_rate / d.rate if d.rate else 0:.2f}x of it"
                )
            m = w.mail
            if m is None:
                out.append(
                    "    mail: none (--notifiers 0): the confirmations alone, as when the"
                    " notifiers run on other machines"
                )
            else:
                one_at_a_time = 1000 / (m.delay_ms + m.compose_ms) if m.compose_ms else 0.0
                out += [
                    f"    mail: {m.processes} notifier process{'es' if m.processes > 1 else ''}"
                    f" (up to {m.in_flight} mails in flight each) sent"
                    f" {m.mailed:,}"
                    f" of {m.owed:,} confirmations to an SMTP server answering after "
                    f"{m.delay_ms:.0f} ms, over {m.connections:,} connections ({m.messages:,} "
                    f"messages): {m.rate:,.0f} mails/s (first mail -> last), paid -> mailed "
                    f"p50 {m.p50_s:.1f} s, p99 {m.p99_s:.1f} s, max {m.max_s:.1f} s; their CPU "
                    f"{m.cpu_ms:.1f} ms a mail" + (f"; {m.note}" if m.note else ""),
                    f"    reference, same run: composing one confirmation takes {m.compose_ms:.1f}"
                    f" ms of CPU (a ceiling of {1000 / m.compose_ms if m.compose_ms else 0:,.0f}"
                    f" mails/s for one process); one mail at a time with this server would be at"
                    f" most {one_at_a_time:,.0f}/s; mails at {m.rate / one_at_a_time if one_at_a_time else 0:.1f}x"
                    " of that",
                ]
            out.append("")
        if self.races:
            first = self.races[0]
            out += [
                f"(c) Race for {first.seats:,} seats, {first.clients} asyncio clients in the "
                "bench process, every client trying every seat in the same order, one seat per "
                "attempt (as FACTS.md).",
                "    Redis: Inventory.hold (the Lua script, EVALSHA through the client's Batcher: "
                "the attempts of one loop turn in one pipeline) with a fresh visitor per "
                "attempt; PostgreSQL: asyncpg, one connection per client, "
                f"scratch schema {SCRATCH_SCHEMA}.",
                "    'exhausted s' = start -> last seat taken; 'attempts/s' = all attempts / "
                "time until every client finished. 'client CPU s' = the bench process (the one "
                "Python process driving all 50 clients);",
                "    'store CPU s' = redis-server, or all PostgreSQL processes. When the client "
                "CPU is near 'done s' the figure is client-bound, not store-bound.",
                "",
            ]
            header = (
                f"    {'path':<48}{'taken':>7}{'distinct':>9}{'in store':>9}{'check':>7}"
                f"{'attempts':>10}{'exhausted s':>12}{'done s':>8}{'attempts/s':>11}"
                f"{'client CPU s':>13}{'store CPU s':>12}{'store us/try':>13}"
            )
            out += table(header)
            for race in self.races:
                out.append(
                    f"    {race.name:<48}{race.won:>7,}{race.distinct:>9,}{race.stored:>9,}"
                    f"{'ok' if race.ok else 'WRONG':>7}{race.attempts:>10,}"
                    f"{race.exhausted_s:>12.2f}{race.done_s:>8.2f}{race.rate:>11,.0f}"
                    f"{race.client_cpu:>13.2f}{race.store_cpu:>12.2f}"
                    f"{1e6 * race.store_cpu / max(1, race.attempts):>13.0f}"
                    + (f"  {race.note}" if race.note else "")
                )
            redis = self.races[0]
            for pg in self.races[1:]:
                if redis.exhausted_s > 0 and pg.exhausted_s > 0 and pg.rate > 0:
                    out.append(
                        f"    {pg.name[4:]}: time to exhaust PG/Redis = "
                        f"{pg.exhausted_s / redis.exhausted_s:.2f}x, attempts/s Redis/PG = "
                        f"{redis.rate / pg.rate:.2f}x (>1 means Redis is faster), store CPU per attempt "
                        f"PG/Redis = {pg.store_cpu / redis.store_cpu if redis.store_cpu else 0:.1f}x, "
                        f"client CPU per attempt Redis/PG = {per_try(redis.client_cpu, redis)}"
                        f"/{per_try(pg.client_cpu, pg)} us"
                    )
            out.append("")
        if self.refresh:
            out += [
                f"(d) A {a.map_seats:,}-seat venue's seat map refreshed after each of "
                f"{a.map_rounds} changes (one hold of 2 seats, then one read), one app process: "
                "the full map against the compact map's delta from the version read before.",
                "    'server ms' = app CPU per round (the hold included, the same in both).",
                "",
            ]
            out += table(
                f"    {'refresh':<44}{'rounds':>7}{'bytes each':>12}{'server ms':>10}{'p50 ms':>8}"
            )
            for row in self.refresh:
                out.append(
                    f"    {row.name:<44}{row.rounds:>7}{row.bytes_each:>12,.0f}"
                    f"{row.server_ms:>10.1f}{row.wall_ms:>8.1f}"
                )
            if len(self.refresh) == 2 and self.refresh[1].server_ms > 0:
                full, delta = self.refresh
                out.append(
                    f"    full/delta: {full.bytes_each / max(1.0, delta.bytes_each):,.0f}x the bytes, "
                    f"{full.server_ms / delta.server_ms:.1f}x the server CPU"
                )
            out.append("")
        out.append(
            f"Bench settings: app log level warning, database pool {a.pool_size}; Redis and "
            "PostgreSQL embedded (server.embedded)."
        )
        out.append(load_line(self.load_start))
        out += error_lines(self.errors)
        return "\n".join(out)


def per_try(cpu_seconds: float, race: RaceRow) -> str:
    """CPU seconds spread over a race's attempts, in whole microseconds."""
    return f"{1e6 * cpu_seconds / max(1, race.attempts):.0f}"


# ---- orchestrator: entry ----------------------------------------------------------------------


async def orchestrate(
    args: argparse.Namespace, folder: Path, urls: tuple[str, str], redis_pid: int
) -> tuple[str, bool]:
    bench = BookingBench(args, Processes(folder), urls[0], urls[1], redis_pid)
    parts = [
        Part("(a) holds", args.skip_holds, bench.bench_holds),
        Part("(b) webhooks", args.skip_webhooks, bench.bench_webhooks),
        Part("(c) race", args.skip_race, bench.bench_race),
        Part("(d) seat map refresh", args.skip_map, bench.bench_refresh),
    ]
    return await run_parts(bench, parts)


def run(args: argparse.Namespace) -> int:
    return run_embedded(args, orchestrate, "bo-bench-booking-", "booking bench")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench_booking", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="small run (well under a minute): smoke test")
    add("--seconds", type=float, default=15.0, help="time cap per HTTP run (a, b)")
    add("--connections", type=int, default=100, help="HTTP connections (a)")
    add("--clients", type=int, default=2, help="load generator processes (a)")
    add("--contention-visitors", type=int, default=500, help="(a) visitors racing for few seats")
    add("--contention-seats", type=int, default=50, help="(a) seats they race for (x5)")
    add("--own-visitors", type=int, default=1000, help="(a) visitors with their own seats")
    add("--attempts", type=int, default=10, help="(a) hold attempts per visitor, 1..10")
    add("--orders", type=int, default=1000, help="(b) orders confirmed by webhook")
    add("--webhook-connections", type=int, default=50, help="(b) connections posting webhooks")
    add("--webhook-seconds", type=float, default=30.0, help="(b) time cap on posting webhooks")
    add(
        "--webhook-kind",
        choices=WEBHOOK_KINDS,
        default=WEBHOOK_KINDS[0],
        help="(b) the report that confirms: the Charge (card in it) or the PaymentIntent's (card read)",
    )
    add("--smtp-delay-ms", type=float, default=50.0, help="(b) the SMTP server's answer delay")
    add("--mail-seconds", type=float, default=180.0, help="(b) cap on waiting for the mails")
    add("--notifiers", type=int, default=1, help="(b) notifier processes (0..8; 0: no mail)")
    add("--pool-size", type=int, default=10, help="app database pool (production default 10)")
    add("--race-clients", type=int, default=50, help="(c) concurrent clients")
    add("--race-seats", type=int, default=1000, help="(c) seats to exhaust")
    add("--race-seconds", type=float, default=60.0, help="(c) time cap per client loop")
    add("--skip-pg-single", action="store_true", help="(c) skip the UPDATE..RETURNING row")
    add("--phase-seconds", type=float, default=60.0, help="cap on admitting visitors")
    add("--max-seconds", type=float, default=300.0, help="whole-run cap")
    add("--skip-holds", action="store_true")
    add("--skip-webhooks", action="store_true")
    add("--skip-race", action="store_true")
    add("--map-seats", type=int, default=20_000, help="(d) seats of the big venue (x2000)")
    add("--map-rounds", type=int, default=40, help="(d) changes, each followed by a read")
    add("--skip-map", action="store_true")
    add("--tick-ms", type=int, default=100, help=argparse.SUPPRESS)
    add("--broadcast-ms", type=int, default=500, help=argparse.SUPPRESS)
    add("--role", choices=["httpgen"], help=argparse.SUPPRESS)
    add("--spec-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 5.0)
        args.contention_visitors = min(args.contention_visitors, 200)
        args.own_visitors = min(args.own_visitors, 200)
        args.attempts = min(args.attempts, 4)
        args.orders = min(args.orders, 50)
        args.webhook_seconds = min(args.webhook_seconds, 15.0)
        args.race_seats = min(args.race_seats, 100)
        args.race_seconds = min(args.race_seconds, 10.0)
        args.map_rounds = min(args.map_rounds, 10)
        args.max_seconds = min(args.max_seconds, 120.0)
    if not 1 <= args.attempts <= 10:
        parser.error("--attempts 1..10 (the server refuses an 11th hold within 10 s)")
    if args.contention_seats % 5 or not 10 <= args.contention_seats <= 5000:
        parser.error("--contention-seats: a multiple of 5 between 10 and 5000")
    if not 1 <= args.clients <= 8 or not 1 <= args.connections <= 1000:
        parser.error("--clients 1..8 and --connections 1..1000")
    if not 0 <= args.notifiers <= 8:
        parser.error("--notifiers 0..8")
    if min(args.contention_visitors, args.own_visitors, args.orders) < 1:
        parser.error("visitor and order counts must be positive")
    if args.own_visitors > 50_000 or args.orders > 50_000:
        parser.error("--own-visitors and --orders at most 50000 (seat rows)")
    if args.map_seats % 2000 or not 2000 <= args.map_seats <= 50_000:
        parser.error("--map-seats: a multiple of 2000 up to 50000")
    if not 1 <= args.map_rounds <= 500:
        parser.error("--map-rounds 1..500 (25 a row of the first block, 20 rows each way)")
    if not 1 <= args.race_clients <= 90 or not 1 <= args.race_seats <= 100_000:
        parser.error("--race-clients 1..90 (PostgreSQL connections), --race-seats 1..100000")
    if args.seconds <= 0 or args.race_seconds <= 0:
        parser.error("--seconds and --race-seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.role == "httpgen":
        spec = msgspec.json.decode(Path(args.spec_file).read_bytes(), type=GenSpec)
        result = uvloop.run(httpgen(spec))
        sys.stdout.write(msgspec.json.encode(result).decode() + "\n")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
