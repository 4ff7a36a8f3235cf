"""The autopilot: its pure control rule (table-driven), a simulation with a synthetic crowd that
shows convergence without oscillation, and the runner against real Redis and PostgreSQL
(decisions audited, one leader at a time, pausing when not ready)."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import deque
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.core.keys import AUTOPILOT_LOCK as LOCK_KEY
from server.core.settings import Settings
from server.ops.autopilot import (
    AUTOPILOT,
    HISTORY_S,
    AutopilotConfig,
    Decision,
    Observation,
    decide,
    departures_per_min,
    max_step,
)
from server.runtime.app import create_app

from .helpers import ADMIN, create_event, eventually
from .test_console import audit_rows, join_many

Client = TestClient[Any, Any]
# The simulated bucket admits exactly the configured rate on average (whole visitors, fractions
# carried over). admit.lua's bucket caps its tokens at max(1, rate * tick / 60000) and so drops
# the fraction: with one process stepping every 200 ms any rate from 300 to 599 per minute admits
# 300 (reported separately); no rate controller can steer finer than its actuator.
TICK_MS = 200
CFG = AutopilotConfig(enabled=True, target_fraction=0.9, min_rate=0, max_rate=6000,
                      max_step_fraction=0.25, horizon_seconds=60)  # fmt: skip


def obs(**kw: Any) -> Observation:
    base: dict[str, Any] = {"rate_per_min": 300, "active": 900, "max_active": 1000,
                            "waiting": 5000, "departures_per_min": 300.0}  # fmt: skip
    base.update(kw)
    return Observation(**base)


# ---- the rule, table-driven -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cfg", "observation", "rate", "pause"),
    [
        ("on target: no change", CFG, obs(), 300, None),
        ("below target: up by the gap over the horizon", CFG, obs(active=850), 350, None),
        ("above target: down", CFG, obs(active=950), 250, None),
        (
            "big gap: one step at most (25% of max(rate, max_rate/10))",
            CFG,
            obs(active=0, rate_per_min=100, departures_per_min=0.0),
            250,
            None,
        ),
        (
            "big rate: the step is 25% of it",
            CFG,
            obs(active=0, rate_per_min=1000, departures_per_min=1000.0),
            1250,
            None,
        ),
        (
            "from zero the step is a share of a tenth of the ceiling",
            CFG,
            obs(active=0, rate_per_min=0, departures_per_min=None),
            150,
            None,
        ),
        (
            "never above max_rate",
            AutopilotConfig(enabled=True, max_rate=320),
            obs(active=500),
            320,
            None,
        ),
        (
            "never below min_rate",
            AutopilotConfig(enabled=True, min_rate=200),
            obs(active=1000, departures_per_min=0.0),
            200,
            None,
        ),
        (
            "min_rate reached",
            AutopilotConfig(enabled=True, min_rate=290),
            obs(active=1000, departures_per_min=0.0),
            290,
            None,
        ),
        ("dead band: a 1% move is not made", CFG, obs(active=897), 300, None),
        ("nobody waiting: no increase", CFG, obs(active=100, waiting=0), 300, None),
        ("nobody waiting: decreases still happen", CFG, obs(active=990, waiting=0), 210, None),
        ("not ready: pause", CFG, obs(ready=False), 300, True),
        ("not ready and already paused: nothing", CFG, obs(ready=False, paused=True), 300, None),
        (
            "ready again after our pause: resume",
            CFG,
            obs(paused=True, paused_by_autopilot=True),
            300,
            False,
        ),
        ("paused by an operator: hands off", CFG, obs(paused=True, active=0), 300, None),
    ],
)
def test_decide(
    name: str, cfg: AutopilotConfig, observation: Observation, rate: int, pause: bool | None
) -> None:
    decision = decide(cfg, observation)
    assert (decision.rate_per_min, decision.pause) == (rate, pause), (name, decision)


@pytest.mark.parametrize(
    ("rate", "cfg", "step"),
    [
        (0, CFG, 150),
        (1000, CFG, 250),
        (10, AutopilotConfig(max_rate=10, max_step_fraction=0.1), 1),
        (400, AutopilotConfig(max_rate=100, max_step_fraction=1.0), 400),
    ],
)
def test_max_step(rate: int, cfg: AutopilotConfig, step: int) -> None:
    assert max_step(cfg, rate) == step


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], None),
        ([(0.0, 10, 10)], None),
        ([(5.0, 10, 10), (5.0, 20, 20)], None),  # no time passed
        ([(0.0, 0, 0), (60.0, 100, 100)], 0.0),  # everyone admitted is still active
        ([(0.0, 100, 50), (30.0, 200, 100)], 100.0),  # 100 in, active +50: 50 left in 30 s
        ([(0.0, 100, 80), (60.0, 100, 20)], 60.0),  # nobody in, 60 sessions ended
        ([(0.0, 0, 0), (10.0, 5, 0), (20.0, 10, 10)], 0.0),
        ([(0.0, 0, 0), (60.0, 0, 5)], 0.0),  # never negative
    ],
)
def test_departures_per_min(history: list[tuple[float, int, int]], expected: float | None) -> None:
    assert departures_per_min(history) == expected


# ---- simulation with a synthetic crowd ------------------------------------------------------------


def simulate(
    cfg: AutopilotConfig,
    max_active: int = 1000,
    crowd: int = 200_000,
    seconds: int = 1800,
    session: tuple[int, int] = (60, 300),
    start_rate: int = 60,
    every: int = 5,
    seed: int = 7,
) -> list[tuple[int, int, int, int]]:
    """One-second steps, each of five admission steps: a token bucket admits at the configured
    rate (never beyond max_active or the line); each fan stays a random time in `session` (buys or gives up); every `every`
    seconds the autopilot observes and decides, as the runner does. Trace: (t, rate, active,
    waiting)."""
    rng = random.Random(seed)
    rate, tokens, waiting, active, admitted = start_rate, 0.0, crowd, 0, 0
    leaving: dict[int, int] = {}
    history: deque[tuple[float, int, int]] = deque()
    trace = []
    for t in range(seconds):
        active -= leaving.pop(t, 0)
        for _ in range(1000 // TICK_MS):  # admission steps, as admit.lua makes them
            per_tick = rate * TICK_MS / 60000
            tokens = min(tokens + per_tick, max(1.0, per_tick) + 1.0)
            n = max(0, min(int(tokens), max_active - active, waiting))
            tokens -= n
            for _ in range(n):
                end = t + rng.randint(*session)
                leaving[end] = leaving.get(end, 0) + 1
            active, admitted, waiting = active + n, admitted + n, waiting - n
        assert active <= max_active
        if t % every == 0:
            history.append((float(t), admitted, active))
            while history and t - history[0][0] > HISTORY_S:
                history.popleft()
            o = Observation(rate_per_min=rate, active=active, max_active=max_active,
                            waiting=waiting, departures_per_min=departures_per_min(list(history)))  # fmt: skip
            rate = decide(cfg, o).rate_per_min
        trace.append((t, rate, active, waiting))
    return trace


@pytest.mark.parametrize("seed", [1, 7, 42])
@pytest.mark.parametrize(
    ("max_active", "session", "band"),
    [(1000, (60, 300), 0.08), (200, (30, 120), 0.12)],  # fewer sessions: more relative noise
)
def test_simulation_converges_without_oscillation(
    seed: int, max_active: int, session: tuple[int, int], band: float
) -> None:
    target = CFG.target_fraction * max_active
    trace = simulate(CFG, max_active=max_active, session=session, seed=seed)
    actives = [a for _, _, a, _ in trace]
    # Overshoot while climbing stays small (and max_active is never passed: asserted inside).
    assert max(actives) <= target * 1.10, max(actives)
    # Settled after ten minutes: within the band at every second, on target on average.
    settled = trace[600:]
    actives = [a for _, _, a, _ in settled]
    assert min(actives) >= target * (1 - band) and max(actives) <= target * (1 + band)
    assert abs(statistics.mean(actives) - target) <= target * 0.02
    # No oscillation: the rate holds steady around the turnover (sessions / mean session).
    rates = [r for _, r, _, _ in settled]
    mean_rate = statistics.mean(rates)
    turnover = target * 60 / statistics.mean(session)
    assert abs(mean_rate - turnover) <= turnover * 0.1, (mean_rate, turnover)
    assert statistics.pstdev(rates) <= 0.12 * mean_rate
    # Active does not swing: its 30-second means stay within the band's width.
    means = [statistics.mean(actives[i : i + 30]) for i in range(0, len(actives) - 30, 30)]
    assert max(means) - min(means) <= target * band


def test_simulation_gradual_steps_and_no_windup_when_the_crowd_runs_out() -> None:
    trace = simulate(CFG, crowd=3000, seconds=1200)
    rates = [r for _, r, _, _ in trace]
    for before, after in itertools.pairwise(rates):
        assert abs(after - before) <= max_step(CFG, before)
    emptied = next(t for t, _, _, w in trace if w == 0)
    after_empty = [r for t, r, _, _ in trace if t > emptied]
    # With nobody left to admit the rate never climbs: no wind-up for the next wave.
    assert after_empty and max(after_empty) <= rates[emptied]


# ---- the runner against real Redis and PostgreSQL -----------------------------------------------


async def enable(client: Client, event_id: str, **settings: Any) -> dict[str, Any]:
    response = await client.patch(
        f"/api/admin/events/{event_id}/autopilot", json={"enabled": True, **settings}, headers=ADMIN
    )
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_autopilot_config_is_validated_and_audited(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    url = f"/api/admin/events/{ev['id']}/autopilot"
    off = await (await client.get(url, headers=ADMIN)).json()
    assert off["config"]["enabled"] is False  # off by default
    for bad, field in (
        ({"target_fraction": 1.5}, "target_fraction: Target fraction must be more than 0"),
        ({"min_rate": -1}, "min_rate:"),
        ({"bogus": 1}, "bogus"),
        ({"min_rate": 500, "max_rate": 100}, "max_rate:"),
    ):
        response = await client.patch(url, json=bad, headers=ADMIN)
        assert response.status == 422, bad
        assert field in (await response.json())["detail"]
    on = await enable(client, ev["id"], max_rate=900, target_fraction=0.8)
    assert on["config"] == {"enabled": True, "target_fraction": 0.8, "min_rate": 0,
                            "max_rate": 900, "max_step_fraction": 0.25, "horizon_seconds": 60}  # fmt: skip
    rows = await audit_rows(client, ev["id"])
    fields = {r["field"]: (r["old"], r["new"]) for r in rows if r["action"] == "autopilot_config"}
    assert fields == {
        "autopilot.enabled": (False, True),
        "autopilot.max_rate": (6000, 900),
        "autopilot.target_fraction": (0.9, 0.8),
    }


async def test_autopilot_steers_audits_and_pauses_when_not_ready(
    aiohttp_client: Any, settings: Settings, client: Client, redis: Any
) -> None:
    other: Client = await aiohttp_client(create_app(settings))
    pilots = [client.app[AUTOPILOT], other.app[AUTOPILOT]]
    for pilot in pilots:
        pilot.interval_s = 0.2
    ev = await create_event(client, rate_per_min=0, max_active=10)
    event_id = ev["id"]
    await join_many(client, event_id, 40)
    await enable(client, event_id, max_rate=600, min_rate=0)

    async def steered() -> list[dict[str, Any]]:
        rows = await audit_rows(client, event_id)
        return [r for r in rows if r["who"] == "autopilot" and r["field"] == "rate_per_min"]

    decisions = await eventually(steered, within=10, every=0.1)
    assert decisions[-1]["old"] == 0 and decisions[-1]["new"] > 0
    assert decisions[-1]["note"]
    # One leader at a time, whichever process it is.
    assert sum(p.leader for p in pilots) == 1
    leader = next(p for p in pilots if p.leader)
    assert (await redis.get(LOCK_KEY)).decode() == leader.instance

    async def active_sessions() -> int:
        stats = await (
            await client.get(f"/api/admin/events/{event_id}/stats", headers=ADMIN)
        ).json()
        assert stats["active"] <= 10
        return int(stats["active"])

    await eventually(active_sessions, within=10, every=0.1)

    # Readiness fails (PostgreSQL unreachable, as the leader sees it): admission pauses.
    real_ready = leader.ready

    async def not_ready() -> bool:
        return False

    leader.ready = not_ready

    async def paused_in_redis() -> bool:
        return bool(await redis.hget(f"bo:{{ev:{event_id}}}:cfg", "paused") == b"1")

    await eventually(paused_in_redis, within=10, every=0.1)
    decision = leader.seen[event_id].last
    assert isinstance(decision, Decision)
    leader.ready = real_ready

    async def resumed() -> list[dict[str, Any]]:
        rows = await audit_rows(client, event_id)
        return [r for r in rows if r["who"] == "autopilot" and r["field"] == "paused"]

    rows = await eventually(resumed, within=10, every=0.1)
    assert [(r["old"], r["new"]) for r in rows] == [(True, False), (False, True)]
    # The audit row commits with the change; the Redis mirror follows right after the commit.

    async def unpaused_in_redis() -> bool:
        return bool(await redis.hget(f"bo:{{ev:{event_id}}}:cfg", "paused") == b"0")

    assert await eventually(unpaused_in_redis, within=10, every=0.05)
