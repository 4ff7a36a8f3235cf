"""Command line: `python -m server serve|worker|migrate|embedded`.

`serve` starts the embedded Redis and PostgreSQL when REDIS_URL / DATABASE_URL are not given,
applies migrations, optionally creates the demo event, then runs N worker processes that share
the port with SO_REUSEPORT (or one in-process worker)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import uvloop
from aiohttp import web

from server.booking.inventory import Inventory
from server.core import logs
from server.core.keys import EventKeys
from server.core.messages import EventCreate, SectionIn
from server.core.settings import Settings, SettingsError, from_env, to_env, with_dev_secrets
from server.core.tokens import Signer
from server.runtime.app import create_app
from server.runtime.embedded import start_missing
from server.store import db
from server.store.redis_client import make_redis
from server.waiting.line import Scripts
from server.waiting.room import EventCache, Room

log = logging.getLogger("boxoffice")

DEMO_ID = "demo"


def demo_event(now: datetime) -> EventCreate:
    return EventCreate(
        id=DEMO_ID,
        name="Boxoffice Demo Night",
        venue="Loopback Arena",
        starts_at=now + timedelta(days=30),
        sale_starts_at=now + timedelta(minutes=1),
        prequeue_opens_at=now,
        currency="EUR",
        sections=[
            SectionIn(id="A", name="Floor", price=5000, rows=10, seats_per_row=20),
            SectionIn(id="GA", name="Standing", price=3500, capacity=500),
        ],
        rate_per_min=60,
        max_active=50,
        # The waiting page does not solve bot challenges yet; switch to "adaptive" when it does.
        challenge="off",
    )


async def prepare(settings: Settings, demo: bool) -> None:
    """Migrations and the demo event, once, before any worker starts."""
    from server.ops import catalog

    pool = await db.create_pool(settings.database_url, 2)
    redis = make_redis(settings)
    try:
        await db.migrate(pool)
        if demo:
            await pool.execute("DELETE FROM events WHERE id = $1", DEMO_ID)
            room = Room(
                settings, redis, Scripts(redis), pool, EventCache(pool), Signer(settings.secret)
            )
            await redis.delete(*EventKeys(DEMO_ID).all())
            await catalog.create(room, demo_event(datetime.now(UTC)))
    finally:
        await pool.close()
        await redis.aclose()


async def rebuild_inventory(settings: Settings, event_id: str) -> int:
    pool = await db.create_pool(settings.database_url, 2)
    redis = make_redis(settings)
    try:
        if await db.get_event(pool, event_id) is None:
            raise SystemExit(f"boxoffice: no event {event_id!r}")
        return await Inventory(redis).rebuild(EventKeys(event_id), pool, force=True)
    finally:
        await pool.close()
        await redis.aclose()


def run_worker(settings: Settings, reuse_port: bool) -> None:
    logs.setup(settings.log_level, settings.log_format)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        reuse_port=reuse_port,
        loop=uvloop.new_event_loop(),
        print=None,
        access_log=None,
        shutdown_timeout=5,
        # A crowd's burst of handshakes overflows the default backlog of 128; NGINX then times
        # out connecting and marks the process down.
        backlog=4096,
    )


def banner(settings: Settings, demo: bool, generated: bool) -> str:
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        f"Boxoffice is running at {base}/  ({settings.workers} worker(s))",
    ]
    if demo:
        lines.append(f"  fan page (demo event, sale opens in 1 minute): {base}/e/{DEMO_ID}")
    lines += [
        f"  ops console: {base}/admin   admin API: {base}/api/admin/events",
        f"  admin token: {settings.admin_token}"
        + ("   (generated for development; set BOXOFFICE_ADMIN_TOKEN)" if generated else ""),
        f"  e.g. curl -H 'Authorization: Bearer {settings.admin_token}' "
        f"{base}/api/admin/events/{DEMO_ID if demo else '<id>'}/stats",
        f"  metrics: {base}/metrics   health: {base}/readyz   API: {base}/api/openapi.json",
        "",
    ]
    return "\n".join(lines)


def serve(settings: Settings, demo: bool) -> int:
    settings, generated = with_dev_secrets(settings)
    settings, embedded = start_missing(settings)
    try:
        asyncio.run(prepare(settings, demo))
        print(banner(settings, demo, generated), flush=True)
        if settings.workers == 1:
            run_worker(settings, reuse_port=False)
            return 0
        return supervise(settings)
    finally:
        if embedded is not None:
            embedded.stop()


def supervise(settings: Settings) -> int:
    env = {**os.environ, **to_env(settings)}
    children = [
        subprocess.Popen([sys.executable, "-m", "server", "worker"], env=env)
        for _ in range(settings.workers)
    ]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for i, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    log.warning("worker %s exited with %s; restarting", child.pid, child.returncode)
                    children[i] = subprocess.Popen(
                        [sys.executable, "-m", "server", "worker"], env=env
                    )
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the service (embedded servers if no URLs)")
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    p_serve.add_argument("--demo", action="store_true", help="create the demo event")
    p_worker = sub.add_parser("worker", help="one worker process (settings from the environment)")
    p_worker.add_argument(
        "--no-reuse-port", action="store_true", help="own the port alone (behind NGINX)"
    )
    p_up = sub.add_parser("up", help="sale day: NGINX in front of N workers (server/up.py)")
    p_up.add_argument("--port", type=int, help="NGINX port (default BOXOFFICE_PORT)")
    p_up.add_argument("--workers", type=int, help="app processes (default: one per CPU)")
    p_up.add_argument("--demo", action="store_true", help="create the demo event")
    p_up.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (TLS 1.3)")
    p_up.add_argument("--tls-key", help="PEM private key of --tls-cert")
    sub.add_parser("migrate", help="apply database migrations")
    p_rebuild = sub.add_parser(
        "rebuild-inventory", help="recompute an event's live seat state in Redis from PostgreSQL"
    )
    p_rebuild.add_argument("event_id")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            settings = from_env(host=args.host, port=args.port, workers=args.workers)
        else:
            settings = from_env()
    except SettingsError as exc:
        print(f"boxoffice: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log_level, settings.log_format)
    if args.command == "serve":
        return serve(settings, args.demo)
    if args.command == "worker":
        run_worker(settings, reuse_port=not args.no_reuse_port)
        return 0
    if args.command == "up":
        from server.runtime.up import up

        return up(settings, args.port, args.workers, args.demo, args.tls_cert, args.tls_key)
    if args.command == "rebuild-inventory":
        if settings.embedded:
            print("boxoffice: rebuild-inventory needs DATABASE_URL and REDIS_URL", file=sys.stderr)
            return 2
        restored = asyncio.run(rebuild_inventory(settings, args.event_id))
        print(f"rebuilt seat state of {args.event_id}; {restored} pending holds restored")
        return 0
    if args.command == "migrate":
        if settings.embedded:
            print("boxoffice: migrate needs DATABASE_URL and REDIS_URL", file=sys.stderr)
            return 2
        asyncio.run(prepare(settings, demo=False))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
