"""Admission-rate planning for ops: the ETA preview and the autopilot.

The top half is pure (no I/O, table-tested in tests/test_autopilot.py): how long the last fan in
line waits at a rate, what rate clears the line by a time, and the autopilot's control rule.
The bottom half runs the rule: one background loop per process, but only the process holding a
Redis lock (with expiry) acts, so exactly one autopilot steers each event at any time.

The control rule keeps admitted sessions alive (`active`) near `target_fraction * max_active`.
By Little's law the rate that holds `active` steady is the rate at which sessions end
(departures); the rule admits that many plus the gap to the target spread over a horizon:

    desired = departures_per_min + (target - active) * 60 / horizon_seconds

which makes `active` approach the target like a first-order system (time constant = horizon,
no overshoot when departures are measured well). Each decision moves the rate by at most
`max_step_fraction` and stays within the operator's [min_rate, max_rate]; small moves are not
made at all (dead band), so the rate does not dither. When the service is not ready (PostgreSQL
unreachable), the autopilot pauses admission: fans let in could not buy; when it is ready again
the autopilot resumes only what it paused itself."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, Struct, UnsetType

from server.core import rules
from server.core.clock import now_ms, to_ms
from server.core.keys import AUTOPILOT_LOCK, EventKeys
from server.core.loops import Loop
from server.core.messages import EventPatch, RatePerMin
from server.store import audit, db, lua
from server.store.lua import AnyRedis
from server.waiting.room import Room

log = logging.getLogger("boxoffice.autopilot")

# ---- ETA preview (pure) ---------------------------------------------------------------------------


class EtaPreview(Struct, frozen=True):
    event_id: str
    in_line: int  # waiting + pre-queue: the last fan is behind all of them
    paused: bool
    configured_rate_per_min: int
    measured_rate_per_min: float | None
    sale_starts_in_seconds: int
    last_fan_wait_seconds_measured: int | None  # None: unknown (paused, nothing measured, 0)
    last_fan_wait_seconds_configured: int | None
    clear_by: datetime | None = None
    seconds_until_clear_by: int | None = None
    # None: no clear_by, nobody in line (no rate to propose: never 0), or clear_by before the
    # sale starts (no rate can)
    rate_to_clear: int | None = None
    configured_rate_clears_in_time: bool | None = None


def last_fan_wait(
    in_line: int, rate_per_min: float | None, paused: bool, starts_in_s: int = 0
) -> int | None:
    """Seconds the last fan in line waits at this rate (0 when nobody waits)."""
    if in_line <= 0:
        return max(0, starts_in_s)
    eta = rules.eta_seconds(in_line, rate_per_min, paused)
    return None if eta is None else max(0, starts_in_s) + eta


def clearing_rate(in_line: int, seconds_until: int, starts_in_s: int = 0) -> int | None:
    """Admissions per minute that admit everyone in line by a time `seconds_until` from now;
    None if nobody is in line (there is nothing to clear, so no rate to propose — 0 would stop
    admission for the fans still to come) or that time comes before the sale starts (no rate
    can do it)."""
    window = seconds_until - max(0, starts_in_s)
    if in_line <= 0:
        return None
    if window <= 0:
        return None
    return rules.rate_to_clear(in_line, window)


def eta_preview(
    event_id: str,
    waiting: int,
    prequeue: int,
    configured: int,
    measured: float | None,
    paused: bool,
    starts_in_s: int,
    clear_by: datetime | None = None,
    seconds_until: int | None = None,
) -> EtaPreview:
    in_line = waiting + prequeue
    at_configured = last_fan_wait(in_line, configured, paused, starts_in_s)
    needed = None if seconds_until is None else clearing_rate(in_line, seconds_until, starts_in_s)
    in_time = None
    if seconds_until is not None:
        in_time = at_configured is not None and at_configured <= seconds_until
    return EtaPreview(
        event_id=event_id,
        in_line=in_line,
        paused=paused,
        configured_rate_per_min=configured,
        measured_rate_per_min=measured,
        sale_starts_in_seconds=max(0, starts_in_s),
        last_fan_wait_seconds_measured=last_fan_wait(in_line, measured, paused, starts_in_s),
        last_fan_wait_seconds_configured=at_configured,
        clear_by=clear_by,
        seconds_until_clear_by=seconds_until,
        rate_to_clear=needed,
        configured_rate_clears_in_time=in_time,
    )


# ---- the control rule (pure) ----------------------------------------------------------------------

Fraction = Annotated[float, Meta(gt=0, le=1)]
Horizon = Annotated[int, Meta(ge=5, le=3600)]


class AutopilotConfig(Struct, frozen=True, kw_only=True):
    enabled: bool = False
    target_fraction: float = 0.9
    min_rate: int = 0
    max_rate: int = 6000
    max_step_fraction: float = 0.25
    horizon_seconds: int = 60


class AutopilotPatch(Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool | UnsetType = UNSET
    target_fraction: Fraction | UnsetType = UNSET
    min_rate: RatePerMin | UnsetType = UNSET
    max_rate: RatePerMin | UnsetType = UNSET
    max_step_fraction: Fraction | UnsetType = UNSET
    horizon_seconds: Horizon | UnsetType = UNSET


class Observation(Struct, frozen=True, kw_only=True):
    rate_per_min: int  # configured now
    active: int
    max_active: int
    waiting: int
    departures_per_min: float | None  # sessions ending per minute, measured; None: unknown
    ready: bool = True
    paused: bool = False
    paused_by_autopilot: bool = False


class Decision(Struct, frozen=True):
    rate_per_min: int
    pause: bool | None = None  # True: pause now, False: resume, None: leave as is
    reason: str = ""

    def changes(self, obs: Observation) -> bool:
        return self.rate_per_min != obs.rate_per_min or self.pause is not None


def max_step(cfg: AutopilotConfig, rate: int) -> int:
    """Largest move of one decision: a fraction of the current rate, never less than that
    fraction of a tenth of the ceiling (so the rate can climb from zero)."""
    return max(1, math.ceil(max(rate, cfg.max_rate / 10) * cfg.max_step_fraction))


def decide(cfg: AutopilotConfig, obs: Observation) -> Decision:
    rate = obs.rate_per_min
    if not obs.ready:
        if obs.paused:
            return Decision(rate, None, "not ready; admission already paused")
        return Decision(rate, True, "not ready: pausing admission")
    if obs.paused and obs.paused_by_autopilot:
        return Decision(rate, False, "ready again: resuming admission")
    if obs.paused:
        return Decision(rate, None, "paused by an operator: no change")
    target = cfg.target_fraction * obs.max_active
    departures = obs.departures_per_min or 0.0
    desired = departures + (target - obs.active) * 60 / cfg.horizon_seconds
    if obs.waiting <= 0 and desired > rate:
        return Decision(rate, None, "nobody waiting: no increase")
    step = max_step(cfg, rate)
    new = min(max(desired, rate - step), rate + step)
    new = min(max(new, cfg.min_rate), cfg.max_rate)
    new_rate = round(new)
    if new_rate != rate and abs(new_rate - rate) < max(1.0, 0.02 * rate):
        return Decision(rate, None, "within the dead band")
    if new_rate == rate:
        return Decision(rate, None, "on target")
    return Decision(
        new_rate,
        None,
        f"active {obs.active} vs target {round(target)}, departures {departures:.0f}/min",
    )


def departures_per_min(history: list[tuple[float, int, int]]) -> float | None:
    """Sessions ended per minute over a history of (seconds, admitted_total, active): whatever
    was admitted and is no longer active has left. None with under two samples or no time."""
    if len(history) < 2:
        return None
    (t0, admitted0, active0), (t1, admitted1, active1) = history[0], history[-1]
    if t1 - t0 <= 0:
        return None
    ended = (admitted1 - admitted0) - (active1 - active0)
    return max(0.0, ended * 60 / (t1 - t0))


# ---- storage ------------------------------------------------------------------------------------

CONFIG_COLUMNS = "enabled, target_fraction, min_rate, max_rate, max_step_fraction, horizon_seconds"


async def load(pool: asyncpg.Pool, event_id: str) -> tuple[AutopilotConfig, bool]:
    row = await pool.fetchrow(
        f"SELECT {CONFIG_COLUMNS}, paused_by_autopilot FROM autopilot WHERE event_id = $1",
        event_id,
    )
    if row is None:
        return AutopilotConfig(), False
    data = dict(row)
    paused_by_me = bool(data.pop("paused_by_autopilot"))
    return msgspec.convert(data, AutopilotConfig), paused_by_me


async def configure(
    pool: asyncpg.Pool, event_id: str, patch: AutopilotPatch, who: str, step_up: bool = False
) -> AutopilotConfig:
    """Upsert an event's autopilot settings and audit the change in one transaction."""
    from server.core.errors import Invalid

    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {CONFIG_COLUMNS} FROM autopilot WHERE event_id = $1 FOR UPDATE", event_id
        )
        old = AutopilotConfig() if row is None else msgspec.convert(dict(row), AutopilotConfig)
        changes = {
            f: v for f in AutopilotPatch.__struct_fields__ if (v := getattr(patch, f)) is not UNSET
        }
        new = msgspec.structs.replace(old, **changes)
        if new.min_rate > new.max_rate:
            raise Invalid("max_rate: must be at least min_rate", code="invalid")
        await conn.execute(
            f"INSERT INTO autopilot (event_id, {CONFIG_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7)"
            " ON CONFLICT (event_id) DO UPDATE SET enabled = $2, target_fraction = $3,"
            " min_rate = $4, max_rate = $5, max_step_fraction = $6, horizon_seconds = $7,"
            " updated_at = now()",
            event_id, new.enabled, new.target_fraction, new.min_rate, new.max_rate,
            new.max_step_fraction, new.horizon_seconds,
        )  # fmt: skip
        before, after = msgspec.structs.asdict(old), msgspec.structs.asdict(new)
        diff = {f"autopilot.{f}": d for f, d in audit.diff(before, after).items()}
        await audit.record(conn, event_id, who, "autopilot_config", diff, step_up=step_up)
    return new


