"""Redis loses its data mid-sale; every fan comes back with the place its browser kept.

One scenario, run by the test suite on a small crowd (tests/test_redis_loss.py asserts) and by
`python -m loadtest.bench_redis_loss` on a larger one (prints): fans join, some are admitted,
Redis is flushed, all rejoin in a random order with their cookies. The figures: the rank
correlation (Kendall tau) between the waiting fans' order before and after, and whether any
admitted fan lost its session or was admitted again."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import aiohttp


@dataclass
class Fan:
    """One browser: its cookies, as a browser keeps them."""

    cookies: dict[str, str] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def keep(self, response: aiohttp.ClientResponse) -> None:
        for header in response.headers.getall("Set-Cookie", []):
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value


@dataclass
class Outcome:
    fans: int
    waiting_before: int
    admitted_before: int
    tau: float  # Kendall rank correlation of the waiting fans' order, before vs after
    admitted_after: int
    sessions_kept: int  # admitted fans whose session came back with the same expiry
    admitted_twice: int  # fans admitted before and admitted anew (a new session) after
    lost: int  # fans who got no place back


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def kendall_tau(before: list[int], after: list[int]) -> float:
    """Kendall's tau-a of two rankings of the same items (O(n log n) would do; n is small)."""
    n = len(before)
    if n < 2:
        return 1.0
    score = 0
    for i in range(n):
        for j in range(i + 1, n):
            score += _sign(before[i] - before[j]) * _sign(after[i] - after[j])
    return score / (n * (n - 1) / 2)


async def _call(
    session: aiohttp.ClientSession, fan: Fan, method: str, url: str, body: Any = None
) -> dict[str, Any]:
    async with session.request(method, url, json=body, headers=fan.headers()) as r:
        assert r.status == 200, (r.status, await r.text())
        fan.keep(r)
        data: dict[str, Any] = await r.json()
        return data


async def run(
    session: aiohttp.ClientSession,
    base: str,
    event_id: str,
    fans: int,
    admit: int,
    flush: Callable[[], Awaitable[Any]],
    stop_admitting: Callable[[], Awaitable[Any]],
    seed: int = 7,
) -> Outcome:
    """`admit` fans are admitted first (the event's max_active), then admission stops, Redis is
    flushed, and everyone rejoins in a random order."""
    crowd = [Fan() for _ in range(fans)]
    joined = []
    for fan in crowd:  # one after another: arrival order is ticket order
        joined.append(await _call(session, fan, "POST", f"{base}/api/events/{event_id}/queue"))
    for _ in range(400):  # bounded: until `admit` fans are in (at most 20 s)
        states = [
            await _call(session, fan, "GET", f"{base}/api/queue/{j['queue_id']}")
            for fan, j in zip(crowd, joined, strict=True)
        ]
        if sum(s["state"] == "admitted" for s in states) >= admit:
            break
        await asyncio.sleep(0.05)
    await stop_admitting()
    before = [
        await _call(session, fan, "GET", f"{base}/api/queue/{j['queue_id']}")
        for fan, j in zip(crowd, joined, strict=True)
    ]
    await flush()
    order = list(range(fans))
    random.Random(seed).shuffle(order)
    after: list[dict[str, Any]] = [{}] * fans
    for i in order:
        after[i] = await _call(session, crowd[i], "POST", f"{base}/api/events/{event_id}/queue")
    after = [  # everyone is back: the order now, as each fan's next poll sees it
        await _call(session, fan, "GET", f"{base}/api/queue/{a['queue_id']}")
        for fan, a in zip(crowd, after, strict=True)
    ]
    waiting = [i for i in range(fans) if before[i]["state"] == "waiting"]
    admitted = [i for i in range(fans) if before[i]["state"] == "admitted"]
    kept = [
        i for i in admitted if after[i].get("access_expires_at") == before[i]["access_expires_at"]
    ]
    return Outcome(
        fans=fans,
        waiting_before=len(waiting),
        admitted_before=len(admitted),
        tau=kendall_tau(
            [before[i]["position"] for i in waiting],
            [after[i]["position"] or 0 for i in waiting],
        ),
        admitted_after=sum(a["state"] == "admitted" for a in after),
        sessions_kept=len(kept),
        admitted_twice=sum(
            1 for i in admitted if after[i]["state"] == "admitted" and i not in kept
        ),
        lost=sum(1 for i in range(fans) if after[i].get("queue_id") != before[i]["queue_id"]),
    )
