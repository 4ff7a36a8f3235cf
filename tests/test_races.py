"""Races against the real app, Redis and PostgreSQL: crowds joining at once, one visitor joining
many times at once, admission run by three app processes at once, reconnects, grace expiry,
pause and max_active. Waits are bounded polling loops on observable state, never sleeps that a
slow machine could outrun."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core import rules
from server.core.keys import EventKeys
from server.core.settings import Settings, to_env
from server.runtime.app import create_app
from server.runtime.embedded import free_port
from server.waiting.fanout import RANK_CHUNK

from .helpers import ADMIN, create_event, event_body, eventually, join_body

Client = TestClient[Any, Any]
ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.02


# ---- helpers ---------------------------------------------------------------------------------


CROWD_TIMEOUT = aiohttp.ClientTimeout(total=180, sock_connect=None)


class Visitor:
    """One fan: a cookie jar of their own (so the server gives them their own visitor id) over
    a connector shared with the rest of the crowd."""

    def __init__(self, base_url: str, connector: aiohttp.BaseConnector) -> None:
        self.session = aiohttp.ClientSession(
            base_url=base_url,
            connector=connector,
            connector_owner=False,
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            # hundreds connect at once: past the test server's listen backlog a SYN waits for
            # its retransmission (1 s, 3 s, 7 s, …), longer than aiohttp's 30 s connect default
            # on a loaded machine; the tests bound their own time
            timeout=CROWD_TIMEOUT,
        )
        self.solutions: dict[str, dict[str, str]] = {}
        self.solving = asyncio.Lock()

    async def call(self, method: str, path: str, expect: int = 200) -> Any:
        async with self.session.request(method, path) as response:
            assert response.status == expect, f"{method} {path}: {await response.text()}"
            return await response.json() if response.status != 204 else None

    async def join(self, event_id: str) -> dict[str, Any]:
        """Join with a solved challenge; this visitor's later joins (rejoins) reuse it, as a
        visitor holding a place needs no new one."""
        async with self.solving:
            if event_id not in self.solutions:
                self.solutions[event_id] = await join_body(self.session, event_id)
        path = f"/api/events/{event_id}/queue"
        async with self.session.post(path, json=self.solutions[event_id]) as response:
            if response.status == 403:  # spent: the place it bought is gone, solve again
                self.solutions[event_id] = await join_body(self.session, event_id)
                return await self.join(event_id)
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
        return answer

    async def status(self, queue_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call("GET", f"/api/queue/{queue_id}")
        return answer

    async def websocket(self, queue_id: str) -> aiohttp.ClientWebSocketResponse:
        return await self.session.ws_connect(f"/api/queue/{queue_id}/ws")


@contextlib.asynccontextmanager
async def crowd(base_urls: list[str], size: int) -> AsyncIterator[list[Visitor]]:
    """`size` distinct visitors; visitor i talks to base_urls[i % len(base_urls)]."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    people = [Visitor(base_urls[i % len(base_urls)], connector) for i in range(size)]
    try:
        yield people
    finally:
        for person in people:
            await person.session.close()
        await connector.close()


def base_of(client: Client) -> str:
    return str(client.make_url("/"))


async def admin(
    session: aiohttp.ClientSession | Client, method: str, path: str, body: Any = None
) -> Any:
    async with session.request(method, path, json=body, headers=ADMIN) as response:
        assert response.status in (200, 201), f"{method} {path}: {await response.text()}"
        return await response.json()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def zitems(redis: Redis, key: str) -> dict[str, int]:
    """A sorted set as {member: integer score}."""
    rows: list[Any] = list(await redis.zrange(key, 0, -1, withscores=True))
    return {text(member): int(score) for member, score in rows}


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def bucket_ts(redis: Redis, k: EventKeys) -> int:
    raw = await redis.hget(k.bucket, "ts")
    return int(float(raw)) if raw is not None else 0


async def ticks_pass(redis: Redis, k: EventKeys, count: int, tick_ms: int) -> None:
    """Wait until the admission step has run for this event `count` ticks' worth of Redis time
    after now: every step writes the bucket's `ts` from Redis TIME."""
    target = await redis_ms(redis) + count * tick_ms

    async def reached() -> bool:
        return await bucket_ts(redis, k) >= target

    await eventually(reached, f"admission steps {count} ticks ahead", within=30, every=POLL_S)


