"""The process stack on one machine: N app workers on 127.0.0.1 ports and, optionally, NGINX in
front of them, rendered from nginx/boxoffice.conf.template. `up` runs it under supervision; the
NGINX and fault tests and the benchmarks start the same stack."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from server.core.settings import Settings
from server.runtime import nginx
from server.runtime.embedded import free_port
from server.runtime.processes import start_worker, stop_process, wait_port

WORKER_START_SECONDS = 30.0
NGINX_START_SECONDS = 10.0


def start_nginx(binary: str, prefix: Path, conf: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        nginx.command(binary, prefix, conf, "-g", "daemon off;"),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def nginx_params(
    settings: Settings,
    port: int,
    worker_ports: list[int],
    prefix: Path,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> nginx.Params:
    import logging
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 65536
    user = nginx.worker_user()
    static_root = nginx.STATIC_ROOT.resolve()
    if user is not None and not (_reachable(prefix) and _reachable(static_root)):
        # The workers' account could not read the pages or write the cache: keep them as root
        # (acceptable in a container; on a real server put data_dir and the code elsewhere).
        logging.getLogger("boxoffice.stack").warning(
            "nginx workers run as root: %s or %s is not reachable", prefix, static_root
        )
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


LOCAL_PROXY = "127.0.0.1"


def with_local_proxy(trusted_proxies: str) -> str:
    """NGINX proxies to the workers from 127.0.0.1: its X-Forwarded-For names the client."""
    entries = [e.strip() for e in trusted_proxies.split(",") if e.strip()]
    return ",".join(entries if LOCAL_PROXY in entries else [*entries, LOCAL_PROXY])


def _reachable(path: Path) -> bool:
    """Whether any account may traverse every folder down to path (o+x on each ancestor)."""
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents] if p.exists())


@dataclass
class Stack:
    """NGINX (binary given) on `port` in front of `workers` app processes, or the workers alone."""

    settings: Settings
    folder: Path  # NGINX's prefix is folder/nginx
    binary: str | None = None
    port: int = field(default_factory=free_port)
    workers_wanted: int = 2
    tls_cert: str | None = None
    tls_key: str | None = None
    layout: list[str] = field(default_factory=list)  # each worker's roles ("" = the settings')
    worker_ports: list[int] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    front: subprocess.Popen[bytes] | None = None
    conf: Path | None = None
    params: nginx.Params | None = None  # what the NGINX configuration was rendered from

    def __post_init__(self) -> None:
        if not self.layout:
            self.layout = [""] * self.workers_wanted
        if not self.worker_ports:
            self.worker_ports = [free_port() for _ in self.layout]

    def roles_of(self, index: int) -> Settings:
        """The settings of worker `index`: its own roles where the layout gives them; behind
        NGINX, the local proxy trusted to name the client."""
        settings = self.settings
        if self.layout[index]:
            settings = msgspec.structs.replace(settings, roles=self.layout[index])
        if self.binary is not None:
            proxies = with_local_proxy(settings.trusted_proxies)
            settings = msgspec.structs.replace(settings, trusted_proxies=proxies)
        return settings

    @property
    def web_ports(self) -> list[int]:
        """The workers NGINX sends requests to: those with the web role."""
        return [
            port for i, port in enumerate(self.worker_ports) if "web" in self.roles_of(i).role_set
        ]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def prefix(self) -> Path:
        return self.folder / "nginx"

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        return start_worker(self.roles_of(index), self.worker_ports[index])

    def start_workers(self) -> None:
        self.workers = [self.start_worker(i) for i in range(len(self.worker_ports))]
        self.wait_workers()

    def wait_workers(self) -> None:
        for process, port in zip(self.workers, self.worker_ports, strict=True):
            wait_port("127.0.0.1", port, WORKER_START_SECONDS, process)

    def write_config(self) -> Path:
        assert self.binary is not None
        self.params = nginx_params(
            self.settings, self.port, self.web_ports, self.prefix, self.tls_cert, self.tls_key
        )
        self.conf = nginx.write_config(self.prefix, self.params)
        nginx.check_config(self.binary, self.prefix, self.conf)
        return self.conf

    def start_nginx(self) -> subprocess.Popen[bytes]:
        assert self.binary is not None and self.conf is not None
        return start_nginx(self.binary, self.prefix, self.conf)

    def start_front(self) -> None:
        self.write_config()
        self.front = self.start_nginx()
        self.wait_front()

    def wait_front(self) -> None:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host
        wait_port(host.strip("[]"), self.port, NGINX_START_SECONDS, self.front)

    def start(self) -> None:
        self.start_workers()
        if self.binary is not None:
            self.start_front()

    def kill_workers(self) -> None:
        for process in self.workers:
            stop_process(process, signal.SIGKILL, 5)

    def stop(self) -> None:
        """NGINX first (SIGQUIT: graceful, bounded by worker_shutdown_timeout), so no new
        request reaches a stopping worker; then the workers all at once."""
        if self.front is not None:
            stop_process(self.front, signal.SIGQUIT, 12)
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.workers:
            stop_process(process, signal.SIGTERM, 10)
