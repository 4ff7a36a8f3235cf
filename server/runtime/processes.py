"""Child processes of a stack: app workers (`python -m server worker`), their start, readiness,
supervision with a growing restart pause, and an orderly stop."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from server.core.settings import PREFIX, Settings, to_env

log = logging.getLogger("boxoffice.processes")

MAX_BACKOFF_SECONDS = 30.0


class StartError(Exception):
    """A process of the stack could not start."""


def worker_env(settings: Settings, port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The environment of one app worker: these settings, one process on host:port."""
    one = msgspec.structs.replace(settings, host=host, port=port, workers=1)
    # to_env() names every setting; other BOXOFFICE_* variables (e.g. BOXOFFICE_REQUIRE_ALL of
    # the test suite) would make the worker refuse to start as unknown settings.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return {**inherited, **to_env(one)}


def start_worker(
    settings: Settings, port: int, *, shared: bool = False, host: str = "127.0.0.1"
) -> subprocess.Popen[bytes]:
    """`python -m server worker` on its own port, or `shared` with other workers through
    SO_REUSEPORT. A new session: Ctrl-C reaches the supervisor only, which then stops the
    children in order."""
    flags = [] if shared else ["--no-reuse-port"]
    return subprocess.Popen(
        [sys.executable, "-m", "server", "worker", *flags],
        env=worker_env(settings, port, host),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_port(
    host: str, port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait (bounded) until host:port accepts connections; StartError if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise StartError(f"process {process.pid} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise StartError(f"nothing answers on {host}:{port} after {timeout:.0f} s")
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


def stop_requested() -> Callable[[], bool]:
    """Catch SIGINT and SIGTERM from now on; the function returned says whether one came."""
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    return lambda: bool(caught)


def supervise(children: list[Child], stopping: Callable[[], bool]) -> None:
    """Restart children that die until `stopping()` says so."""
    while not stopping():
        now = time.monotonic()
        for child in children:
            child.check(now)
        time.sleep(0.25)


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
