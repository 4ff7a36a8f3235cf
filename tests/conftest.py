"""Shared fixtures: one pair of real servers (embedded Redis and PostgreSQL) per test session,
data wiped between tests, and an app built by create_app() on top of them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core.settings import Settings
from server.runtime.app import create_app
from server.runtime.embedded import EmbeddedServers
from server.store import db

ADMIN_TOKEN = "test-admin-token-" + "x" * 32
SECRET = "test-secret-" + "y" * 32
REQUIRE_ALL = os.environ.get("BOXOFFICE_REQUIRE_ALL") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a binary is absent on a laptop; fail when BOXOFFICE_REQUIRE_ALL=1 (CI)."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (BOXOFFICE_REQUIRE_ALL=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    redis_url = os.environ.get("REDIS_URL", "")
    database_url = os.environ.get("DATABASE_URL", "")
    folder = Path(tempfile.mkdtemp(prefix="bo-test-", dir="/tmp"))
    servers = EmbeddedServers(folder)
    started = servers.start(need_redis=not redis_url, need_postgres=not database_url)
    yield redis_url or started[0], database_url or started[1]
    servers.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def base_settings(server_urls: tuple[str, str]) -> Settings:
    return Settings(
        redis_url=server_urls[0],
        database_url=server_urls[1],
        secret=SECRET,
        admin_token=ADMIN_TOKEN,
        tick_ms=50,
        broadcast_ms=100,
        log_format="text",
        log_level="warning",
    )


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return base_settings


@pytest.fixture
async def redis(server_urls: tuple[str, str]) -> AsyncIterator[Redis]:
    client = Redis.from_url(server_urls[0])
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def pg(server_urls: tuple[str, str]) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(server_urls[1], 4)
    await db.migrate(pool)
    await pool.execute("TRUNCATE events, outbox, stripe_events CASCADE")
    yield pool
    await pool.close()


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, redis: Redis, pg: asyncpg.Pool
) -> TestClient[Any, Any]:
    result: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    return result


@pytest.fixture
async def fans(
    aiohttp_client: Any, settings: Settings, redis: Redis, pg: asyncpg.Pool
) -> TestClient[Any, Any]:
    """A client that keeps no cookies: each request says which visitor it is (see visitor())."""
    result: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings), cookie_jar=DummyCookieJar()
    )
    return result


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def event_body(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "name": "Spring Tour",
        "venue": "Arena",
        "starts_at": (now + timedelta(days=30)).isoformat(),
        "sale_starts_at": (now - timedelta(seconds=1)).isoformat(),
        "currency": "EUR",
        "sections": [
            {"id": "A", "name": "Floor", "price": 5000, "rows": 5, "seats_per_row": 10},
            {"id": "GA", "name": "Standing", "price": 3500, "capacity": 100},
        ],
        "rate_per_min": 600,
        "max_active": 1000,
    }
    body.update(overrides)
    return body


async def create_event(client: TestClient[Any, Any], **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/admin/events", json=event_body(**overrides), headers=ADMIN)
    assert response.status == 201, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def decode(data: bytes | str, kind: type[Any]) -> Any:
    return msgspec.json.decode(data, type=kind)


def visitor(visitor_id: str | None = None) -> dict[str, str]:
    """Request headers that make a client act as one distinct visitor (a signed cookie)."""
    from server.core.tokens import Signer, new_id

    return {"Cookie": f"bo_visitor={Signer(SECRET).visitor_cookie(visitor_id or new_id())}"}


def solve(challenge: dict[str, Any]) -> str:
    """Solve a bot challenge the way a scripted client does: the altcha library, in Python."""
    import altcha

    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed)
    assert solution is not None, challenge
    return str(altcha.Payload(parsed, solution).to_base64())


async def join_body(
    session: Any, event_id: str, headers: dict[str, str] | None = None, base: str = ""
) -> dict[str, str]:
    """The body of a join that carries a freshly solved challenge. `session` is a TestClient
    (paths) or an aiohttp.ClientSession (then `base` is the server's URL)."""
    async with session.get(f"{base}/api/events/{event_id}/challenge", headers=headers) as r:
        assert r.status == 200, await r.text()
        challenge = await r.json()
    return {"altcha": solve(challenge)}


async def join(
    session: Any, event_id: str, headers: dict[str, str] | None = None, base: str = ""
) -> Any:
    """POST …/queue with a solved challenge, as the waiting page does; the response."""
    body = await join_body(session, event_id, headers, base)
    return await session.post(f"{base}/api/events/{event_id}/queue", json=body, headers=headers)


async def admitted(
    client: TestClient[Any, Any], event_id: str, headers: dict[str, str], tries: int = 400
) -> tuple[str, str]:
    """Join as this visitor and wait (bounded) until admitted: (queue_id, access_token)."""
    import asyncio

    joined = await (await join(client, event_id, headers)).json()
    queue_id = joined["queue_id"]
    for _ in range(tries):
        status = await (await client.get(f"/api/queue/{queue_id}", headers=headers)).json()
        if status["state"] == "admitted":
            return queue_id, status["access_token"]
        await asyncio.sleep(0.025)
    raise AssertionError(f"not admitted: {status}")


def bearer(headers: dict[str, str], token: str) -> dict[str, str]:
    return {**headers, "Authorization": f"Bearer {token}"}
