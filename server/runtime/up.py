"""`python -m server up`: the sale-day stack on one machine.

Embedded Redis and PostgreSQL (unless REDIS_URL / DATABASE_URL are given), migrations, N app
worker processes each on its own 127.0.0.1 port, and NGINX in front of them on --port, rendered
from nginx/boxoffice.conf.template into <data_dir>/nginx/ (server.runtime.stack). A worker (or
NGINX) that dies is restarted, with a growing pause if it keeps dying; Ctrl-C or SIGTERM stops
everything: NGINX first (no new requests), then the workers, then the embedded servers.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from pathlib import Path

import msgspec

from server.core.settings import ROLES, Settings, with_dev_secrets
from server.runtime import nginx
from server.runtime.embedded import start_missing
from server.runtime.prepare import DEMO_ID, banner, prepare
from server.runtime.processes import Child, StartError, stop_children, stop_requested, supervise
from server.runtime.stack import Stack


def public_base(settings: Settings, port: int, tls: bool) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def parse_layout(text: str) -> list[str]:
    """ "web:2,admission,relay" -> the roles of each worker process: ["web", "web", "admission",
    "relay"]. Every role must be run by some process, and some process must serve the web."""
    layout: list[str] = []
    for part in text.split(","):
        name, _, count = part.strip().partition(":")
        if name not in ROLES:
            raise ValueError(f"unknown role {name!r} (roles: {', '.join(ROLES)})")
        if count and not (count.isdigit() and 1 <= int(count) <= 64):
            raise ValueError(f"{part.strip()!r}: a count from 1 to 64")
        layout += [name] * int(count or 1)
    missing = set(ROLES) - set(layout)
    if missing:
        raise ValueError(f"no process runs {', '.join(sorted(missing))}")
    return layout


def up(
    settings: Settings,
    port: int | None = None,
    workers: int | None = None,
    demo: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    roles: str | None = None,
) -> int:
    try:
        layout = parse_layout(roles) if roles else []
    except ValueError as exc:
        print(f"boxoffice: --roles: {exc}", file=sys.stderr)
        return 2
    if (tls_cert is None) != (tls_key is None):
        print("boxoffice: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    binary = nginx.find_nginx()
    if binary is None:
        print("boxoffice: nginx not found (apt-get install nginx)", file=sys.stderr)
        return 2
    port = port or settings.port
    count = workers or os.cpu_count() or 1
    settings, filled = with_dev_secrets(settings)
    data_dir = Path(settings.data_dir).resolve()
    settings = msgspec.structs.replace(settings, data_dir=str(data_dir))
    embedded = None
    children: list[Child] = []
    stopping = stop_requested()
    try:
        settings, embedded = start_missing(settings)
        asyncio.run(prepare(settings, demo))
        base = public_base(settings, port, tls_cert is not None)
        # The workers keep public_url as configured: they check websocket Origins against it,
        # and a guessed URL (127.0.0.1) would refuse the same pages reached by another name.
        stack = Stack(settings, data_dir, binary, port, count, tls_cert, tls_key, layout)
        # Each process is started as a supervised child, so the one that dies comes back.
        for i, worker_port in enumerate(stack.worker_ports):
            start = functools.partial(stack.start_worker, i)
            what = stack.layout[i] or "all roles"
            children.append(Child(f"worker {i + 1} ({what}, port {worker_port})", start))
        for child in children:
            child.launch()
        stack.workers = [c.process for c in children if c.process is not None]
        stack.wait_workers()
        stack.write_config()
        front = Child("nginx", stack.start_nginx, signal.SIGQUIT)
        front.launch()
        children.insert(0, front)  # stopped first
        stack.front = front.process
        stack.wait_front()
        shown = msgspec.structs.replace(settings, workers=len(stack.layout), public_url=base)
        print(banner(shown, demo, filled), flush=True)
        print(
            f"  NGINX on port {port} (config {stack.conf}, logs {stack.prefix / 'logs'}) → app "
            "workers on " + ", ".join(str(p) for p in stack.web_ports),
            flush=True,
        )
        if demo:
            print(f"  open {base}/e/{DEMO_ID}\n", flush=True)
        supervise(children, stopping)
        return 0
    except (StartError, nginx.NginxError, ValueError) as exc:
        print(f"boxoffice: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping…", file=sys.stderr, flush=True)
        stop_children(children)
        if embedded is not None:
            embedded.stop()
