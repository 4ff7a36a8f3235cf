"""The load generators that run as child processes: a bare aiohttp handler, HTTP joins, and a
raw websocket client light enough to hold thousands of sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import msgspec
import uvloop
from aiohttp import web

from loadtest.benchkit.common import (
    HOST,
    VISITOR_COOKIE,
    Command,
    LoadResult,
    LoadSpec,
    Reply,
    WsSpec,
)
from loadtest.benchkit.measure import mint_cookies

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


def serve(app: web.Application, port: int) -> None:
    """Run a child's server on the bench's host and `port` (shared: SO_REUSEPORT), quietly."""
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


def run_bare(port: int) -> None:
    body = b'{"ok":true}'

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/events/{event_id}/queue", handler)
    app.router.add_get("/healthz", handler)
    serve(app, port)


# ---- child role: the floor of a join -------------------------------------------------------


def run_floor(port: int, event_id: str) -> None:
    """The least a join can cost in this stack, built from the app's own parts: a bare aiohttp
    handler (no middleware, no event lookup) that makes a new visitor, puts it in line at
    `event_id` (mirrored in Redis by the app's run) with one join.lua call through the Batcher,
    its attempt counted by the script, and answers the status with the visitor's and the
    place's signed cookies, as a join does. What a join does beyond this (the event, the
    client address, the middlewares, metrics) is the app's own cost. Its settings come from
    the environment, as the app's do."""
    from server.core.clock import from_ms, now_ms
    from server.core.http import json_response
    from server.core.identity import COOKIE_MAX_AGE, VISITOR_COOKIE, add_cookie
    from server.core.keys import EventKeys
    from server.core.messages import QueueStatus
    from server.core.settings import from_env
    from server.core.tokens import PlaceClaims, Signer, new_id
    from server.store.redis_client import close_redis, make_redis
    from server.waiting.challenge import LIMITS, WINDOW_MS
    from server.waiting.line import Count, Scripts
    from server.waiting.routes import PLACE_COOKIE_MAX_AGE, place_cookie

    k = EventKeys(event_id)
    settings = from_env()
    signer = Signer(settings.secret)
    cookie, per_visitor = place_cookie(event_id), LIMITS["join"][0]
    app = web.Application()
    scripts: list[Scripts] = []

    async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
        client = make_redis(settings)
        scripts.append(Scripts(client))
        yield
        await close_redis(client)

    async def join(request: web.Request) -> web.Response:
        visitor = new_id()
        count = Count(k.rate("join", visitor), per_visitor, WINDOW_MS)
        place = await scripts[0].join(k, visitor, f"{event_id}.{new_id()}", counts=[count])
        if place.state != "waiting":  # the app's run did not leave its event on sale in Redis
            raise web.HTTPServiceUnavailable(text=f"join.lua answered {place.state}")
        status = QueueStatus(
            place.queue_id,
            event_id,
            "waiting",
            place.rank + 1,
            ticket=place.ticket,
            return_window_seconds=settings.return_window_seconds,
            server_time=from_ms(now_ms()),  # as every status answer carries
        )
        response = json_response(status)
        add_cookie(response, VISITOR_COOKIE, signer.visitor_cookie(visitor), COOKIE_MAX_AGE, False)
        claims = PlaceClaims(event_id, visitor, place.queue_id, place.ticket, 0, place.epoch)
        add_cookie(response, cookie, signer.place_token(claims), PLACE_COOKIE_MAX_AGE, False)
        return response

    app.cleanup_ctx.append(redis_ctx)
    app.router.add_post("/api/events/{event_id}/queue", join)
    serve(app, port)


# ---- child role: the raw-write floor of a tick ------------------------------------------------


def text_frame(payload: bytes) -> bytes:
    """An unmasked websocket text frame (what a server sends)."""
    size = len(payload)
    if size < 126:
        return bytes([0x81, size]) + payload
    return bytes([0x81, 126]) + size.to_bytes(2, "big") + payload


def run_raw_ws(port: int, chunk: int) -> None:
    """The floor one tick can cost: websockets accepted by aiohttp (as the app accepts them),
    then POST /tick writes one pre-framed message to every socket with transport.write, `chunk`
    sockets between two yields as the app's Hub does - no framing per socket, no send path,
    no per-socket state. Answers {"seconds", "cpu" (the loop thread's, user and system),
    "sockets"}; any path upgrades (/api/queue/…/ws)."""
    transports: list[asyncio.Transport] = []

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type":"status"}')  # the clients count a socket open when greeted
        transport = request.transport
        assert transport is not None
        transports.append(transport)
        try:
            async for _ in ws:
                pass
        finally:
            transports.remove(transport)
        return ws

    async def tick(request: web.Request) -> web.Response:
        frame = text_frame(await request.read())
        started, cpu = time.perf_counter(), time.thread_time()
        for i in range(0, len(transports), chunk):
            for transport in transports[i : i + chunk]:
                transport.write(frame)
            await asyncio.sleep(0)
        seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
        return web.json_response({"seconds": seconds, "cpu": cpu, "sockets": len(transports)})

    app = web.Application()
    app.router.add_post("/tick", tick)
    app.router.add_get("/{tail:.*}", socket)
    web.run_app(
        app,
        host=HOST,
        port=port,
        backlog=4096,
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
            elif command.cmd == "fake":  # visitors for the raw-write server (any id will do)
                client.visitors += [Visitor(f"raw{i}", "-") for i in range(command.count)]
                answer(Reply(ok=command.count))
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
