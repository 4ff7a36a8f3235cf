"""A world in which a bad request must change nothing: a paused on-sale event with one fan waiting,
every key of Redis and every row of PostgreSQL to compare before and after, and the documented
error shape. The `world` fixture (tests/conftest.py) builds it; test_bad_input,
test_hardening_input and test_security use it."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core.identity import VISITOR_COOKIE
from server.core.keys import EventKeys, admin_failures

from .helpers import ADMIN, create_event, join_body

Client = TestClient[Any, Any]
AUTH_FAILURES = admin_failures("")  # the prefix of every address's counter
SETTLE_MS = 1500  # longer than the period of the slowest background loop (1 s)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def bucket_ts(redis: Redis, bucket: str) -> int:
    """Redis time (ms) of the admission step that last ran for the event."""
    return int(float(await redis.hget(bucket, "ts") or 0))


async def redis_state(redis: Redis) -> dict[str, Any]:
    """Every key and its content. The admission step rewrites the token bucket's clock on every
    tick, and a visitor's own requests refresh their sign of life: those two are compared by
    membership only. Rate-limit and challenge-pressure counters count every attempt, refused
    ones too, by design: they are left out."""
    state: dict[str, Any] = {}
    async for raw in redis.scan_iter("*"):
        key = text(raw)
        if ":rl:" in key or ":pw:" in key:
            continue
        kind = text(await redis.type(key))
        if key.endswith(":bucket"):
            state[key] = kind
        elif kind == "hash":
            state[key] = sorted((text(f), text(v)) for f, v in (await redis.hgetall(key)).items())
        elif kind == "zset":
            rows: list[Any] = list(await redis.zrange(key, 0, -1, withscores=True))
            keep_scores = not key.endswith(":seen")
            state[key] = sorted((text(m), s if keep_scores else None) for m, s in rows)
        elif kind == "string":
            state[key] = text(await redis.get(key))
        elif kind == "set":
            state[key] = sorted(text(m) for m in await redis.smembers(key))
        elif kind == "list":
            state[key] = [text(m) for m in await redis.lrange(key, 0, -1)]
        else:
            state[key] = kind
    return state


async def pg_state(pg: asyncpg.Pool) -> dict[str, list[str]]:
    """Every row of every table of the public schema, as text."""
    tables = await pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    state = {}
    for row in tables:
        name = row["tablename"]
        rows = await pg.fetch(f'SELECT t::text AS r FROM "{name}" t')
        state[name] = sorted(r["r"] for r in rows)
    return state


@dataclass
class World:
    """A paused on-sale event with one fan waiting in it, and the means to check that a bad
    request changed nothing."""

    client: Client
    redis: Redis
    pg: asyncpg.Pool
    event_id: str
    queue_id: str
    fan: aiohttp.ClientSession  # the owner of queue_id
    stranger: aiohttp.ClientSession  # another visitor with a valid cookie of their own

    async def state(self) -> State:
        return State(await redis_state(self.redis), await pg_state(self.pg))

    async def settle(self) -> None:
        """Wait until the app's background loops have taken the event up (the admission step
        writes the bucket; the booking loops build their keys once) and the stores stay the
        same over a stretch of admission steps longer than the slowest loop's period."""
        bucket = EventKeys(self.event_id).bucket
        deadline = time.monotonic() + 30
        previous = None
        while True:
            assert time.monotonic() < deadline, "the stores never settled"
            if await self.redis.exists(bucket):
                current = await self.state()
                if previous is not None and not current.changes(previous):
                    return
                previous = current
                start = await bucket_ts(self.redis, bucket)
                while await bucket_ts(self.redis, bucket) < start + SETTLE_MS:
                    assert time.monotonic() < deadline, "the admission step stopped"
                    await asyncio.sleep(0.05)
            else:
                await asyncio.sleep(0.02)

    async def unchanged_since(self, before: State, ignore: str | None = None) -> None:
        """Nothing changed, except keys starting with `ignore` (which the caller checks)."""
        changed = (await self.state()).changes(before)
        if ignore is not None:
            changed = {k: v for k, v in changed.items() if not k.startswith(ignore)}
        assert not changed, f"a refused request changed the stores: {changed}"


@dataclass
class State:
    redis: dict[str, Any]
    pg: dict[str, list[str]]

    def changes(self, other: State) -> dict[str, Any]:
        """What differs from `other`, key by key (Redis) and table by table (PostgreSQL)."""
        changed: dict[str, Any] = {}
        for mine, theirs in ((self.redis, other.redis), (self.pg, other.pg)):
            for key in set(mine) | set(theirs):
                if mine.get(key) != theirs.get(key):
                    changed[key] = {"now": mine.get(key), "before": theirs.get(key)}
        return changed


def session_for(client: Client, cookie: str | None = None) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(
        base_url=str(client.make_url("/")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    if cookie is not None:
        session.cookie_jar.update_cookies({VISITOR_COOKIE: cookie}, client.make_url("/"))
    return session


async def expect_error(
    response: aiohttp.ClientResponse, status: int, code: str | None = None
) -> dict[str, Any]:
    """The documented error shape: JSON {"error": <code>, "detail": <sentence>}, and for a
    refused body (422) `fields`, each problem with its path and a message."""
    raw = await response.text()
    assert response.status == status, f"{response.method} {response.url}: {response.status} {raw}"
    assert response.content_type == "application/json", raw
    body: dict[str, Any] = json.loads(raw)
    assert set(body) - {"fields"} == {"error", "detail"}, body
    assert "fields" not in body or (status == 422 and body["fields"]), body
    for field in body.get("fields", ()):
        assert set(field) == {"path", "message"} and field["message"], body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["error"] == code, body
    return body


async def open_world(
    client: Client, redis: Redis, pg: asyncpg.Pool, sessions: list[aiohttp.ClientSession]
) -> World:
    """The world, its fan and stranger sessions appended to `sessions` (the caller closes them)."""
    ev = await create_event(client)
    patch = await client.patch(
        f"/api/admin/events/{ev['id']}", json={"paused": True}, headers=ADMIN
    )
    assert patch.status == 200
    fan, stranger = session_for(client), session_for(client)
    sessions += [fan, stranger]
    body = await join_body(fan, ev["id"])
    async with fan.post(f"/api/events/{ev['id']}/queue", json=body) as r:
        assert r.status == 200
        joined = await r.json()
    async with stranger.get("/healthz") as r:
        assert r.status == 200 and VISITOR_COOKIE in r.cookies
    world = World(client, redis, pg, ev["id"], joined["queue_id"], fan, stranger)
    await world.settle()
    return world
