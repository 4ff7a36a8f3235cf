"""Shared fixtures: one pair of real servers (embedded Redis and PostgreSQL) per test session,
data wiped between tests, and an app built by create_app() on top of them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core.settings import Settings
from server.runtime.app import create_app
from server.runtime.embedded import EmbeddedServers
from server.store import db
from server.store.redis_client import close_redis

from .helpers import ADMIN_TOKEN, SECRET, wipe_database


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
def base_settings(
    server_urls: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        redis_url=server_urls[0],
        database_url=server_urls[1],
        data_dir=str(tmp_path_factory.mktemp("data")),  # dev mail (.eml files) lands in here
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
    await close_redis(client)


@pytest.fixture
async def pg(server_urls: tuple[str, str]) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(server_urls[1], 4)
    await db.migrate(pool)
    await wipe_database(pool)
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
