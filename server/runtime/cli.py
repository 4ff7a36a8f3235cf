"""Command line: `python -m server serve|worker|up|web|admission|relay|notifier|payments|migrate|…`.

`serve` starts the embedded Redis and PostgreSQL when REDIS_URL / DATABASE_URL are not given,
applies migrations, optionally creates the demo event, then runs one worker in this process or
N supervised worker processes sharing the port with SO_REUSEPORT. `up` puts NGINX in front
(server.runtime.up)."""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys

import uvloop

from server.core import logs
from server.core.settings import ROLES, Settings, SettingsError, from_env, with_dev_secrets
from server.runtime import listener
from server.runtime.app import create_app
from server.runtime.embedded import start_missing
from server.runtime.prepare import banner, migrate, prepare, rebuild_inventory
from server.runtime.processes import Child, start_worker, stop_children, stop_requested, supervise


def run_worker(settings: Settings, reuse_port: bool) -> None:
    logs.setup(settings.log_level, settings.log_format)
    listener.run(
        create_app(settings), settings.host, settings.port, reuse_port, uvloop.new_event_loop()
    )


def serve(settings: Settings, demo: bool) -> int:
    settings, filled = with_dev_secrets(settings)
    settings, embedded = start_missing(settings)
    try:
        asyncio.run(prepare(settings, demo))
        print(banner(settings, demo, filled), flush=True)
        if settings.workers == 1:
            run_worker(settings, reuse_port=False)
            return 0
        return _serve_shared(settings)
    finally:
        if embedded is not None:
            embedded.stop()


def _serve_shared(settings: Settings) -> int:
    """N supervised worker processes sharing settings.host:port (SO_REUSEPORT)."""
    start = functools.partial(
        start_worker, settings, settings.port, shared=True, host=settings.host
    )
    children = [Child(f"worker {i + 1}", start) for i in range(settings.workers)]
    stopping = stop_requested()
    try:
        for child in children:
            child.launch()
        supervise(children, stopping)
    finally:
        stop_children(children)
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
    p_up = sub.add_parser("up", help="sale day: NGINX in front of N workers (server/runtime/up.py)")
    p_up.add_argument("--port", type=int, help="NGINX port (default BOXOFFICE_PORT)")
    p_up.add_argument("--workers", type=int, help="app processes (default: one per CPU)")
    p_up.add_argument("--demo", action="store_true", help="create the demo event")
    p_up.add_argument(
        "--roles",
        help="processes by role, e.g. web:2,admission,relay,notifier,payments "
        "(default: --workers processes each running every role)",
    )
    p_up.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (TLS 1.3)")
    p_up.add_argument("--tls-key", help="PEM private key of --tls-cert")
    for role in ROLES:
        p_role = sub.add_parser(role, help=f"one process running only the {role} role")
        p_role.add_argument("--host")
        p_role.add_argument("--port", type=int)
    sub.add_parser("migrate", help="apply database migrations")
    p_rebuild = sub.add_parser(
        "rebuild-inventory", help="recompute an event's live seat state in Redis from PostgreSQL"
    )
    p_rebuild.add_argument("event_id")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            settings = from_env(host=args.host, port=args.port, workers=args.workers)
        elif args.command in ROLES:
            settings = from_env(host=args.host, port=args.port, roles=args.command)
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
    if args.command in ROLES:
        run_worker(settings, reuse_port=False)
        return 0
    if args.command == "up":
        from server.runtime.up import up  # NGINX only where it is asked for

        return up(
            settings, args.port, args.workers, args.demo, args.tls_cert, args.tls_key, args.roles
        )
    if args.command == "rebuild-inventory":
        if settings.embedded:
            print("boxoffice: rebuild-inventory needs DATABASE_URL and REDIS_URL", file=sys.stderr)
            return 2
        restored = asyncio.run(rebuild_inventory(settings, args.event_id))
        print(f"rebuilt seat state of {args.event_id}; {restored} pending holds restored")
        return 0
    if args.command == "migrate":
        if not settings.migrate_url:
            print("boxoffice: migrate needs DATABASE_MIGRATE_URL or DATABASE_URL", file=sys.stderr)
            return 2
        try:
            applied = asyncio.run(migrate(settings))
        except SettingsError as exc:
            print(f"boxoffice: {exc}", file=sys.stderr)
            return 2
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
