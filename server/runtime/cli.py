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
from server.core.errors import Conflict
from server.core.settings import ROLES, Settings, SettingsError, from_env, with_dev_secrets
from server.ops import accounts
from server.ops.accounts import ROLES as ROLES_OF_OPERATORS
from server.ops.accounts import Role
from server.runtime import listener
from server.runtime.app import create_app
from server.runtime.embedded import start_missing
from server.runtime.prepare import banner, migrate, prepare, rebuild_inventory
from server.runtime.processes import Child, start_worker, stop_children, stop_requested, supervise
from server.store import audit, db

NEEDS = "DATABASE_URL and REDIS_URL (or REDIS_CLUSTER_NODES or REDIS_SENTINELS)"


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
            print("worker stopped", file=sys.stderr, flush=True)
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


async def create_operator(settings: Settings, raw_email: str, role: Role) -> int:
    """Create an operator (the first owner, typically) and print what they need, once."""
    email = accounts.normalise_email(raw_email)
    if email is None:
        print(f"boxoffice: not one email address: {raw_email!r}", file=sys.stderr)
        return 2
    await migrate(settings)
    pool = await db.create_pool(settings.database_url, 2, settings.database_pooler)
    try:
        async with pool.acquire() as conn, conn.transaction():
            made = await accounts.create(conn, email, role, "cli")
            change = {email: (None, {"role": role})}
            await audit.record(conn, None, "cli", "operator_create", change)
    except Conflict as exc:
        print(f"boxoffice: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        await pool.close()
    print(
        f"operator {made.email} ({made.role}) created. Shown this once:\n"
        f"  temporary password: {made.password}\n"
        f"  TOTP secret:        {made.totp_secret}\n"
        f"  authenticator URI:  {made.otpauth_uri}\n"
        "Sign in at /admin; the console then asks for a new password and a new authenticator."
    )
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
    p_operator = sub.add_parser("operator", help="operator accounts (e.g. the first owner)")
    p_operator_sub = p_operator.add_subparsers(dest="operator_command", required=True)
    p_create = p_operator_sub.add_parser(
        "create", help="create an operator; prints the temporary password and TOTP secret once"
    )
    p_create.add_argument("email")
    p_create.add_argument("--role", choices=ROLES_OF_OPERATORS, required=True)
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
            print(f"boxoffice: rebuild-inventory needs {NEEDS}", file=sys.stderr)
            return 2
        restored = asyncio.run(rebuild_inventory(settings, args.event_id))
        print(f"rebuilt seat state of {args.event_id}; {restored} pending holds restored")
        return 0
    if args.command == "operator":
        if not settings.database_url:
            print("boxoffice: operator needs DATABASE_URL", file=sys.stderr)
            return 2
        return asyncio.run(create_operator(settings, args.email, args.role))
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
