"""A nap never costs a place; an absence never stalls the line. The queue's scripts on a real
Redis with time driven through now_ms (nothing sleeps): a fan silent for longer than the grace
steps out of the line (queue/reap.lua), the admission step passes them by, and they come back in
at their own ticket within the return window — at the head of the line if their turn passed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from server.core.keys import EventKeys
from server.core.settings import SettingsError, from_env
from server.waiting.line import Count, Reaped, Scripts
from tests.test_scripts import GRACE, SALE, join, members, opened, text, write_cfg

WINDOW = 1_800_000  # the default return window, 30 minutes
MINUTE = 60_000


@pytest.fixture
async def scripts(redis: Redis) -> AsyncIterator[Scripts]:
    yield Scripts(redis)


async def alive(s: Scripts, k: EventKeys, queue_ids: list[str], now: int) -> None:
    """Signs of life (a poll each) from every fan in `queue_ids`."""
    for queue_id in queue_ids:
        assert (await s.status(k, queue_id, touch=True, now_ms=now)).state == "waiting"


async def test_default_window_is_the_setting_default(scripts: Scripts) -> None:
    assert scripts.return_window_ms == WINDOW


async def test_away_five_minutes_keeps_the_same_place(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "nap", rate_per_min=0)  # the line does not move
    a, b, c = [await join(scripts, k, name, SALE + i) for i, name in enumerate("abc", 1)]
    now = SALE + 5 * MINUTE
    await alive(scripts, k, [a.queue_id, c.queue_id], now - 1000)
    assert await scripts.reap(k, GRACE, now_ms=now) == Reaped(gone=0, stepped_away=1)
    assert await members(redis, k.line) == [a.queue_id, c.queue_id]
    assert await members(redis, k.away) == [b.queue_id]
    # b's phone wakes after 5 minutes: the same place, between a and c
    back = await scripts.status(k, b.queue_id, touch=True, now_ms=now + 1)
    assert (back.state, back.ticket, back.rank) == ("waiting", b.ticket, 1)
    assert await members(redis, k.line) == [a.queue_id, b.queue_id, c.queue_id]
    assert await redis.zcard(k.away) == 0
    assert await redis.zscore(k.seen, b.queue_id) == now + 1
    assert await text(redis, k.stats, "expired") is None


async def test_rejoin_after_a_nap_is_the_same_place(redis: Redis, scripts: Scripts) -> None:
    """Coming back through join (a reload that lost its stored queue id) finds the place too."""
    k = await opened(redis, scripts, "napjoin", rate_per_min=0)
    a = await join(scripts, k, "a", SALE + 1)
    b = await join(scripts, k, "b", SALE + 2)
    now = SALE + 10 * MINUTE
    await alive(scripts, k, [b.queue_id], now - 1000)
    assert await scripts.reap(k, GRACE, now_ms=now) == Reaped(0, 1)
    back = await scripts.join(k, "a", f"{k.event_id}.fresh", now_ms=now)
    assert (back.state, back.queue_id, back.ticket, back.rank) == ("waiting", a.queue_id, 1, 0)


async def test_turn_passed_while_away_is_admitted_on_return(redis: Redis, scripts: Scripts) -> None:
    # 300/min with 200 ms ticks: a bucket of 2 tokens (one tick's worth plus one)
    k = await opened(redis, scripts, "passed", rate_per_min=300, max_active=100)
    a, b, c, d = [await join(scripts, k, name, SALE + i) for i, name in enumerate("abcd", 1)]
    now = SALE + 3 * MINUTE
    await alive(scripts, k, [b.queue_id, c.queue_id, d.queue_id], now - 1000)
    assert await scripts.reap(k, GRACE, now_ms=now) == Reaped(0, 1)
    # a's turn comes while a is away: the line moves on without them
    snap = await scripts.admit(k, now_ms=now + 1)
    assert [x.queue_id for x in snap.admitted] == [b.queue_id, c.queue_id]
    assert snap.waiting == 1  # only d is in line; a is away, not counted
    # back within the window: at the head of the line, ahead of d who came later
    back = await scripts.status(k, a.queue_id, touch=True, now_ms=now + 2)
    assert (back.state, back.rank) == ("waiting", 0)
    snap = await scripts.admit(k, now_ms=now + 400)  # the next step, with a token
    assert snap.admitted[0].queue_id == a.queue_id
    assert (await scripts.status(k, a.queue_id, now_ms=now + 401)).state == "admitted"


async def test_return_waits_for_room_under_max_active(redis: Redis, scripts: Scripts) -> None:
    """Back at the head of the line, but never beyond max_active: admitted when room frees."""
    k = await opened(redis, scripts, "full", rate_per_min=600, max_active=1, session_ms=MINUTE)
    a, b = await join(scripts, k, "a", SALE + 1), await join(scripts, k, "b", SALE + 2)
    c = await join(scripts, k, "c", SALE + 3)
    now = SALE + 3 * MINUTE
    await alive(scripts, k, [b.queue_id, c.queue_id], now - 1000)
    await scripts.reap(k, GRACE, now_ms=now)
    assert [x.queue_id for x in (await scripts.admit(k, now_ms=now)).admitted] == [b.queue_id]
    assert (await scripts.status(k, a.queue_id, touch=True, now_ms=now + 1)).rank == 0
    assert (await scripts.admit(k, now_ms=now + 1000)).admitted == ()  # b's session is alive
    snap = await scripts.admit(k, now_ms=now + MINUTE + 1)  # b's session ended
    assert [x.queue_id for x in snap.admitted] == [a.queue_id]
    assert snap.active == 1


async def test_away_past_the_window_loses_the_place(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "gone", rate_per_min=0)
    a = await join(scripts, k, "a", SALE + 1)
    b = await join(scripts, k, "b", SALE + 2)
    c = await join(scripts, k, "c", SALE + 3)
    assert await scripts.reap(k, GRACE, now_ms=SALE + 3 * MINUTE) == Reaped(0, 3)
    # within the window a read says away; one ms past it the place is gone, said as expired
    assert (await scripts.status(k, a.queue_id, now_ms=SALE + 1 + WINDOW)).state == "away"
    gone = await scripts.status(k, a.queue_id, touch=True, now_ms=SALE + 2 + WINDOW)
    assert gone.state == "expired"
    # the reaper lets b go for good; c comes back through join after the window: a new place
    assert await scripts.reap(k, GRACE, now_ms=SALE + 3 + WINDOW) == Reaped(1, 0)
    assert await members(redis, k.away) == [c.queue_id]
    assert (await scripts.status(k, b.queue_id, touch=True, now_ms=SALE + 4 + WINDOW)).state == (
        "expired"
    )
    fresh = await scripts.join(k, "c", f"{k.event_id}.c2", now_ms=SALE + 4 + WINDOW)
    assert (fresh.state, fresh.queue_id, fresh.ticket) == ("waiting", f"{k.event_id}.c2", 4)
    assert await text(redis, k.stats, "expired") == "3"
    assert await redis.zcard(k.away) == 0


async def test_absent_heads_never_stall_the_line(redis: Redis, scripts: Scripts) -> None:
    """Two hundred silent fans at the head: the first admission step after the reap admits
    the present fans behind them, at the full bucket."""
    k = await opened(redis, scripts, "stall", rate_per_min=600, max_active=1000)
    for i in range(200):
        await join(scripts, k, f"absent{i}", SALE + 1)
    present = [await join(scripts, k, f"here{i}", SALE + 2) for i in range(5)]
    now = SALE + 3 * MINUTE
    await alive(scripts, k, [p.queue_id for p in present], now - 1000)
    assert await scripts.reap(k, GRACE, now_ms=now) == Reaped(0, 200)
    snap = await scripts.admit(k, now_ms=now + 1)
    assert [x.queue_id for x in snap.admitted] == [p.queue_id for p in present[:3]]  # bucket 3


async def test_silent_prequeue_fan_keeps_the_shuffled_place(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("preaway")
    await write_cfg(redis, k, rate_per_min=0)
    napper = await join(scripts, k, "napper", SALE - 20 * MINUTE)
    assert await scripts.reap(k, GRACE, now_ms=SALE - 5 * MINUTE) == Reaped(0, 0)
    assert await scripts.open_sale(k, 5, now_ms=SALE) == 1
    assert await scripts.reap(k, GRACE, now_ms=SALE + 1) == Reaped(0, 1)
    back = await scripts.status(k, napper.queue_id, touch=True, now_ms=SALE + 5 * MINUTE)
    assert (back.state, back.ticket, back.rank) == ("waiting", 1, 0)


async def test_leave_while_away_frees_the_place(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "awayleave", rate_per_min=0)
    a = await join(scripts, k, "a", SALE + 1)
    await scripts.reap(k, GRACE, now_ms=SALE + 3 * MINUTE)
    assert await scripts.leave(k, a.queue_id)
    assert await redis.zcard(k.away) == 0
    assert (await scripts.status(k, a.queue_id, touch=True, now_ms=SALE + 4 * MINUTE)).state == (
        "expired"
    )


@pytest.mark.parametrize(
    ("value", "ok"), [("1800", True), ("120", True), ("119", False), ("86401", False)]
)
def test_return_window_setting(value: str, ok: bool) -> None:
    env = {"BOXOFFICE_RETURN_WINDOW_SECONDS": value}  # the grace is 120 s by default
    if ok:
        assert from_env(env).return_window_seconds == int(value)
    else:
        with pytest.raises(SettingsError, match="return_window_seconds"):
            from_env(env)


async def test_only_the_owner_signs_life_and_a_status_counts_first(
    redis: Redis, scripts: Scripts
) -> None:
    """status.lua with an owner: a stranger's touch reads and changes nothing (not even an away
    place's return); the owner's brings the place back. Its counters are counted before it
    reads anything, and over a limit it does nothing at all."""
    k = await opened(redis, scripts, "owned", rate_per_min=0)
    a = await join(scripts, k, "a", SALE + 1)
    b = await join(scripts, k, "b", SALE + 2)
    stamp = await redis.zscore(k.seen, b.queue_id)
    stranger = await scripts.status(k, b.queue_id, True, SALE + 50, owner="mallory")
    assert (stranger.state, stranger.visitor_id) == ("waiting", "b")
    assert await redis.zscore(k.seen, b.queue_id) == stamp
    mine = await scripts.status(k, b.queue_id, True, SALE + 60, owner="b")
    assert (mine.state, await redis.zscore(k.seen, b.queue_id)) == ("waiting", SALE + 60)
    assert await scripts.reap(k, GRACE, now_ms=SALE + 3 * MINUTE) == Reaped(0, 2)
    assert (await scripts.status(k, a.queue_id, True, SALE + 4 * MINUTE, owner="b")).state == (
        "away"
    )
    assert await members(redis, k.line) == []
    back = await scripts.status(k, a.queue_id, True, SALE + 4 * MINUTE, owner="a")
    assert (back.state, back.rank) == ("waiting", 0)
    counter = Count(k.rate("status", "b"), 1, MINUTE)
    assert (
        await scripts.status(k, b.queue_id, now_ms=SALE + 5 * MINUTE, counts=[counter])
    ).state == ("away")
    over = await scripts.status(k, b.queue_id, True, SALE + 5 * MINUTE, "b", [counter])
    assert (over.state, over.visitor_id) == ("limited", "")
    assert 0 < over.retry_ms <= MINUTE
    assert await members(redis, k.line) == [a.queue_id]  # b did not come back
    assert await redis.get(counter.key) == b"2"
