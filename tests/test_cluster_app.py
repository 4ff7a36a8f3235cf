"""The whole service on a real Redis Cluster (3 primaries + 3 replicas, valkey-server): the app
built by create_app with REDIS_CLUSTER_NODES runs a fan's journey — join, websocket, admission,
hold, checkout, pay, relay — for events on three different shards, and keeps selling through
a primary's failover (SIGKILL; its replica takes over after cluster-node-timeout)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import DummyCookieJar
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from server.core.keys import EventKeys
from server.core.settings import Settings
from server.runtime.app import create_app
from server.runtime.redis_local import LocalCluster, client
from server.store.redis_client import REDIS, PackedConnection

from .helpers import ADMIN, Client, bearer, call, create_event, eventually, visitor

pytestmark = pytest.mark.cluster

SEATS = [f"A-{row}-{n}" for row in range(1, 6) for n in range(1, 11)]  # event_body's section A


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    cluster = LocalCluster(3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def rc(local: LocalCluster) -> AsyncIterator[RedisCluster]:
    c = RedisCluster.from_url(f"redis://{local.startup_nodes.split(',')[0]}")
    await c.initialize()
    await c.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield c
    await c.aclose()


@pytest.fixture
async def fans(
    aiohttp_client: Any, base_settings: Settings, local: LocalCluster, rc: RedisCluster, pg: Any
) -> Client:
    """The app on the cluster (REDIS_URL not used); each request names its visitor."""
    settings = msgspec.structs.replace(
        base_settings, redis_url="", redis_cluster_nodes=local.startup_nodes
    )
    result: Client = await aiohttp_client(create_app(settings), cookie_jar=DummyCookieJar())
    return result


async def owner_port(rc: RedisCluster, key: str) -> int:
    """The primary serving `key`, found with CLUSTER KEYSLOT and the slot map."""
    slot = int(await rc.cluster_keyslot(key))
    node = rc.nodes_manager.get_node_from_slot(slot)
    return int(node.port)


async def events_on(rc: RedisCluster, ports: list[int], prefix: str) -> list[str]:
    """One event id per primary port, in that order."""
    found: dict[int, str] = {}
    for i in range(2000):
        event_id = f"{prefix}-{i}"
        port = await owner_port(rc, EventKeys(event_id).cfg)
        if port in ports and port not in found:
            found[port] = event_id
        if len(found) == len(ports):
            return [found[p] for p in ports]
    raise AssertionError("no event ids for every primary")


async def shard_subscribers(port: int, channel: str) -> int:
    node = Redis(host="127.0.0.1", port=port)
    try:
        reply = await node.pubsub_shardnumsub(channel)
        return int(reply[0][1])
    finally:
        await node.aclose()


async def journey(fans: Client, rc: RedisCluster, event_id: str) -> str:
    """One fan of a (paused: rate 0) event from joining to a paid order the relay has applied;
    the order id."""
    k = EventKeys(event_id)
    port = await owner_port(rc, k.cfg)
    headers = visitor()
    status, joined = await call(fans, "POST", f"/api/events/{event_id}/queue", headers)
    assert status == 200 and joined["state"] == "waiting", joined
    ws = await fans.ws_connect(f"/api/queue/{joined['queue_id']}/ws", headers=headers)
    try:
        first = await ws.receive_json(timeout=10)
        assert (first["type"], first["position"]) == ("status", 1)

        # the app listens on the event's sharded channel, on the primary that owns it
        async def subscribed() -> bool:
            return await shard_subscribers(port, k.channel) >= 1

        await eventually(subscribed, f"SSUBSCRIBE {k.channel} on {port}")
        patched = await call(
            fans, "PATCH", f"/api/admin/events/{event_id}", ADMIN, {"rate_per_min": 600}
        )
        assert patched[0] == 200, patched
        while (msg := await ws.receive_json(timeout=10))["type"] != "admitted":
            pass
        fan = bearer(headers, msg["access_token"])
        status, held = await call(
            fans, "POST", f"/api/events/{event_id}/holds", fan, {"seats": ["A-1-1", "A-1-2"]}
        )
        assert status == 201, held
        body = {"email": f"fan-{uuid.uuid4().hex[:12]}@example.com"}  # one buyer each (limit)
        status, order = await call(
            fans, "POST", f"/api/holds/{held['hold_id']}/checkout", fan, body
        )
        assert status == 201, order
        status, paid = await call(
            fans, "POST", f"/api/orders/{order['order_id']}/pay", fan, {"card": "4242424242424242"}
        )
        assert status == 200 and paid["status"] == "paid", paid
        # the relay's confirmation comes back over the event's sharded channel
        while (msg := await ws.receive_json(timeout=10))["type"] != "confirmed":
            pass
        assert msg["order_id"] == order["order_id"]
    finally:
        await ws.close()
    return str(order["order_id"])


async def test_journey_on_three_shards(fans: Client, rc: RedisCluster, pg: asyncpg.Pool) -> None:
    primaries = sorted({int(n.port) for n in rc.get_primaries()})
    assert len(primaries) == 3
    events = await events_on(rc, primaries, "tour")
    for event_id in events:
        await create_event(fans, id=event_id, rate_per_min=0, challenge="off")
    orders = await asyncio.gather(*(journey(fans, rc, e) for e in events))
    for event_id, order_id, port in zip(events, orders, primaries, strict=True):
        k = EventKeys(event_id)
        sold = await pg.fetch(
            "SELECT seat_id, order_id FROM sold_seats WHERE event_id = $1", event_id
        )
        assert sorted((r["seat_id"], r["order_id"]) for r in sold) == [
            ("A-1-1", order_id),
            ("A-1-2", order_id),
        ]

        async def applied(k: EventKeys = k, order_id: str = order_id) -> bool:
            return bool(await rc.sismember(k.sold_orders, order_id))

        await eventually(applied, f"relay applied {order_id}")
        assert await rc.hmget(k.seats, ["A-1-1", "A-1-2", "A-1-3"]) == [b"sold", b"sold", None]
        # the event's keys live on its primary (and its replica), nowhere else among primaries
        slot = int(await rc.cluster_keyslot(k.cfg))
        for p in primaries:
            here = int(client(p).cluster("countkeysinslot", slot))
            assert (here > 0) == (p == port), (event_id, p, here)
    # no pattern subscriptions anywhere: per-event channels are sharded
    for p in primaries:
        assert client(p).pubsub_numpat() == 0
    unpublished = await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert unpublished == 0
    # every shard's connections were packed by hiredis, as on one Redis
    app_redis = fans.app[REDIS]
    assert isinstance(app_redis, RedisCluster)
    assert {node.connection_class for node in app_redis.get_nodes()} == {PackedConnection}


async def buyer(
    fans: Client, event_id: str, deadline: float, paid: list[tuple[float, str]]
) -> None:
    """An admitted fan buying two random seats, retrying through refusals and the failover's
    503s, until it has bought once or the deadline passes."""
    headers = visitor()
    fan: dict[str, str] | None = None
    rng = random.Random()
    while time.monotonic() < deadline:
        if fan is None:
            status, joined = await call(fans, "POST", f"/api/events/{event_id}/queue", headers)
            if status == 200 and joined.get("access_token"):
                fan = bearer(headers, joined["access_token"])
            elif status == 200:
                s, st = await call(fans, "GET", f"/api/queue/{joined['queue_id']}", headers)
                if s == 200 and st.get("access_token"):
                    fan = bearer(headers, st["access_token"])
            if fan is None:
                await asyncio.sleep(0.1)
                continue
        seats = rng.sample(SEATS, 2)
        status, held = await call(
            fans, "POST", f"/api/events/{event_id}/holds", fan, {"seats": seats}
        )
        assert status in (201, 409, 429, 503), (status, held)
        if status != 201:
            await asyncio.sleep(0.05)
            continue
        body = {"email": f"fan-{uuid.uuid4().hex[:12]}@example.com"}  # one buyer each (limit)
        status, order = await call(
            fans, "POST", f"/api/holds/{held['hold_id']}/checkout", fan, body
        )
        assert status in (201, 409, 503), (status, order)
        if status != 201:
            continue
        card = {"card": "4242424242424242"}
        for _ in range(50):
            status, result = await call(
                fans, "POST", f"/api/orders/{order['order_id']}/pay", fan, card
            )
            assert status in (200, 409, 503), (status, result)
            if status != 503:
                break
            await asyncio.sleep(0.2)
        if status == 200 and result["status"] == "paid":
            paid.append((time.monotonic(), str(order["order_id"])))
            return


async def test_failover_mid_sale(
    fans: Client, rc: RedisCluster, pg: asyncpg.Pool, local: LocalCluster
) -> None:
    victim = sorted({int(n.port) for n in rc.get_primaries()})[0]
    sale = (await events_on(rc, [victim], "sale"))[0]
    waiting = (await events_on(rc, [victim], "line"))[0]
    await create_event(fans, id=sale, rate_per_min=60000, challenge="off")
    await create_event(fans, id=waiting, rate_per_min=0, challenge="off")

    # fans waiting in a line that lives on the primary about to die
    places = {}
    for _ in range(20):
        headers = visitor()
        status, joined = await call(fans, "POST", f"/api/events/{waiting}/queue", headers)
        assert status == 200 and joined["state"] == "waiting", joined
        places[joined["queue_id"]] = (headers, joined["ticket"])
    # Replication is asynchronous: WAIT makes the primary confirm its replica has every write so
    # far. What is guaranteed through a failover is exactly what a replica acknowledged.
    assert client(victim).wait(1, 5000) == 1
    replica = local.replica_of(victim)

    paid: list[tuple[float, str]] = []
    deadline = time.monotonic() + 60
    buyers = [asyncio.create_task(buyer(fans, sale, deadline, paid)) for _ in range(16)]

    async def some_paid() -> bool:
        return len(paid) >= 4

    await eventually(some_paid, "four orders paid before the kill", 30)
    local.kill(victim)  # SIGKILL mid-sale
    killed_at = time.monotonic()
    await asyncio.to_thread(local.wait_failover, replica)
    promoted_at = time.monotonic()
    await asyncio.gather(*buyers)
    local.restart(victim)  # it comes back as a replica of the new primary
    assert client(replica).info("replication")["role"] == "master"

    # the app reconnected by itself: orders were paid after the replica took over
    after = [order_id for at, order_id in paid if at > promoted_at]
    assert after, f"no order paid after the failover ({len(paid)} in all, kill at {killed_at})"
    assert len(paid) == 16, f"{len(paid)} of 16 buyers paid"

    # no seat sold twice, and every paid order has its seats (PostgreSQL is the arbiter)
    lines = await pg.fetch(
        "SELECT l.order_id, l.seat_id, s.order_id AS sold_to FROM order_lines l"
        " JOIN orders o ON o.id = l.order_id"
        " LEFT JOIN sold_seats s ON s.event_id = l.event_id AND s.seat_id = l.seat_id"
        " WHERE o.status = 'paid' AND o.event_id = $1",
        sale,
    )
    assert {r["order_id"] for r in lines} == {order_id for _, order_id in paid}
    assert all(r["sold_to"] == r["order_id"] for r in lines), [dict(r) for r in lines]
    seats = [r["seat_id"] for r in lines]
    assert len(seats) == len(set(seats)) == 32
    assert await pg.fetchval("SELECT count(*) FROM sold_seats WHERE event_id = $1", sale) == 32

    # orders paid once the new primary served the slot are sold in Redis too
    k = EventKeys(sale)
    for order_id in after:
        ordered = [r["seat_id"] for r in lines if r["order_id"] == order_id]

        async def marked(ordered: list[str] = ordered) -> bool:
            return await rc.hmget(k.seats, ordered) == [b"sold"] * len(ordered)

        await eventually(marked, f"seats of {order_id} sold in Redis")

    # the waiting fans kept their places: same ticket, same order
    positions = {}
    for queue_id, (headers, ticket) in places.items():
        status, place = await call(fans, "GET", f"/api/queue/{queue_id}", headers)
        assert status == 200 and place["state"] == "waiting", place
        assert place["ticket"] == ticket
        positions[ticket] = place["position"]
    assert [positions[t] for t in sorted(positions)] == list(range(1, 21))
    # and a new fan joins behind them
    status, late = await call(fans, "POST", f"/api/events/{waiting}/queue", visitor())
    assert status == 200 and late["position"] == 21, late
