"""The queue's Lua scripts through server.scripts.Scripts on a real Redis, with time driven
through each script's now_ms argument (nothing here sleeps)."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis.asyncio import Redis

from server.core import rules
from server.core.keys import EventKeys
from server.waiting.line import Count, Place, Reaped, Scripts

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: real-sized epoch milliseconds
PRE = T0  # the pre-queue opens
SALE = T0 + 3_600_000  # the sale starts an hour later
GRACE = 120_000


def cfg_mapping(
    *,
    rate_per_min: int = 600,
    max_active: int = 1000,
    session_ms: int = 600_000,
    tick_ms: int = 200,
    paused: bool = False,
    closed: bool = False,
    sold_out: bool = False,
    sale_starts_ms: int = SALE,
    prequeue_opens_ms: int = PRE,
) -> dict[str, int]:
    """The cfg hash exactly as server.room.Room.mirror writes it."""
    return {
        "rate_per_min": rate_per_min,
        "max_active": max_active,
        "session_ms": session_ms,
        "tick_ms": tick_ms,
        "paused": int(paused),
        "closed": int(closed),
        "sold_out": int(sold_out),
        "sale_starts_ms": sale_starts_ms,
        "prequeue_opens_ms": prequeue_opens_ms,
    }


async def write_cfg(redis: Redis, k: EventKeys, **cfg: int | bool) -> None:
    await redis.hset(k.cfg, mapping=cfg_mapping(**cfg))  # type: ignore[arg-type]


def qid(k: EventKeys, name: str) -> str:
    return f"{k.event_id}.{name}"


async def join(s: Scripts, k: EventKeys, visitor: str, now: int) -> Place:
    return await s.join(k, visitor, qid(k, visitor), now_ms=now)


async def fill(s: Scripts, k: EventKeys, n: int, now: int, prefix: str = "v") -> list[str]:
    """n visitors join in arrival order (a few hundred per pipeline); their queue ids."""
    ids: list[str] = []
    for first in range(0, n, 500):
        chunk = range(first, min(n, first + 500))
        places = await asyncio.gather(*(join(s, k, f"{prefix}{i}", now) for i in chunk))
        assert {p.state for p in places} <= {"waiting", "prequeue"}
        ids.extend(p.queue_id for p in places)
    return ids


async def opened(redis: Redis, s: Scripts, event_id: str, **cfg: int | bool) -> EventKeys:
    """An event whose sale is open (empty pre-queue), settings overridden by `cfg`."""
    k = EventKeys(event_id)
    await write_cfg(redis, k, **cfg)
    assert await s.open_sale(k, 7, now_ms=SALE) == 0
    return k


def dec(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def text(redis: Redis, key: str, field_name: str) -> str | None:
    value = await redis.hget(key, field_name)
    return None if value is None else dec(value)


async def members(redis: Redis, key: str) -> list[str]:
    """A sorted set's members, lowest score first."""
    return [dec(m) for m in await redis.zrange(key, 0, -1)]


async def scored(redis: Redis, key: str) -> list[tuple[str, int]]:
    pairs: list[Any] = await redis.zrange(key, 0, -1, withscores=True)
    return [(dec(m), int(t)) for m, t in pairs]


@pytest.fixture
async def scripts(redis: Redis) -> AsyncIterator[Scripts]:
    yield Scripts(redis)


# ---- join ------------------------------------------------------------------------------------


async def test_join_is_idempotent_per_visitor(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "idem")
    first = await scripts.join(k, "alice", qid(k, "a1"), now_ms=SALE + 1)
    assert (first.state, first.queue_id, first.ticket, first.rank) == (
        "waiting",
        qid(k, "a1"),
        1,
        0,
    )
    again = await scripts.join(k, "alice", qid(k, "a2"), now_ms=SALE + 2)
    assert (again.state, again.queue_id, again.ticket, again.rank) == (
        "waiting",
        qid(k, "a1"),
        1,
        0,
    )
    bob = await scripts.join(k, "bob", qid(k, "b1"), now_ms=SALE + 3)
    assert (bob.queue_id, bob.ticket, bob.rank) == (qid(k, "b1"), 2, 1)
    assert (await scripts.join(k, "alice", qid(k, "a3"), now_ms=SALE + 4)).queue_id == qid(k, "a1")
    assert await redis.zcard(k.line) == 2
    assert await text(redis, k.stats, "joins") == "2"
    assert await redis.hget(k.owner, qid(k, "a2")) is None


