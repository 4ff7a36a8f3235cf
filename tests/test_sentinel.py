"""One primary with a replica, watched by three real Sentinels (valkey-server --sentinel): the app
built with REDIS_SENTINELS finds the primary through them, and when the primary is killed
(SIGKILL) and a Sentinel promotes the replica, the app reconnects by itself — waiting fans keep
their places, a new fan joins, is admitted and buys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from aiohttp import DummyCookieJar

from server.core.settings import Settings
from server.runtime.app import create_app
from server.runtime.redis_local import LocalSentinels, client

from .helpers import Client, admitted_fan, call, create_event, eventually, visitor

pytestmark = pytest.mark.cluster


@pytest.fixture
def sentinels() -> Iterator[LocalSentinels]:
    local = LocalSentinels().start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
async def fans(
    sentinels: LocalSentinels, aiohttp_client: Any, base_settings: Settings, pg: Any
) -> Client:
    """The app on the Sentinels' primary; set up after the servers, so it stops before them."""
    settings = msgspec.structs.replace(
        base_settings,
        redis_url="",
        redis_sentinels=sentinels.addresses,
        redis_sentinel_master=sentinels.name,
    )
    result: Client = await aiohttp_client(create_app(settings), cookie_jar=DummyCookieJar())
    return result


async def test_sentinel_failover(fans: Client, sentinels: LocalSentinels) -> None:
    assert sentinels.primary is not None and sentinels.replica is not None
    old, new = sentinels.primary.port, sentinels.replica.port
    assert sentinels.master_port() == old
    line = await create_event(fans, id="line", rate_per_min=0, challenge="off")
    sale = await create_event(fans, id="sale", rate_per_min=60000, challenge="off")
    places = {}
    for _ in range(5):
        headers = visitor()
        status, joined = await call(fans, "POST", f"/api/events/{line['id']}/queue", headers)
        assert status == 200 and joined["state"] == "waiting", joined
        places[joined["queue_id"]] = (headers, joined["ticket"])
    # the app's writes went to the primary the Sentinels named; the replica has them all
    assert client(old).zcard("bo:{ev:line}:line") == 5
    assert client(old).wait(1, 5000) == 1

    sentinels.primary.kill()

    def promoted() -> bool:
        return (
            sentinels.master_port() == new and client(new).info("replication")["role"] == "master"
        )

    async def failed_over() -> bool:
        return await asyncio.to_thread(promoted)

    await eventually(failed_over, "a sentinel promotes the replica", within=30)

    # the app reconnects by itself (requests in between may answer 503, never 500)
    for queue_id, (headers, ticket) in places.items():

        async def kept(queue_id: str = queue_id, headers: dict[str, str] = headers) -> Any:
            status, place = await call(fans, "GET", f"/api/queue/{queue_id}", headers)
            assert status in (200, 503), (status, place)
            return place if status == 200 else None

        place = await eventually(kept, f"{queue_id} answered after the failover", within=20)
        assert (place["state"], place["ticket"]) == ("waiting", ticket)
    status, late = await call(fans, "POST", f"/api/events/{line['id']}/queue", visitor())
    assert status == 200 and (late["state"], late["position"]) == ("waiting", 6), late
    assert client(new).zcard("bo:{ev:line}:line") == 6  # written on the new primary
    fan = await admitted_fan(fans, sale["id"])
    bought = await fan.buy(sale["id"], {"seats": ["A-1-1"]})
    assert [t["seat_id"] for t in bought["tickets"]] == ["A-1-1"]
