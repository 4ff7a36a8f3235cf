"""Inventory-aware admission through the real app: while every seat left is held, the bucket
admits nobody and a waiting fan's estimate is unknown; when the hold goes, admission resumes."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core.keys import EventKeys

from .helpers import admitted, bearer, create_event, eventually, join, visitor

Client = TestClient[Any, Any]
STANDING = [{"id": "GA", "name": "Standing", "price": 3500, "capacity": 2}]


async def flag(redis: Redis, k: EventKeys) -> Any:
    return await redis.hget(k.cfg, "exhausted")


async def test_all_held_pauses_admission_until_the_hold_goes(fans: Client, redis: Redis) -> None:
    client = fans
    event = await create_event(client, sections=STANDING, rate_per_min=6000)
    k = EventKeys(event["id"])
    first = visitor()
    _, token = await admitted(client, event["id"], first)
    hold = await client.post(
        f"/api/events/{event['id']}/holds",
        json={"section": "GA", "quantity": 2},
        headers=bearer(first, token),
    )
    assert hold.status == 201, await hold.text()
    hold_id = (await hold.json())["hold_id"]

    async def exhausted() -> bool:
        return bool(await flag(redis, k) == b"1")

    await eventually(exhausted, "every seat held marks the event exhausted")

    second = visitor()
    joined = await (await join(client, event["id"], second)).json()
    assert joined["state"] == "waiting"
    before = int(await redis.hget(k.stats, "admitted") or 0)
    ticks = []

    async def ten_steps() -> bool:
        ticks.append(await redis.hget(k.bucket, "ts"))
        return len(set(ticks)) > 10

    await eventually(ten_steps, "ten admission steps")
    status = await (await client.get(f"/api/queue/{joined['queue_id']}", headers=second)).json()
    assert status["state"] == "waiting", status
    assert status["eta_seconds"] is None, status
    assert int(await redis.hget(k.stats, "admitted") or 0) == before

    released = await client.delete(f"/api/holds/{hold_id}", headers=first)
    assert released.status == 204

    async def cleared() -> bool:
        return bool(await flag(redis, k) == b"0")

    await eventually(cleared, "the released seats clear the flag")

    async def second_admitted() -> bool:
        url = f"/api/queue/{joined['queue_id']}"
        state = (await (await client.get(url, headers=second)).json())["state"]
        return bool(state == "admitted")

    await eventually(second_admitted, "the waiting fan is admitted once seats return")
