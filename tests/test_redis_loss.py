"""A place survives a total loss of Redis (API.md "Redis Cluster and Redis loss"): fans who were
ahead stay ahead, admitted fans keep their session for its remaining time, nobody is admitted
twice, and a kept place never revives one the fan left while Redis still had it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from loadtest import redis_loss
from loadtest.redis_loss import kendall_tau

from .helpers import ADMIN, create_event, join, visitor

Client = TestClient[Any, Any]


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == 1 / 3


async def test_redis_flushed_mid_sale_everyone_rejoins_in_order(fans: Client, redis: Redis) -> None:
    ev = await create_event(fans, rate_per_min=6000, max_active=10, challenge="off")

    async def stop_admitting() -> None:
        r = await fans.patch(
            f"/api/admin/events/{ev['id']}", json={"rate_per_min": 0}, headers=ADMIN
        )
        assert r.status == 200

    outcome = await redis_loss.run(
        fans.session, str(fans.make_url("")).rstrip("/"), ev["id"], fans=120, admit=10,
        flush=redis.flushall, stop_admitting=stop_admitting,
    )  # fmt: skip
    assert outcome.admitted_before == 10 and outcome.waiting_before == 110
    assert outcome.lost == 0
    assert outcome.tau >= 0.99
    assert outcome.sessions_kept == 10 and outcome.admitted_twice == 0
    assert outcome.admitted_after == 10


async def test_a_kept_place_never_revives_one_left_before_the_loss(
    fans: Client, redis: Redis
) -> None:
    client = fans  # no cookie jar: each request says which visitor it is
    ev = await create_event(client, rate_per_min=0)
    fan = visitor()
    first = await join(client, ev["id"], fan)
    assert first.status == 200
    kept = first.cookies[f"bo_place_{ev['id']}"].value
    queue_id = (await first.json())["queue_id"]
    assert (await client.delete(f"/api/queue/{queue_id}", headers=fan)).status == 204
    with_kept = {"Cookie": f"{fan['Cookie']}; bo_place_{ev['id']}={kept}"}
    # Same Redis epoch: the kept place is not taken back; a new join needs a new solution.
    again = await client.post(f"/api/events/{ev['id']}/queue", headers=with_kept)
    assert again.status == 403 and (await again.json())["error"] == "challenge_required", (
        await again.json()
    )
    # After a loss the kept place comes back, without a new solution (it was paid for).
    await redis.flushall()
    back = await client.post(f"/api/events/{ev['id']}/queue", headers=with_kept)
    assert back.status == 200, await back.text()
    assert (await back.json())["queue_id"] == queue_id
    # A forged kept place is ignored.
    forged = {"Cookie": f"{visitor()['Cookie']}; bo_place_{ev['id']}={kept}"}
    other = await client.post(f"/api/events/{ev['id']}/queue", headers=forged)
    assert other.status == 403, await other.json()