async def stat(redis: Redis, k: EventKeys, name: str) -> int:
    return int(await redis.hget(k.stats, name) or 0)


async def tickets_of(redis: Redis, k: EventKeys) -> dict[str, int]:
    raw: dict[Any, Any] = await redis.hgetall(k.tickets)
    return {text(q): int(t) for q, t in raw.items()}


async def active_sessions(redis: Redis, k: EventKeys) -> dict[str, int]:
    return await zitems(redis, k.active)


def assert_admitted_in_ticket_order(active: dict[str, int], tickets: dict[str, int]) -> None:
    """The admitted are exactly the lowest tickets, and their session expiry (admission time
    plus a fixed session length) never goes down as the ticket goes up."""
    by_ticket = sorted(active, key=lambda q: tickets[q])
    assert [tickets[q] for q in by_ticket] == list(range(1, len(active) + 1))
    expiries = [active[q] for q in by_ticket]
    assert expiries == sorted(expiries), "someone was admitted before an earlier ticket"


async def set_paused(client: Client, event_id: str, paused: bool) -> None:
    ev = await admin(client, "PATCH", f"/api/admin/events/{event_id}", {"paused": paused})
    assert ev["settings"]["paused"] is paused


# ---- many joins at once ----------------------------------------------------------------------


async def test_500_distinct_visitors_join_at_once(client: Client, redis: Redis) -> None:
    # 500 solutions would cost ~40 s of CPU here; the challenge has its own tests.
    ev = await create_event(client, challenge="off")
    await set_paused(client, ev["id"], True)  # nobody admitted: positions stay exact
    k = EventKeys(ev["id"])
    async with crowd([base_of(client)], 500) as people:
        answers = await asyncio.gather(*(p.join(ev["id"]) for p in people))

    assert {a["state"] for a in answers} == {"waiting"}
    queue_ids = [a["queue_id"] for a in answers]
    assert len(set(queue_ids)) == 500
    assert sorted(a["ticket"] for a in answers) == list(range(1, 501))
    assert sorted(a["position"] for a in answers) == list(range(1, 501))
    # Each join saw exactly the joins with smaller tickets ahead of it.
    assert all(a["position"] == a["ticket"] for a in answers)

    assert int(await redis.get(k.seq) or 0) == 500
    assert await stat(redis, k, "joins") == 500
    assert await redis.hlen(k.visitors) == 500
    owners = await redis.hgetall(k.owner)
    assert len(owners) == 500 and len(set(owners.values())) == 500
    line = await zitems(redis, k.line)
    assert line == {a["queue_id"]: a["ticket"] for a in answers}
    assert await tickets_of(redis, k) == line


async def test_one_visitor_joining_50_times_at_once_gets_one_place(
    client: Client, redis: Redis
) -> None:
    ev = await create_event(client)
    await set_paused(client, ev["id"], True)
    k = EventKeys(ev["id"])
    async with crowd([base_of(client)], 2) as (fan, other):
        await fan.call("GET", "/healthz")  # the page load that gives the visitor a cookie
        answers = await asyncio.gather(*(fan.join(ev["id"]) for _ in range(50)))
        assert len({a["queue_id"] for a in answers}) == 1
        assert {a["ticket"] for a in answers} == {1}
        assert {a["position"] for a in answers} == {1}
        later = await other.join(ev["id"])
        again = await fan.join(ev["id"])

    assert later["ticket"] == 2 and later["position"] == 2
    assert again["queue_id"] == answers[0]["queue_id"] and again["position"] == 1
    assert await redis.hlen(k.visitors) == 2
    assert await redis.zcard(k.line) == 2
    assert await stat(redis, k, "joins") == 2
    assert int(await redis.get(k.seq) or 0) == 2


# ---- admission from several processes --------------------------------------------------------


def worker_env(settings: Settings, port: int) -> dict[str, str]:
    # Variables of the test run itself (BOXOFFICE_REQUIRE_ALL) are not settings: the worker
    # refuses unknown BOXOFFICE_* variables, so pass only what to_env() produces.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    env.update(to_env(msgspec.structs.replace(settings, port=port)))
    return env


