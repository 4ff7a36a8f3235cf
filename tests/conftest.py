"""Shared fixtures: one pair of real servers (embedded Redis and PostgreSQL) per test session,
data wiped between tests, and an app built by create_app() on top of them; for the browser
tests, that app on a real TCP port, a real headless Chromium and an admin HTTP session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser
from redis.asyncio import Redis

from server.core.settings import Settings
from server.runtime.app import create_app
from server.runtime.embedded import EmbeddedServers
from server.store import db
from server.store.redis_client import close_redis

from .helpers import ADMIN, ADMIN_TOKEN, CHROMIUM, SECRET, launch, need, wipe_database
from .world import World, open_world


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


# ---- the browser tests: the app on a real port, real headless Chromium, an admin session ------


@pytest.fixture
async def base_url(settings: Settings, redis: Redis, pg: asyncpg.Pool) -> AsyncIterator[str]:
    """The app on a real TCP port, so the browser can reach it."""
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def chromium_path() -> str:
    need(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_path: str, base_url: str) -> AsyncIterator[Browser]:
    async for chromium in launch(chromium_path):
        yield chromium


@pytest.fixture
async def admin(base_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url, headers=ADMIN) as session:
        yield session


@pytest.fixture
async def world(
    client: TestClient[Any, Any], redis: Redis, pg: asyncpg.Pool
) -> AsyncIterator[World]:
    """A paused on-sale event with one fan waiting (tests/world.py)."""
    sessions: list[aiohttp.ClientSession] = []
    try:
        yield await open_world(client, redis, pg, sessions)
    finally:
        for session in sessions:
            await session.close()
