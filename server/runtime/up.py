"""`python -m server up`: the sale-day stack on one machine.

Embedded Redis and PostgreSQL (unless REDIS_URL / DATABASE_URL are given), migrations, N app
worker processes each on its own 127.0.0.1 port, and NGINX in front of them on --port, rendered
from nginx/boxoffice.conf.template into <data_dir>/nginx/. A worker (or NGINX) that dies is
restarted, with a growing pause if it keeps dying; Ctrl-C or SIGTERM stops everything: NGINX
first (no new requests), then the workers, then the embedded servers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from server.core.settings import PREFIX, Settings, to_env, with_dev_secrets
from server.runtime import nginx
from server.runtime.embedded import free_port, start_missing

log = logging.getLogger("boxoffice.up")

WORKER_START_SECONDS = 30.0
NGINX_START_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0


class UpError(Exception):
    """The stack could not start."""


def with_local_proxy(trusted_proxies: str) -> str:
    """NGINX proxies to the workers from 127.0.0.1: its X-Forwarded-For names the client."""
    entries = [e.strip() for e in trusted_proxies.split(",") if e.strip()]
    return ",".join(entries if LOCAL_PROXY in entries else [*entries, LOCAL_PROXY])


LOCAL_PROXY = "127.0.0.1"


def worker_env(settings: Settings, port: int) -> dict[str, str]:
    """The environment of one app worker: these settings, one process on 127.0.0.1:port."""
    one = msgspec.structs.replace(
        settings,
        host="127.0.0.1",
        port=port,
        workers=1,
        trusted_proxies=with_local_proxy(settings.trusted_proxies),
    )
    # to_env() names every setting; other BOXOFFICE_* variables (e.g. BOXOFFICE_REQUIRE_ALL of
    # the test suite) would make the worker refuse to start as unknown settings.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return {**inherited, **to_env(one)}


def start_worker(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    """`python -m server worker` on its own port. A new session: Ctrl-C reaches the supervisor
    only, which then stops the children in order."""
    return subprocess.Popen(
        [sys.executable, "-m", "server", "worker", "--no-reuse-port"],
        env=worker_env(settings, port),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_nginx(binary: str, prefix: Path, conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        nginx.command(binary, prefix, conf, "-g", "daemon off;"),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait (bounded) until host:port accepts connections; UpError if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise UpError(f"process {process.pid} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise UpError(f"nothing answers on {host}:{port} after {timeout:.0f} s")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal one process we started, wait (bounded), kill it if it lingers."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


@dataclass
class Child:
    """A supervised process: restarted when it dies, after a pause that grows while it keeps
    dying soon after starting (a crash loop must not spin the CPU)."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None
    restarts: int = 0

    def launch(self) -> None:
        self.process = self.start()
        self.started_at = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        if self.process is None:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                log.warning("restarting %s", self.name)
                self.launch()
            return
        code = self.process.poll()
        if code is None:
            if now - self.started_at > 60:
                self.backoff = 0.0
            return
        quick = now - self.started_at < 10
        self.backoff = min(MAX_BACKOFF_SECONDS, max(0.5, self.backoff * 2)) if quick else 0.5
        log.warning(
            "%s (pid %s) exited with %s; restart in %.1f s",
            self.name,
            self.process.pid,
            code,
            self.backoff,
        )
        self.restart_at = now + self.backoff


def public_base(settings: Settings, port: int, tls: bool) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def nginx_params(
    settings: Settings,
    port: int,
    worker_ports: list[int],
    prefix: Path,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> nginx.Params:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 65536
    user = nginx.worker_user()
    static_root = nginx.STATIC_ROOT.resolve()
    if user is not None and not (_reachable(prefix) and _reachable(static_root)):
        # The workers' account could not read the pages or write the cache: keep them as root
        # (acceptable in a container; on a real server put data_dir and the code elsewhere).
        log.warning("nginx workers run as root: %s or %s is not reachable", prefix, static_root)
        user = "root"
    return nginx.Params(
        listen_port=port,
        listen_host=settings.host,
        upstreams=tuple(f"127.0.0.1:{p}" for p in worker_ports),
        prefix=str(prefix),
        static_root=str(static_root),
        tls_cert=str(Path(tls_cert).resolve()) if tls_cert else None,
        tls_key=str(Path(tls_key).resolve()) if tls_key else None,
        max_files=min(limit, 1_048_576),
        user=user,
    )


def _reachable(path: Path) -> bool:
    """Whether any account may traverse every folder down to path (o+x on each ancestor)."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


def up(
    settings: Settings,
    port: int | None = None,
    workers: int | None = None,
    demo: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> int:
    from server.runtime.cli import DEMO_ID, banner, prepare

    if (tls_cert is None) != (tls_key is None):
        print("boxoffice: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    binary = nginx.find_nginx()
    if binary is None:
        print("boxoffice: nginx not found (apt-get install nginx)", file=sys.stderr)
        return 2
    port = port or settings.port
    count = workers or os.cpu_count() or 1
    settings, generated = with_dev_secrets(settings)
    data_dir = Path(settings.data_dir).resolve()
    settings = msgspec.structs.replace(settings, data_dir=str(data_dir))
    embedded = None
    children: list[Child] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        settings, embedded = start_missing(settings)
        asyncio.run(prepare(settings, demo))
        base = public_base(settings, port, tls_cert is not None)
        settings = msgspec.structs.replace(settings, public_url=settings.public_url or base)

        worker_ports = [free_port() for _ in range(count)]
        for i, worker_port in enumerate(worker_ports):
            child = Child(
                f"worker {i + 1} (port {worker_port})",
                functools.partial(start_worker, settings, worker_port),
            )
            child.launch()
            children.append(child)
        for child, worker_port in zip(children, worker_ports, strict=True):
            wait_port("127.0.0.1", worker_port, WORKER_START_SECONDS, child.process)

        prefix = data_dir / "nginx"
        params = nginx_params(settings, port, worker_ports, prefix, tls_cert, tls_key)
        conf = nginx.write_config(prefix, params)
        nginx.check_config(binary, prefix, conf)
        # SIGQUIT: graceful; worker_shutdown_timeout in the config bounds it.
        front = Child("nginx", functools.partial(start_nginx, binary, prefix, conf), signal.SIGQUIT)
        front.launch()
        children.insert(0, front)
        local = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        wait_port(local.strip("[]"), port, NGINX_START_SECONDS, front.process)

        shown = msgspec.structs.replace(settings, workers=count)
        print(banner(shown, demo, generated), flush=True)
        print(
            f"  NGINX on port {port} (config {conf}, logs {prefix / 'logs'}) → app workers on "
            + ", ".join(str(p) for p in worker_ports),
            flush=True,
        )
        if demo:
            print(f"  open {base}/e/{DEMO_ID}\n", flush=True)
        while not stopping:
            now = time.monotonic()
            for child in children:
                child.check(now)
            time.sleep(0.25)
        return 0
    except (UpError, nginx.NginxError, ValueError) as exc:
        print(f"boxoffice: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping…", file=sys.stderr, flush=True)
        stop_children(children)
        if embedded is not None:
            embedded.stop()


def stop_children(children: list[Child]) -> None:
    """NGINX (first in the list) before the workers, so no new request reaches a stopping
    worker; the workers all at once, each given aiohttp's shutdown time."""
    for child in children:
        if child.process is not None and child.stop_signal == signal.SIGQUIT:
            stop_process(child.process, child.stop_signal, 12)
    workers = [c.process for c in children if c.process is not None and c.process.poll() is None]
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        stop_process(process, signal.SIGTERM, 10)