async def test_join_in_prequeue_is_idempotent(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("preidem")
    await write_cfg(redis, k)
    first = await scripts.join(k, "alice", qid(k, "a1"), now_ms=PRE + 5)
    again = await scripts.join(k, "alice", qid(k, "a2"), now_ms=PRE + 9)
    assert (first.state, first.ticket, first.rank) == ("prequeue", -1, -1)
    assert (again.state, again.queue_id) == ("prequeue", qid(k, "a1"))
    assert await redis.zcard(k.pre) == 1
    # the repeat join counts as a sign of life
    assert await redis.zscore(k.seen, qid(k, "a1")) == PRE + 9


async def test_prequeue_before_the_sale_ticket_after(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("prethen")
    await write_cfg(redis, k)
    early = await join(scripts, k, "early", PRE + 1)
    assert early.state == "prequeue"
    # the sale's time has come but nobody opened it yet: still the pre-queue
    late_early = await join(scripts, k, "late-early", SALE + 1)
    assert late_early.state == "prequeue"
    assert await redis.zcard(k.line) == 0
    assert await scripts.open_sale(k, 99, now_ms=SALE + 2) == 2
    moved = await scripts.status(k, early.queue_id, now_ms=SALE + 3)
    assert moved.state == "waiting"
    assert moved.ticket in (1, 2)
    after = await join(scripts, k, "after", SALE + 4)
    assert (after.state, after.ticket, after.rank) == ("waiting", 3, 2)
    assert await redis.zcard(k.pre) == 0


async def test_not_open_before_the_prequeue_opens(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("notyet")
    await write_cfg(redis, k)
    refused = await scripts.join(k, "alice", qid(k, "a"), now_ms=PRE - 1)
    assert (refused.state, refused.queue_id, refused.ticket) == ("not_open", "", -1)
    assert await redis.hlen(k.visitors) == 0
    assert await redis.zcard(k.seen) == 0
    assert (await scripts.join(k, "alice", qid(k, "a"), now_ms=PRE)).state == "prequeue"


async def test_join_counts_its_attempts_before_it_acts(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("counted")
    await write_cfg(redis, k)
    alice = Count(k.rate("join", "alice"), 2, 60_000)
    address = Count(k.rate("join", "a:203.0.113.7"), 3, 60_000)
    for n in range(2):  # a new place, then the same one again
        place = await scripts.join(k, "alice", qid(k, f"a{n}"), SALE + n, counts=[alice, address])
        assert (place.state, place.queue_id) == ("prequeue", qid(k, "a0"))
    refused = await scripts.join(k, "alice", qid(k, "a2"), SALE + 2, counts=[alice, address])
    assert (refused.state, refused.queue_id) == ("limited", "")
    assert 0 < refused.retry_ms <= 60_000
    # Bob's own counter is fine, the address's is over (its 4th attempt): nothing is done, and
    # both were counted, as two rate_limit.lua calls would have.
    bob = Count(k.rate("join", "bob"), 2, 60_000)
    assert (await scripts.join(k, "bob", qid(k, "b"), SALE + 3, counts=[bob, address])).state == (
        "limited"
    )
    assert await redis.hget(k.visitors, "bob") is None
    assert await redis.zcard(k.pre) == 1
    assert [int(await redis.get(c.key) or 0) for c in (alice, address, bob)] == [3, 4, 1]
    # Without counts nothing is counted; an unmirrored event counts nothing either (the join
    # made again once the event is mirrored counts once).
    assert (await scripts.join(k, "carol", qid(k, "c"), now_ms=SALE + 4)).state == "prequeue"
    ghost = EventKeys("counted-ghost")
    ghosts = [Count(ghost.rate("join", "alice"), 2, 60_000)]
    assert (await scripts.join(ghost, "alice", "x", SALE, counts=ghosts)).state == "nocfg"
    assert await redis.exists(ghosts[0].key) == 0
    with pytest.raises(ValueError, match="at most two"):
        await scripts.join(k, "dave", qid(k, "d"), SALE, counts=[alice, address, bob])


async def test_unmirrored_event(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("ghost")
    assert (await scripts.join(k, "alice", qid(k, "a"), now_ms=SALE)).state == "nocfg"
    assert (await scripts.status(k, qid(k, "a"), now_ms=SALE)).state == "unknown"
    assert await scripts.open_sale(k, 1, now_ms=SALE) == -3
    assert not (await scripts.admit(k, now_ms=SALE)).found
    assert await redis.keys("*") == []


@pytest.mark.parametrize("flag", ["closed", "sold_out"])
async def test_closed_and_sold_out_refuse_new_joins_only(
    redis: Redis, scripts: Scripts, flag: str
) -> None:
    k = await opened(redis, scripts, f"refuse-{flag.replace('_', '')}", max_active=1)
    admitted = await join(scripts, k, "admitted", SALE + 1)
    waiting = await join(scripts, k, "waiting", SALE + 2)
    assert [a.queue_id for a in (await scripts.admit(k, now_ms=SALE + 3)).admitted] == [
        admitted.queue_id
    ]
    await redis.hset(k.cfg, flag, 1)
    refused = await join(scripts, k, "newcomer", SALE + 4)
    assert (refused.state, refused.queue_id) == (flag, "")
    assert await redis.hget(k.visitors, "newcomer") is None
    assert (await join(scripts, k, "waiting", SALE + 5)).queue_id == waiting.queue_id
    assert (await join(scripts, k, "admitted", SALE + 6)).state == "admitted"
    assert (await scripts.status(k, waiting.queue_id, now_ms=SALE + 7)).state == "waiting"
    snap = await scripts.admit(k, now_ms=SALE + 600_000)  # the session is over, room again
    assert getattr(snap, flag)
    assert snap.admitted == ()
    assert snap.waiting == 1
    await redis.hset(k.cfg, flag, 0)
    assert (await join(scripts, k, "newcomer", SALE + 600_001)).state == "waiting"


async def test_closed_keeps_prequeue_places(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("preclosed")
    await write_cfg(redis, k)
    early = await join(scripts, k, "early", PRE + 1)
    await redis.hset(k.cfg, "closed", 1)
    assert (await join(scripts, k, "early", PRE + 2)).queue_id == early.queue_id
    assert (await join(scripts, k, "other", PRE + 3)).state == "closed"


# ---- status ----------------------------------------------------------------------------------


async def test_status_states_and_touch(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("status")
    await write_cfg(redis, k, max_active=1, session_ms=10_000)
    pre = await join(scripts, k, "pre", PRE + 1)
    got = await scripts.status(k, pre.queue_id, now_ms=PRE + 2)
    assert (got.state, got.visitor_id, got.ticket, got.rank) == ("prequeue", "pre", -1, -1)
    assert await redis.zscore(k.seen, pre.queue_id) == PRE + 1  # reading is not a sign of life
    await scripts.status(k, pre.queue_id, touch=True, now_ms=PRE + 3)
    assert await redis.zscore(k.seen, pre.queue_id) == PRE + 3
    assert await scripts.open_sale(k, 1, now_ms=SALE) == 1
    second = await join(scripts, k, "second", SALE + 1)
    got = await scripts.status(k, second.queue_id, touch=True, now_ms=SALE + 2)
    assert (got.state, got.ticket, got.rank) == ("waiting", 2, 1)
    assert await redis.zscore(k.seen, second.queue_id) == SALE + 2
    snap = await scripts.admit(k, now_ms=SALE + 3)
    assert [a.queue_id for a in snap.admitted] == [pre.queue_id]
    got = await scripts.status(k, pre.queue_id, touch=True, now_ms=SALE + 4)
    assert (got.state, got.ticket, got.session_expires_ms) == ("admitted", 1, SALE + 10_003)
    assert await redis.zscore(k.seen, pre.queue_id) is None  # admitted: no longer watched
    got = await scripts.status(k, second.queue_id, now_ms=SALE + 5)
    assert (got.state, got.rank) == ("waiting", 0)
    got = await scripts.status(k, pre.queue_id, now_ms=SALE + 10_003)
    assert (got.state, got.session_expires_ms) == ("expired", SALE + 10_003)
    assert (await scripts.status(k, qid(k, "nobody"), now_ms=SALE)).state == "unknown"


# ---- open_sale -------------------------------------------------------------------------------


async def test_open_sale_moves_the_prequeue_once(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("opening")
    await write_cfg(redis, k)
    ids = await fill(scripts, k, 1234, PRE + 10)  # more than one 500-entry chunk
    assert await scripts.open_sale(k, 5, now_ms=SALE - 1) == -2
    assert await redis.zcard(k.pre) == 1234
    assert await redis.hget(k.cfg, "opened") is None
    assert await scripts.open_sale(k, 5, now_ms=SALE) == 1234
    line = await scored(redis, k.line)
    assert sorted(q for q, _ in line) == sorted(ids)
    assert [t for _, t in line] == list(range(1, 1235))
    tickets = {dec(q): int(t) for q, t in (await redis.hgetall(k.tickets)).items()}
    assert tickets == dict(line)
    assert await redis.get(k.seq) == b"1234"
    assert await redis.exists(k.pre) == 0
    assert await text(redis, k.cfg, "opened") == "1"
    assert await text(redis, k.cfg, "opened_ms") == str(SALE)
    assert [q for q, _ in line] != ids  # shuffled, not arrival order
    # idempotent: a second opening (any process, any seed) changes nothing
    assert await scripts.open_sale(k, 6, now_ms=SALE + 1) == -1
    assert await scored(redis, k.line) == line
    assert await text(redis, k.cfg, "opened_ms") == str(SALE)
    nxt = await join(scripts, k, "next", SALE + 2)
    assert (nxt.ticket, nxt.rank) == (1235, 1234)


async def test_open_sale_is_deterministic_per_seed(redis: Redis, scripts: Scripts) -> None:
    orders = []
    for n, seed in enumerate((11, 11, 12)):
        k = EventKeys(f"seed{n}")
        await write_cfg(redis, k)
        await fill(scripts, k, 50, PRE)
        assert await scripts.open_sale(k, seed, now_ms=SALE) == 50
        orders.append([q.split(".")[1] for q in await members(redis, k.line)])
    assert orders[0] == orders[1]
    assert orders[0] != orders[2]


# ---- admit -----------------------------------------------------------------------------------


@dataclass
class BucketModel:
    """admit.lua's arithmetic in Python, with the same IEEE doubles and the same "%.14g" with
    which Lua's tostring stores tokens, so a sequence of steps must agree exactly."""

    rate: int
    tick_ms: int
    max_active: int
    session_ms: int
    line: deque[str]
    active: OrderedDict[str, int] = field(default_factory=OrderedDict)  # expiry order
    tokens: float | None = None
    ts: int = 0
    total: int = 0

    def step(self, now: int, max_batch: int = 500, extra: int = 0) -> list[str]:
        while self.active and next(iter(self.active.values())) <= now:
            self.active.popitem(last=False)
        capacity = rules.bucket_capacity(self.rate, self.tick_ms)
        tokens, ts = (capacity, now) if self.tokens is None else (self.tokens, self.ts)
        if now > ts:
            tokens = min(capacity, tokens + (now - ts) * self.rate / 60000)
            ts = now
        tokens = min(tokens, capacity)
        if self.rate <= 0:
            tokens = 0
        want = min(math.floor(tokens) + extra, self.max_active - len(self.active), max_batch)
        popped = [self.line.popleft() for _ in range(max(0, min(want, len(self.line))))]
        for q in popped:
            self.active[q] = now + self.session_ms
        if popped:
            tokens = max(0, tokens - max(0, len(popped) - extra))
        self.tokens, self.ts = float(f"{tokens:.14g}"), ts
        self.total += len(popped)
        return popped


def tick_schedule(
    processes: int, tick_ms: int, start: int, duration: int, seed: int
) -> list[tuple[int, int]]:
    """(time, process) of every admission step: each process ticks every tick_ms, with its own
    phase and up to 20 ms of jitter, all interleaved."""
    rng = random.Random(seed)
    steps = []
    for p in range(processes):
        phase = p * tick_ms // processes
        for i in range(duration // tick_ms):
            steps.append((start + phase + i * tick_ms + rng.randrange(20), p))
    return sorted(steps)


def assert_within_bucket(rate: int, tick_ms: int, steps: list[tuple[int, int]]) -> None:
    """(time, admitted) steps: from the first step, and over every minute-long window, no more
    than the bucket allows (rules.admission_ceiling)."""
    t0, total = steps[0][0], 0
    for now, n in steps:
        total += n
        assert total <= rules.admission_ceiling(rate, tick_ms, now - t0), now - t0
    j, window = 0, 0
    for i, (start, _) in enumerate(steps):
        while j < len(steps) and steps[j][0] - start <= 60_000:
            window += steps[j][1]
            j += 1
        last = steps[j - 1][0]
        assert window <= rules.admission_ceiling(rate, tick_ms, last - start), start - t0
        window -= steps[i][1]


@pytest.mark.parametrize(
    ("rate", "tick_ms", "minutes"),
    [(600, 200, 10), (700, 200, 3), (1000, 250, 3), (90, 200, 5), (6000, 50, 1)],
)
async def test_admit_follows_the_token_bucket_exactly(
    redis: Redis, server_urls: tuple[str, str], rate: int, tick_ms: int, minutes: int
) -> None:
    """Three processes tick interleaved; every step admits exactly what the bucket allows, the
    total never exceeds the ceiling, and with enough waiting it reaches it."""
    k = await opened(
        redis, Scripts(redis), "bucket", rate_per_min=rate, tick_ms=tick_ms, max_active=10**6
    )
    duration = minutes * 60_000
    start = SALE + 1000
    steps = tick_schedule(3, tick_ms, start, duration, seed=rate)
    end = steps[-1][0]
    allowance = rules.admission_ceiling(rate, tick_ms, end - steps[0][0])
    line = await fill(Scripts(redis), k, allowance + 20, start)
    model = BucketModel(rate, tick_ms, 10**6, 600_000, deque(line))
    clients = [Redis.from_url(server_urls[0]) for _ in range(3)]
    try:
        processes = [Scripts(c) for c in clients]
        record = []
        for now, p in steps:
            snap = await processes[p].admit(k, now_ms=now)
            expected = model.step(now)
            assert [a.queue_id for a in snap.admitted] == expected, now - start
            assert snap.admitted_total == model.total
            record.append((now, len(snap.admitted)))
    finally:
        for c in clients:
            await c.aclose()
    assert_within_bucket(rate, tick_ms, record)
    assert model.total == allowance
    assert await redis.zcard(k.line) == 20


@pytest.mark.parametrize(
    ("rate", "tick_ms"),
    [(600, 200), (700, 200), (1000, 50), (100, 200), (90, 1000), (2500, 200)],
)
async def test_one_process_admits_at_the_configured_rate(
    redis: Redis, scripts: Scripts, rate: int, tick_ms: int
) -> None:
    """A single process ticking every tick_ms gets the whole allowance: the measured rate is the
    configured rate, even when a tick's worth of tokens is not a whole number."""
    k = await opened(
        redis, scripts, "onerate", rate_per_min=rate, tick_ms=tick_ms, max_active=10**6
    )
    duration = 2 * 60_000
    start = SALE + 1000
    await fill(scripts, k, rules.admission_ceiling(rate, tick_ms, duration) + 5, start)
    total = 0
    for now in range(start, start + duration + 1, tick_ms):
        snap = await scripts.admit(k, now_ms=now)
        total += len(snap.admitted)
        assert total <= rules.admission_ceiling(rate, tick_ms, now - start)
    assert total == rules.admission_ceiling(rate, tick_ms, duration)
    assert snap.admitted_last_window >= rate  # a full minute, at least the rate
    assert rules.measured_rate_per_min(snap.admitted_last_window, snap.window_ms) == pytest.approx(
        rate, abs=rules.bucket_capacity(rate, tick_ms)
    )


async def test_admit_respects_max_active_and_expiry(
    redis: Redis, server_urls: tuple[str, str]
) -> None:
    """Sessions shorter than the line's wait: max_active binds, expiries and departures free
    room, and each step still matches the model exactly."""
    rate, tick_ms, max_active, session_ms = 1200, 200, 30, 2_000
    k = await opened(
        redis,
        Scripts(redis),
        "maxactive",
        rate_per_min=rate,
        tick_ms=tick_ms,
        max_active=max_active,
        session_ms=session_ms,
    )
    start = SALE + 1000
    steps = tick_schedule(2, tick_ms, start, 120_000, seed=3)
    line = await fill(Scripts(redis), k, 2000, start)
    model = BucketModel(rate, tick_ms, max_active, session_ms, deque(line))
    clients = [Redis.from_url(server_urls[0]) for _ in range(2)]
    peak, left = 0, 0
    try:
        processes = [Scripts(c) for c in clients]
        for i, (now, p) in enumerate(steps):
            if i % 7 == 0 and model.active:  # somebody finishes early
                gone = min(model.active, key=model.active.__getitem__)
                if model.active[gone] > now:
                    assert await processes[p].leave(k, gone, "sessions_ended")
                    del model.active[gone]
                    left += 1
            snap = await processes[p].admit(k, now_ms=now)
            assert [a.queue_id for a in snap.admitted] == model.step(now)
            assert snap.active == len(model.active) <= max_active
            assert await redis.zcard(k.active) <= max_active
            for a in snap.admitted:
                assert a.expires_ms == now + session_ms
            peak = max(peak, snap.active)
    finally:
        for c in clients:
            await c.aclose()
    assert peak == max_active  # the limit was reached, so it was tested
    assert left > 0
    # max_active, not the bucket, limited admissions
    assert model.total < rules.admission_ceiling(rate, tick_ms, steps[-1][0] - start) - 100
    assert await text(redis, k.stats, "sessions_ended") == str(model.total - len(model.active))


async def test_admit_in_ticket_order(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("order")
    await write_cfg(redis, k, rate_per_min=600, tick_ms=200)
    early = await fill(scripts, k, 40, PRE + 5, prefix="early")
    assert await scripts.open_sale(k, 2024, now_ms=SALE) == 40
    shuffled = await members(redis, k.line)
    late = [(await join(scripts, k, f"late{i}", SALE + 1 + i)).queue_id for i in range(60)]
    admitted: list[str] = []
    tickets: list[int] = []
    now = SALE + 100
    while len(admitted) < 100:
        now += 130
        for a in (await scripts.admit(k, now_ms=now)).admitted:
            admitted.append(a.queue_id)
            tickets.append((await scripts.status(k, a.queue_id, now_ms=now)).ticket)
    assert admitted == shuffled + late
    assert sorted(admitted[:40]) == sorted(early)
    assert tickets == list(range(1, 101))
    assert await text(redis, k.stats, "serving") == "100"


async def test_paused_admits_nothing(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "paused", rate_per_min=600, tick_ms=200, paused=True)
    await fill(scripts, k, 10, SALE + 1)
    for now in range(SALE + 1000, SALE + 60_000, 200):
        snap = await scripts.admit(k, now_ms=now)
        assert snap.paused
        assert snap.admitted == ()
    assert snap.waiting == 10
    assert snap.active == 0
    await redis.hset(k.cfg, "paused", 0)
    # a long pause does not bank tokens: only the bucket's capacity comes out at once
    resumed = await scripts.admit(k, now_ms=SALE + 60_000)
    assert len(resumed.admitted) == math.floor(rules.bucket_capacity(600, 200))
    assert not resumed.paused


async def test_exhausted_admits_nobody_until_seats_return(redis: Redis, scripts: Scripts) -> None:
    """Every seat left is held (server.booking.availability sets `exhausted`): the bucket admits
    nobody, fans see admission standing still, ops' explicit extra still goes through; when
    holds expire and the flag clears, admission resumes at the bucket's pace."""
    k = await opened(redis, scripts, "exhausted", rate_per_min=600, tick_ms=200)
    await redis.hset(k.cfg, "exhausted", 1)
    await fill(scripts, k, 10, SALE + 1)
    for now in range(SALE + 1000, SALE + 30_000, 200):
        snap = await scripts.admit(k, now_ms=now)
        assert snap.exhausted and snap.halted and not snap.paused
        assert snap.admitted == ()
    extra = await scripts.admit(k, extra=2, now_ms=SALE + 30_000)
    assert len(extra.admitted) == 2
    await redis.hset(k.cfg, "exhausted", 0)
    resumed = await scripts.admit(k, now_ms=SALE + 30_200)
    assert not resumed.exhausted and not resumed.halted
    assert len(resumed.admitted) == math.floor(rules.bucket_capacity(600, 200))


async def test_rate_zero_admits_nobody_but_ops_extra_still_works(
    redis: Redis, scripts: Scripts
) -> None:
    k = await opened(redis, scripts, "zero", rate_per_min=0, max_active=10)
    ids = await fill(scripts, k, 5, SALE + 1)
    for now in range(SALE + 1000, SALE + 120_000, 200):
        assert (await scripts.admit(k, now_ms=now)).admitted == ()
    burst = await scripts.admit(k, extra=2, now_ms=SALE + 120_000)
    assert [a.queue_id for a in burst.admitted] == ids[:2]
    assert (await scripts.admit(k, now_ms=SALE + 180_000)).admitted == ()
    await redis.hset(k.cfg, "rate_per_min", 600)
    # the bucket banked nothing while the rate was 0: only the 200 ms since count
    assert len((await scripts.admit(k, now_ms=SALE + 180_200)).admitted) == 2


async def test_admit_before_opening_and_extra(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("extra")
    await write_cfg(redis, k, rate_per_min=60, tick_ms=200, max_active=5)
    await fill(scripts, k, 3, PRE + 1, prefix="p")
    snap = await scripts.admit(k, now_ms=SALE - 1)
    assert (snap.found, snap.opened, snap.prequeue, snap.waiting, snap.admitted) == (
        True,
        False,
        3,
        0,
        (),
    )
    assert await scripts.open_sale(k, 1, now_ms=SALE) == 3
    await fill(scripts, k, 10, SALE + 1)
    first = await scripts.admit(k, now_ms=SALE + 2)
    assert len(first.admitted) == math.floor(rules.bucket_capacity(60, 200))
    # ops' extra admissions go beyond the bucket, never beyond max_active
    burst = await scripts.admit(k, extra=10, now_ms=SALE + 3)
    assert len(first.admitted) + len(burst.admitted) == 5
    assert burst.active == 5
    later = await scripts.admit(k, extra=10, now_ms=SALE + 4)
    assert later.admitted == ()
    assert (later.waiting, later.admitted_total) == (8, 5)


async def test_admit_snapshot_figures_and_news(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "figures", rate_per_min=6000, tick_ms=200)
    ids = await fill(scripts, k, 100, SALE + 1)
    pubsub = redis.pubsub()
    await pubsub.subscribe(k.channel)
    subscribed = await pubsub.get_message(timeout=5)
    assert subscribed is not None
    assert subscribed["type"] == "subscribe"
    snap = await scripts.admit(k, max_batch=3, now_ms=SALE + 1000)
    assert [a.queue_id for a in snap.admitted] == ids[:3]
    assert [a.visitor_id for a in snap.admitted] == ["v0", "v1", "v2"]
    assert (snap.serving, snap.admitted_total, snap.waiting, snap.active) == (3, 3, 97, 3)
    assert (snap.admitted_last_window, snap.window_ms, snap.now_ms) == (3, 1000, SALE + 1000)
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    news = json.loads(message["data"])
    assert news["type"] == "admitted"
    assert [e[0] for e in news["entries"]] == ids[:3]
    await pubsub.aclose()
    snap = await scripts.admit(k, now_ms=SALE + 61_001)  # the first batch left the window
    assert (snap.admitted_last_window, snap.window_ms) == (len(snap.admitted), 60_000)
    assert len(snap.admitted) == math.floor(rules.bucket_capacity(6000, 200))
    assert snap.admitted_total == 3 + len(snap.admitted)


# ---- reap and leave --------------------------------------------------------------------------


async def test_reap_steps_the_silent_out_of_the_line(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("reap")
    await write_cfg(redis, k, rate_per_min=0)
    quiet_pre = await join(scripts, k, "quiet-pre", SALE - 600_000)
    loud_pre = await join(scripts, k, "loud-pre", SALE - 600_000)
    assert await scripts.open_sale(k, 3, now_ms=SALE) == 2
    quiet = await join(scripts, k, "quiet", SALE)
    loud = await join(scripts, k, "loud", SALE)
    edge = await join(scripts, k, "edge", SALE + 1)
    now = SALE + GRACE + 1
    await scripts.status(k, loud.queue_id, touch=True, now_ms=now - 10)
    await scripts.status(k, loud_pre.queue_id, touch=True, now_ms=now - 10)
    # quiet ones last seen GRACE + 1 ago (too long): out of the line, not dropped; edge exactly
    # GRACE ago (kept in line)
    assert await scripts.reap(k, GRACE, now_ms=now) == Reaped(gone=0, stepped_away=2)
    for place in (quiet, quiet_pre):
        assert (await scripts.status(k, place.queue_id, now_ms=now)).state == "away"
    for place in (loud, loud_pre, edge):
        assert (await scripts.status(k, place.queue_id, now_ms=now)).state == "waiting"
    assert await text(redis, k.stats, "expired") is None
    assert await scripts.reap(k, GRACE, now_ms=now) == Reaped(0, 0)
    assert await redis.zcard(k.line) == 3
    back = await scripts.join(k, "quiet", qid(k, "quiet-2"), now_ms=now)
    assert (back.state, back.queue_id, back.ticket) == ("waiting", quiet.queue_id, 3)
    assert back.rank == 1  # behind loud_pre (tickets 1 and 2 went to the pre-queue)


async def test_reap_keeps_the_silent_prequeue_for_the_window(
    redis: Redis, scripts: Scripts
) -> None:
    k = EventKeys("reaplimit")
    await write_cfg(redis, k)
    await fill(scripts, k, 25, PRE + 1)
    # no turn can pass anyone before the shuffle: silent past the grace, still in
    assert await scripts.reap(k, GRACE, limit=10, now_ms=PRE + GRACE + 2) == Reaped(0, 0)
    assert await redis.zcard(k.pre) == 25
    past = PRE + 1 + scripts.return_window_ms + 1
    assert await scripts.reap(k, GRACE, limit=10, now_ms=past) == Reaped(10, 0)
    assert await redis.zcard(k.pre) == 15
    assert await scripts.reap(k, GRACE, limit=10, now_ms=past) == Reaped(10, 0)
    assert await scripts.reap(k, GRACE, limit=10, now_ms=past) == Reaped(5, 0)
    assert await redis.zcard(k.pre) == 0
    assert await redis.zcard(k.seen) == 0
    assert await text(redis, k.stats, "expired") == "25"


async def test_reap_never_touches_admitted(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "reapadm", session_ms=3_600_000)
    admitted = await join(scripts, k, "a", SALE + 1)
    assert len((await scripts.admit(k, now_ms=SALE + 2)).admitted) == 1
    assert await scripts.reap(k, GRACE, now_ms=SALE + 10 * GRACE) == Reaped(0, 0)
    assert (await scripts.status(k, admitted.queue_id, now_ms=SALE + 10 * GRACE)).state == (
        "admitted"
    )


async def test_leave_frees_the_place(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "leave", rate_per_min=0)
    first = await join(scripts, k, "alice", SALE + 1)
    second = await join(scripts, k, "bob", SALE + 2)
    assert await scripts.leave(k, first.queue_id)
    assert not await scripts.leave(k, first.queue_id)
    assert (await scripts.status(k, first.queue_id, now_ms=SALE + 3)).state == "expired"
    assert (await scripts.status(k, second.queue_id, now_ms=SALE + 3)).rank == 0
    assert await redis.zscore(k.seen, first.queue_id) is None
    assert await text(redis, k.stats, "left") == "1"
    again = await scripts.join(k, "alice", qid(k, "alice-2"), now_ms=SALE + 4)
    assert (again.state, again.queue_id, again.ticket, again.rank) == (
        "waiting",
        qid(k, "alice-2"),
        3,
        1,
    )
    # leaving an old queue id never disturbs the visitor's new place
    assert not await scripts.leave(k, first.queue_id)
    assert (await scripts.join(k, "alice", qid(k, "x"), now_ms=SALE + 5)).queue_id == qid(
        k, "alice-2"
    )


async def test_leave_prequeue_and_admitted_session(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("leave2")
    await write_cfg(redis, k, max_active=1, session_ms=3_600_000)
    pre = await join(scripts, k, "pre", PRE + 1)
    assert await scripts.leave(k, pre.queue_id)
    assert await redis.zcard(k.pre) == 0
    assert await scripts.open_sale(k, 1, now_ms=SALE) == 0
    a = await join(scripts, k, "a", SALE + 1)
    b = await join(scripts, k, "b", SALE + 2)
    assert [x.queue_id for x in (await scripts.admit(k, now_ms=SALE + 3)).admitted] == [a.queue_id]
    assert (await scripts.admit(k, now_ms=SALE + 60_000)).admitted == ()  # max_active 1
    assert await scripts.leave(k, a.queue_id, "sessions_ended")
    assert await text(redis, k.stats, "sessions_ended") == "1"
    assert [x.queue_id for x in (await scripts.admit(k, now_ms=SALE + 60_001)).admitted] == [
        b.queue_id
    ]


async def test_expired_session_rejoins_as_a_new_place(redis: Redis, scripts: Scripts) -> None:
    k = await opened(redis, scripts, "rejoin", session_ms=5_000)
    a = await join(scripts, k, "a", SALE + 1)
    await scripts.admit(k, now_ms=SALE + 2)
    assert (await join(scripts, k, "a", SALE + 5_001)).state == "admitted"
    back = await scripts.join(k, "a", qid(k, "a-2"), now_ms=SALE + 5_002)
    assert (back.state, back.queue_id, back.ticket) == ("waiting", qid(k, "a-2"), 2)
    assert a.queue_id != back.queue_id


# ---- script cache ----------------------------------------------------------------------------


async def exercise_all(redis: Redis, s: Scripts, event_id: str) -> None:
    """Every script once on a fresh event, with a check on each answer."""
    k = EventKeys(event_id)
    await write_cfg(redis, k, max_active=1)
    pre = await join(s, k, "pre", PRE + 1)
    assert pre.state == "prequeue"
    assert (await s.status(k, pre.queue_id, now_ms=PRE + 2)).state == "prequeue"
    assert await s.open_sale(k, 1, now_ms=SALE) == 1
    waiting = await join(s, k, "w", SALE + 1)
    assert (waiting.state, waiting.ticket) == ("waiting", 2)
    snap = await s.admit(k, now_ms=SALE + 2)
    assert [a.queue_id for a in snap.admitted] == [pre.queue_id]
    assert await s.leave(k, waiting.queue_id)
    assert await s.reap(k, GRACE, now_ms=SALE + 3) == Reaped(0, 0)


async def test_scripts_survive_script_flush(redis: Redis, scripts: Scripts) -> None:
    await exercise_all(redis, scripts, "flush-a")
    await redis.script_flush()
    await exercise_all(redis, scripts, "flush-b")
    k = EventKeys("flush-c")
    await write_cfg(redis, k)
    assert await scripts.open_sale(k, 1, now_ms=SALE) == 0
    await redis.script_flush()
    # several joins in one loop turn travel in one pipeline; each gets NOSCRIPT and recovers
    places = await asyncio.gather(*(join(scripts, k, f"c{i}", SALE + 1) for i in range(20)))
    assert sorted(p.ticket for p in places) == list(range(1, 21))
    for name in ("status", "leave", "reap", "open_sale", "admit", "join"):
        await redis.script_flush()
        # each wrapper alone must reload its own script
        if name == "join":
            assert (await join(scripts, k, "late", SALE + 10)).ticket == 21
        elif name == "status":
            assert (await scripts.status(k, qid(k, "c0"), now_ms=SALE + 11)).state == "waiting"
        elif name == "leave":
            assert await scripts.leave(k, qid(k, "c0"))
        elif name == "reap":
            assert await scripts.reap(k, GRACE, now_ms=SALE + 12) == Reaped(0, 0)
        elif name == "open_sale":
            assert await scripts.open_sale(k, 1, now_ms=SALE + 13) == -1
        else:
            admitted = (await scripts.admit(k, now_ms=SALE + 14)).admitted
            assert len(admitted) == math.floor(rules.bucket_capacity(600, 200))
    assert await redis.script_exists(scripts._s["join"].sha) == [True]


async def test_scripts_use_redis_time_by_default(redis: Redis, scripts: Scripts) -> None:
    k = EventKeys("clock")
    await write_cfg(redis, k, sale_starts_ms=0, prequeue_opens_ms=0)
    seconds, micros = await redis.time()
    before = seconds * 1000 + micros // 1000
    assert await scripts.open_sale(k, 1) == 0
    opened_ms = int(await text(redis, k.cfg, "opened_ms") or 0)
    assert opened_ms >= before
    place = await scripts.join(k, "v", qid(k, "v"))
    assert place.state == "waiting"
    assert int(await redis.zscore(k.seen, place.queue_id) or 0) >= opened_ms
    snap = await scripts.admit(k)
    assert snap.now_ms >= opened_ms
    assert [a.queue_id for a in snap.admitted] == [place.queue_id]
    assert (await scripts.status(k, place.queue_id)).state == "admitted"
    assert await scripts.reap(k, GRACE) == Reaped(0, 0)


# ---- the pre-queue shuffle -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 2])
async def test_open_sale_tiny_prequeues(redis: Redis, scripts: Scripts, size: int) -> None:
    k = EventKeys(f"tiny{size}")
    await write_cfg(redis, k)
    ids = await fill(scripts, k, size, PRE)
    assert await scripts.open_sale(k, 77, now_ms=SALE) == size
    assert sorted(await members(redis, k.line)) == sorted(ids)
    assert [t for _, t in await scored(redis, k.line)] == list(range(1, size + 1))
    assert (await join(scripts, k, "after", SALE + 1)).ticket == size + 1


SHUFFLE_RUNS = 3000
SHUFFLE_SIZE = 5
# chi-square critical values at p = 0.001
CHI2_CRIT_DF4 = 18.467  # one visitor's position: 5 cells, 4 degrees of freedom
CHI2_CRIT_DF16 = 39.252  # the whole visitor x position table: (5 - 1) * (5 - 1)
CHI2_CRIT_DF119 = 172.418  # all 120 orders


def chi_square(observed: list[int], expected: float) -> float:
    return sum((o - expected) ** 2 / expected for o in observed)


async def test_prequeue_shuffle_is_uniform(redis: Redis, scripts: Scripts) -> None:
    seeds = random.Random(20240601)
    positions = [[0] * SHUFFLE_SIZE for _ in range(SHUFFLE_SIZE)]  # [visitor][position]
    orders: Counter[tuple[int, ...]] = Counter()
    for run in range(SHUFFLE_RUNS):
        k = EventKeys(f"shuffle-{run}")
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hset(k.cfg, mapping=cfg_mapping())  # type: ignore[arg-type]
            pipe.zadd(k.pre, {f"v{i}": PRE + i for i in range(SHUFFLE_SIZE)})
            await pipe.execute()
        assert await scripts.open_sale(k, seeds.randrange(2**31), now_ms=SALE) == SHUFFLE_SIZE
        order = tuple(int(q[1:]) for q in await members(redis, k.line))
        assert sorted(order) == list(range(SHUFFLE_SIZE))
        orders[order] += 1
        for position, visitor in enumerate(order):
            positions[visitor][position] += 1
    expected = SHUFFLE_RUNS / SHUFFLE_SIZE
    for visitor, row in enumerate(positions):
        assert chi_square(row, expected) < CHI2_CRIT_DF4, (visitor, row)
    table = [cell for row in positions for cell in row]
    assert chi_square(table, expected) < CHI2_CRIT_DF16, positions
    assert len(orders) == math.factorial(SHUFFLE_SIZE)
    every = [orders[o] for o in orders]
    assert chi_square(every, SHUFFLE_RUNS / len(every)) < CHI2_CRIT_DF119, orders