async def _set_paused_by_me(pool: asyncpg.Pool | Any, event_id: str, value: bool) -> None:
    await pool.execute(
        "UPDATE autopilot SET paused_by_autopilot = $2 WHERE event_id = $1", event_id, value
    )


# ---- the runner ---------------------------------------------------------------------------------

HISTORY_S = 60.0  # departures measured over a minute: steadier than shorter windows


@dataclass
class _Seen:
    history: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=64))
    config: AutopilotConfig = field(default_factory=AutopilotConfig)
    paused_by_me: bool = False
    pending: list[tuple[str, dict[str, tuple[Any, Any]], str]] = field(default_factory=list)
    last: Decision | None = None


class Autopilot:
    """Steers every event whose autopilot is on, from whichever process holds the lock."""

    def __init__(self, room: Room, interval_s: float = 5.0) -> None:
        self.room = room
        self.redis: AnyRedis = room.redis
        self.pool = room.pool
        self.interval_s = interval_s
        self.instance = secrets.token_hex(8)
        self.seen: dict[str, _Seen] = {}
        self.leader = False
        self._renew = lua.register(self.redis, "autopilot_lock")["autopilot_lock"]

    def loops(self) -> list[Loop]:
        return [("autopilot", self.step)]

    async def hold_lock(self) -> bool:
        ttl_ms = int(max(3.0, self.interval_s * 3) * 1000)
        self.leader = bool(await self._renew(keys=[AUTOPILOT_LOCK], args=[self.instance, ttl_ms]))
        return self.leader

    async def release(self) -> None:
        if self.leader:
            if (await self.redis.get(AUTOPILOT_LOCK)) == self.instance.encode():
                await self.redis.delete(AUTOPILOT_LOCK)
            self.leader = False

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(db.ping(self.pool), timeout=2)
        except Exception:
            return False
        return True

    async def step(self) -> float:
        if not await self.hold_lock():
            return self.interval_s
        ready = await self.ready()
        if ready:
            rows = await self.pool.fetch(
                f"SELECT event_id, {CONFIG_COLUMNS}, paused_by_autopilot FROM autopilot"
                " WHERE enabled OR paused_by_autopilot"
            )
            wanted = set()
            for r in rows:
                data = dict(r)
                event_id = data.pop("event_id")
                seen = self.seen.setdefault(event_id, _Seen())
                seen.paused_by_me = bool(data.pop("paused_by_autopilot"))
                seen.config = msgspec.convert(data, AutopilotConfig)
                wanted.add(event_id)
            for gone in set(self.seen) - wanted:
                del self.seen[gone]
        for event_id, seen in list(self.seen.items()):
            try:
                await self.steer(event_id, seen, ready)
            except Exception as exc:
                log.warning("autopilot step failed", extra={"event": event_id, "error": str(exc)})
        return self.interval_s

    async def observe(self, event_id: str) -> tuple[int, int, int, int, bool, int]:
        """(rate, max_active, active, waiting, paused, admitted_total) live from Redis."""
        k = EventKeys(event_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(k.cfg, ["rate_per_min", "max_active", "paused"])
            pipe.zcount(k.active, f"({now_ms()}", "+inf")
            pipe.zcard(k.line)
            pipe.hget(k.stats, "admitted")
            cfg, active, waiting, admitted = await pipe.execute()
        rate, max_active, paused = (int(v or 0) for v in cfg)
        return rate, max_active, int(active), int(waiting), bool(paused), int(admitted or 0)

    async def steer(self, event_id: str, seen: _Seen, ready: bool) -> None:
        if ready and seen.pending:
            await self.flush_pending(event_id, seen)
        rate, max_active, active, waiting, paused, admitted = await self.observe(event_id)
        if max_active <= 0:
            return  # no live settings mirrored yet
        t = time.monotonic()
        seen.history.append((t, admitted, active))
        while seen.history and t - seen.history[0][0] > HISTORY_S:
            seen.history.popleft()
        obs = Observation(
            rate_per_min=rate,
            active=active,
            max_active=max_active,
            waiting=waiting,
            departures_per_min=departures_per_min(list(seen.history)),
            ready=ready,
            paused=paused,
            paused_by_autopilot=seen.paused_by_me,
        )
        if not seen.config.enabled and not (seen.paused_by_me and ready):
            return
        decision = decide(seen.config, obs)
        seen.last = decision
        if not decision.changes(obs):
            return
        if decision.pause is True and not ready:
            await self.pause_without_database(event_id, seen, decision)
            return
        patch: dict[str, Any] = {}
        if decision.rate_per_min != rate:
            patch["rate_per_min"] = decision.rate_per_min
        if decision.pause is not None:
            patch["paused"] = decision.pause
        await self.room.change(
            event_id,
            EventPatch(**patch),
            who=audit.AUTOPILOT,
            action="autopilot",
            note=decision.reason,
        )
        if decision.pause is not None:
            seen.paused_by_me = decision.pause
            await _set_paused_by_me(self.pool, event_id, decision.pause)

    async def pause_without_database(self, event_id: str, seen: _Seen, decision: Decision) -> None:
        """PostgreSQL is down: pause in the live copy every process's admission step reads,
        and keep the audit row until PostgreSQL answers again."""
        await self.redis.hset(EventKeys(event_id).cfg, "paused", 1)
        seen.paused_by_me = True
        note = f"{decision.reason} (at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})"
        seen.pending.append(("autopilot", {"paused": (False, True)}, note))

    async def flush_pending(self, event_id: str, seen: _Seen) -> None:
        """PostgreSQL is back after a pause made without it: record it, then resume by
        restoring the live copy from PostgreSQL (where the event was never paused)."""
        async with self.pool.acquire() as conn, conn.transaction():
            for action, changes, note in seen.pending:
                await audit.record(conn, event_id, audit.AUTOPILOT, action, changes, note)
            await audit.record(
                conn, event_id, audit.AUTOPILOT, "autopilot", {"paused": (True, False)},
                "ready again: resuming admission",
            )  # fmt: skip
        seen.pending.clear()
        seen.paused_by_me = False
        self.room.cache.invalidate(event_id)
        ev = await self.room.cache.require(event_id)
        await self.room.mirror(ev)
        await self.room.announce(event_id)


def sale_starts_in(ev: db.EventRow) -> int:
    return max(0, math.ceil((to_ms(ev.sale_starts_at) - now_ms()) / 1000))


AUTOPILOT = web.AppKey("autopilot", Autopilot)