def spawn_worker(settings: Settings, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "server", "worker"],
        env=worker_env(settings, port),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{read_log(log)}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"worker at {url} never became ready:\n{read_log(log)}")
            await asyncio.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


ADMISSIONS_METRIC = re.compile(r'^boxoffice_admissions_total\{event="([^"]+)"\} (\S+)$', re.M)


async def admissions_by_process(urls: list[str], event_id: str) -> list[int]:
    counts = []
    async with aiohttp.ClientSession() as session:
        for url in urls:
            async with session.get(f"{url}/metrics") as response:
                assert response.status == 200
                text = await response.text()
            found = dict(ADMISSIONS_METRIC.findall(text))
            counts.append(int(float(found.get(event_id, "0"))))
    return counts


@pytest.mark.slow
async def test_three_processes_admit_within_the_bucket_in_arrival_order(
    settings: Settings, redis: Redis, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    rate, waiters = 600, 80
    tick_ms = settings.tick_ms
    procs: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(3):
            port = free_port()
            log = tmp_path / f"worker-{i}.log"
            logs.append(log.open("wb"))
            procs.append(spawn_worker(settings, port, logs[-1]))
            urls.append(f"http://127.0.0.1:{port}")
        for i, url in enumerate(urls):
            await wait_ready(url, procs[i], tmp_path / f"worker-{i}.log")

        async with aiohttp.ClientSession(base_url=urls[0]) as ops:
            ev = await admin(ops, "POST", "/api/admin/events", event_body(rate_per_min=rate))
        event_id = ev["id"]
        k = EventKeys(event_id)
        async with aiohttp.ClientSession(base_url=urls[1]) as ops:
            await admin(ops, "PATCH", f"/api/admin/events/{event_id}", {"paused": True})

        async with crowd(urls, waiters + 1) as people:
            # One visitor joins 30 times at once through all three processes: one place.
            eager = people[0]
            await eager.call("GET", "/healthz")
            body = await join_body(eager.session, event_id)  # one solution, 30 tries with it
            first = await asyncio.gather(
                *(
                    eager.session.post(f"{urls[i % 3]}/api/events/{event_id}/queue", json=body)
                    for i in range(30)
                )
            )
            bodies = [await r.json() for r in first]
            for r in first:
                r.release()
            assert len({b["queue_id"] for b in bodies}) == 1
            # The rest arrive one after another, spread over the processes.
            arrivals = [bodies[0]]
            for person in people[1:]:
                arrivals.append(await person.join(event_id))
        tickets = [a["ticket"] for a in arrivals]
        assert tickets == list(range(1, waiters + 2)), "tickets must follow arrival order"
        assert await stat(redis, k, "admitted") == 0

        async with aiohttp.ClientSession(base_url=urls[2]) as ops:
            await admin(ops, "PATCH", f"/api/admin/events/{event_id}", {"paused": False})

        peak_active = 0

        async def all_admitted() -> bool:
            nonlocal peak_active
            peak_active = max(peak_active, await redis.zcard(k.active))
            return await stat(redis, k, "admitted") >= waiters + 1

        await eventually(all_admitted, "every waiter admitted", within=120, every=POLL_S)
        # The last step may land between the sample above and the admitted counter's read.
        peak_active = max(peak_active, await redis.zcard(k.active))

        # The admits log: one member "<ms>:<total>:<n>" per admission step that admitted.
        log_rows = await zitems(redis, k.admits)
        batches = sorted(
            (int(total), int(ms), int(n))
            for member, score in log_rows.items()
            for ms, total, n in [member.split(":")]
            if int(ms) == score
        )
        assert len(batches) == len(log_rows)
        running = 0
        for total, _, n in batches:
            running += n
            assert total == running, "admitted totals must add up batch by batch"
        assert running == waiters + 1 == await stat(redis, k, "admitted")
        times = [ms for _, ms, _ in batches]
        assert times == sorted(times)
        # Invariant 2 over every interval between two admission steps (Redis TIME).
        for i in range(len(batches)):
            admitted = 0
            for j in range(i, len(batches)):
                admitted += batches[j][2]
                ceiling = rules.admission_ceiling(rate, tick_ms, times[j] - times[i])
                assert admitted <= ceiling, (
                    f"{admitted} admitted in {times[j] - times[i]} ms, ceiling {ceiling}"
                )
        capacity = rules.bucket_capacity(rate, tick_ms)
        assert float(await redis.hget(k.bucket, "tokens") or 0) <= capacity

        # The active sessions agree with the log: expiry = admission time + session length.
        active = await active_sessions(redis, k)
        assert len(active) == waiters + 1 == peak_active
        session_ms = int(await redis.hget(k.cfg, "session_ms") or 0)
        by_ms: Counter[int] = Counter()
        for _, ms, n in batches:
            by_ms[ms] += n
        assert Counter(expiry - session_ms for expiry in active.values()) == by_ms
        assert await redis.zcard(k.line) == 0
        assert_admitted_in_ticket_order(active, await tickets_of(redis, k))
        queue_ids = [a["queue_id"] for a in arrivals]
        assert [active[q] for q in queue_ids] == sorted(active[q] for q in queue_ids)

        counts = await admissions_by_process(urls, event_id)
        assert sum(counts) == waiters + 1
        assert sum(1 for c in counts if c > 0) >= 2, f"only one process admitted: {counts}"
    finally:
        for proc in procs:
            stop(proc)
        for log_file in logs:
            log_file.close()


# ---- reconnect, grace period, pause, max_active ----------------------------------------------


async def first_status(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = await ws.receive_json(timeout=10)
        if msg["type"] != "tick":
            return msg


async def test_reconnect_keeps_place(client: Client, redis: Redis) -> None:
    ev = await create_event(client)
    await set_paused(client, ev["id"], True)
    async with crowd([base_of(client)], 3) as (a, b, c):
        await a.join(ev["id"])
        joined_b = await b.join(ev["id"])
        joined = await c.join(ev["id"])
        queue_id = joined["queue_id"]

        ws = await c.websocket(queue_id)
        hello = await first_status(ws)
        assert (hello["type"], hello["position"], hello["ticket"]) == ("status", 3, 3)
        await ws.close()

        for _ in range(3):
            ws = await c.websocket(queue_id)
            again = await first_status(ws)
            assert (again["type"], again["state"]) == ("status", "waiting")
            assert (again["position"], again["ticket"]) == (3, 3)
            await ws.close()

        reload = await c.join(ev["id"])
        assert (reload["queue_id"], reload["ticket"], reload["position"]) == (queue_id, 3, 3)

        await b.call("DELETE", f"/api/queue/{joined_b['queue_id']}", expect=204)
        ws = await c.websocket(queue_id)
        moved = await first_status(ws)
        assert (moved["position"], moved["ticket"]) == (2, 3)
        await ws.close()
    k = EventKeys(ev["id"])
    assert await redis.zscore(k.line, queue_id) == 3
    assert await stat(redis, k, "joins") == 3


@pytest.fixture
async def short_grace_client(
    aiohttp_client: Any, settings: Settings, redis: Redis, pg: asyncpg.Pool
) -> Client:
    quick = msgspec.structs.replace(
        settings,
        grace_seconds=5,
        return_window_seconds=8,
        heartbeat_seconds=1,
        rank_refresh_seconds=1,
    )
    result: Client = await aiohttp_client(create_app(quick))
    return result


async def test_grace_steps_out_only_the_silent_and_the_window_ends_places(
    short_grace_client: Client, redis: Redis, settings: Settings
) -> None:
    client = short_grace_client
    tick_ms = settings.tick_ms
    ev = await create_event(client)
    await set_paused(client, ev["id"], True)
    k = EventKeys(ev["id"])
    async with crowd([base_of(client)], 4) as (napper, connected, dropped, polling):
        q_nap = (await napper.join(ev["id"]))["queue_id"]  # joins, then nothing for a while
        q_conn = (await connected.join(ev["id"]))["queue_id"]  # keeps a websocket open
        q_drop = (await dropped.join(ev["id"]))["queue_id"]  # websocket, then closes it
        q_poll = (await polling.join(ev["id"]))["queue_id"]  # polls the status

        ws = await connected.websocket(q_conn)
        assert (await first_status(ws))["position"] == 2
        ws_drop = await dropped.websocket(q_drop)
        assert (await first_status(ws_drop))["position"] == 3
        await ws_drop.close()

        async def poll_forever() -> None:
            while True:
                assert (await polling.status(q_poll))["state"] == "waiting"
                await asyncio.sleep(1)

        poller = asyncio.create_task(poll_forever())
        try:

            async def silent_stepped_away() -> bool:
                away = await redis.zrange(k.away, 0, -1)
                return (
                    set(away) == {q_nap.encode(), q_drop.encode()}
                    and await redis.zcard(k.line) == 2
                )

            await eventually(
                silent_stepped_away, "silent fans stepped away", within=60, every=POLL_S
            )
            # the napper is back within the window: the same place, ahead of everyone
            back = await napper.status(q_nap)
            assert (back["state"], back["position"], back["ticket"]) == ("waiting", 1, 1)

            async def window_over() -> bool:
                return await redis.zscore(k.away, q_drop) is None

            await eventually(window_over, "the window ended a place", within=60, every=POLL_S)
            # A few more reaper rounds with the survivors still alive.
            await ticks_pass(redis, k, 2000 // tick_ms, tick_ms)
            assert not poller.done()
            assert await redis.zscore(k.line, q_conn) == 2
            assert await redis.zscore(k.line, q_poll) == 4
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

        status_conn = await connected.status(q_conn)
        assert status_conn["state"] == "waiting"
        status_poll = await polling.status(q_poll)
        assert status_poll["state"] == "waiting"
        assert status_poll["position"] == status_conn["position"] + 1

        ws_back = await dropped.websocket(q_drop)
        closed = await first_status(ws_back)
        assert closed == {"type": "closed", "reason": "expired"}
        await ws_back.close()
        await ws.close()

        # Coming back after the window means a new place at the back.
        again = await dropped.join(ev["id"])
        assert again["queue_id"] != q_drop
        assert again["ticket"] == 5
        # at the back: last of those in line now (the napper, silent again since its one status,
        # may have stepped away meanwhile on a slow machine, which moves everyone up by one)
        assert again["position"] == await redis.zcard(k.line)
        assert await redis.zrange(k.line, -1, -1) == [again["queue_id"].encode()]


async def test_pause_stops_admission_and_unpause_resumes(
    client: Client, redis: Redis, settings: Settings
) -> None:
    ev = await create_event(client, rate_per_min=6000)
    await set_paused(client, ev["id"], True)
    k = EventKeys(ev["id"])
    tick_ms = settings.tick_ms
    async with crowd([base_of(client)], 15) as people:
        for person in people[:10]:
            await person.join(ev["id"])
        await ticks_pass(redis, k, 20, tick_ms)
        assert await stat(redis, k, "admitted") == 0
        assert await redis.zcard(k.active) == 0
        assert await redis.zcard(k.line) == 10
        # The bucket fills while paused but never beyond its one-tick capacity.
        tokens = float(await redis.hget(k.bucket, "tokens") or 0)
        assert tokens <= rules.bucket_capacity(6000, tick_ms)

        await set_paused(client, ev["id"], False)

        async def ten_admitted() -> bool:
            return await stat(redis, k, "admitted") == 10

        await eventually(
            ten_admitted, "the ten waiters admitted after unpausing", within=30, every=POLL_S
        )
        assert_admitted_in_ticket_order(await active_sessions(redis, k), await tickets_of(redis, k))
        status = await people[0].call("GET", "/api/events/" + ev["id"])
        assert status["state"] == "on_sale"

        await set_paused(client, ev["id"], True)
        later = [await person.join(ev["id"]) for person in people[10:]]
        await ticks_pass(redis, k, 20, tick_ms)
        assert await stat(redis, k, "admitted") == 10
        assert [j["position"] for j in later] == [1, 2, 3, 4, 5]
        assert await redis.zcard(k.line) == 5


async def test_max_active_is_never_exceeded(
    client: Client, redis: Redis, settings: Settings
) -> None:
    ev = await create_event(client, rate_per_min=60000, max_active=3)
    await set_paused(client, ev["id"], True)
    k = EventKeys(ev["id"])
    tick_ms = settings.tick_ms
    peak = 0

    async def sample() -> int:
        nonlocal peak
        active = await redis.zcard(k.active)
        admitted = await stat(redis, k, "admitted") - await stat(redis, k, "left")
        peak = max(peak, active, admitted)
        return admitted

    async with crowd([base_of(client)], 10) as people:
        joined = [await p.join(ev["id"]) for p in people]
        await set_paused(client, ev["id"], False)

        async def three_in() -> bool:
            return await sample() == 3

        await eventually(three_in, "three admitted", within=30, every=POLL_S)
        target = await redis_ms(redis) + 20 * tick_ms

        async def many_ticks_later() -> bool:
            await sample()
            return await bucket_ts(redis, k) >= target

        await eventually(many_ticks_later, "twenty more admission steps", within=30, every=POLL_S)
        assert peak == 3
        assert await stat(redis, k, "admitted") == 3
        assert await redis.zcard(k.line) == 7

        # Ops' burst is beyond the bucket but never beyond max_active.
        burst = await admin(client, "POST", f"/api/admin/events/{ev['id']}/admit", {"count": 50})
        assert burst == {"admitted": 0}

        # One admitted fan leaves: exactly one slot frees, for the next ticket.
        first = joined[0]["queue_id"]
        assert (await people[0].status(first))["state"] == "admitted"
        await people[0].call("DELETE", f"/api/queue/{first}", expect=204)

        async def fourth_in() -> bool:
            return await stat(redis, k, "admitted") == 4

        await eventually(
            fourth_in, "the fourth admitted after a slot freed", within=30, every=POLL_S
        )
        await ticks_pass(redis, k, 20, tick_ms)
        await sample()
        assert peak == 3
        assert await stat(redis, k, "admitted") == 4
        active = await active_sessions(redis, k)
        tickets = await tickets_of(redis, k)
        assert sorted(tickets[q] for q in active) == [2, 3, 4]
        assert (await people[3].status(joined[3]["queue_id"]))["state"] == "admitted"
        assert (await people[4].status(joined[4]["queue_id"]))["position"] == 1


async def test_every_waiting_socket_gets_its_exact_rank(
    short_grace_client: Client, redis: Redis
) -> None:
    """More sockets than one rank look-up takes at a time (fanout.RANK_CHUNK): once the first
    fans leave, every socket behind them is sent its new exact position within a few refresh
    periods (1 s here), whichever chunk it fell in."""
    client = short_grace_client
    ev = await create_event(client, challenge="off")
    await set_paused(client, ev["id"], True)
    size, leaving = RANK_CHUNK * 2 + 44, 10
    async with crowd([base_of(client)], size) as fans:

        async def arrive(fan: Visitor) -> tuple[dict[str, Any], aiohttp.ClientWebSocketResponse]:
            place = await fan.join(ev["id"])  # then its socket at once: a silent fan steps away
            return place, await fan.websocket(place["queue_id"])

        arrived = await asyncio.gather(*(arrive(fan) for fan in fans))
        joined = [place for place, _ in arrived]
        sockets = [ws for _, ws in arrived]
        greetings = [await first_status(ws) for ws in sockets]
        before = [g["position"] for g in greetings]
        assert sorted(before) == list(range(1, size + 1))
        front = sorted(range(size), key=lambda i: before[i])[:leaving]
        await asyncio.gather(
            *(
                fans[i].call("DELETE", f"/api/queue/{joined[i]['queue_id']}", expect=204)
                for i in front
            )
        )

        async def moved_up(i: int) -> None:
            while True:
                msg = await sockets[i].receive_json(timeout=15)
                if msg["type"] != "tick" and msg.get("position") == before[i] - leaving:
                    return

        behind = [i for i in range(size) if i not in front]
        await asyncio.wait_for(asyncio.gather(*(moved_up(i) for i in behind)), 60)
        for ws in sockets:
            await ws.close()
    assert await redis.zcard(EventKeys(ev["id"]).line) == size - leaving
