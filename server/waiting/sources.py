"""Where places in line come from: each new place is counted under its client address at join
(join.lua: a ZSET of address -> places, the biggest SOURCES_KEPT kept, and the places of each
address for purging), the price a source pays now, and an operator's purge of the waiting
places of one address (purge_source.lua, atomic; dry run first).

Only real client addresses are recorded: loopback (a local proxy or load generator) and unknown
peers are left out, as they are from per-address limits and pressure (challenge.counts_address).
Behind a proxy, set BOXOFFICE_TRUSTED_PROXIES, or every place would come from the proxy."""

from __future__ import annotations

import ipaddress

import msgspec

from server.core import client_address
from server.core.clock import now_ms
from server.core.errors import Invalid
from server.core.keys import EventKeys
from server.core.messages import ChallengePolicy
from server.store.lua import AnyRedis, as_text
from server.waiting.challenge import HALF_LIFE_MS, Pressure, cost_level, counts_address, decayed
from server.waiting.line import Scripts

TOP_MOST = 100


class SourceRow(msgspec.Struct, frozen=True):
    source: str  # a client address
    places: int  # places it took in line since it was first counted
    waiting: int  # of those, still waiting in line or in the pre-queue (purgeable)
    level: int  # the cost level its next challenge would have now


class BotsView(msgspec.Struct, frozen=True):
    event_id: str
    policy: ChallengePolicy
    level: int  # the cost level a new source's challenge has now (the crowd's share)
    challenges_issued: int
    challenges_solved: int
    challenges_failed: int
    purged: int  # places removed by purges
    sources: list[SourceRow]


class PurgeRequest(msgspec.Struct, forbid_unknown_fields=True):
    source: str
    confirm: bool = False  # false: a dry run that only counts


class PurgeResult(msgspec.Struct, frozen=True):
    event_id: str
    source: str
    waiting: int  # the source's waiting places when asked (dry run) or removed (confirmed)
    purged: int


def recorded(address: str) -> str:
    """The source a new place is counted under: the address, or "" (not recorded)."""
    return address if counts_address(address) else ""


def check_source(raw: str) -> str:
    """A source named by an operator: one client address, written as Python writes it."""
    try:
        address = str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise Invalid("source: one client address, like 203.0.113.7 or 2001:db8::1") from None
    if not counts_address(address):
        raise Invalid("source: loopback addresses are a local proxy, never recorded")
    return address


async def _pressures(redis: AnyRedis, k: EventKeys, names: list[str]) -> dict[str, float]:
    """Decayed pressure counts, read without bumping them."""
    now = now_ms()
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hmget(k.pressure(name), ["v", "t"])
        answers = await pipe.execute()
    return {
        name: decayed(float(v), int(t), now, HALF_LIFE_MS)
        if v is not None and t is not None
        else 0.0
        for name, (v, t) in zip(names, answers, strict=True)
    }


async def view(
    redis: AnyRedis, scripts: Scripts, event_id: str, policy: ChallengePolicy, limit: int
) -> BotsView:
    k = EventKeys(event_id)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrevrange(k.sources, 0, max(0, min(limit, TOP_MOST) - 1), withscores=True)
        pipe.hmget(
            k.stats, ["challenges_issued", "challenges_solved", "challenges_failed", "purged"]
        )
        top, counters = await pipe.execute()
    issued, solved, failed, purged = (int(v or 0) for v in counters)
    top = [(as_text(member), int(score)) for member, score in top]
    names = ["crowd"]
    for source, _ in top:
        names += [f"a:{source}", f"n:{client_address.source_network(source)}"]
    pressure = await _pressures(redis, k, names)
    crowd = pressure["crowd"]
    rows = []
    for source, places in top:
        seen = Pressure(
            address=pressure[f"a:{source}"],
            network=pressure[f"n:{client_address.source_network(source)}"],
            crowd=crowd,
        )
        waiting = await scripts.purge_source(k, source, dry_run=True)
        rows.append(SourceRow(source, places, waiting, cost_level(policy, seen)))
    return BotsView(
        event_id=event_id,
        policy=policy,
        level=cost_level(policy, Pressure(crowd=crowd)),
        challenges_issued=issued,
        challenges_solved=solved,
        challenges_failed=failed,
        purged=purged,
        sources=rows,
    )


async def purge(scripts: Scripts, event_id: str, source: str, dry_run: bool) -> int:
    """The waiting places of `source`: counted (dry run) or removed, atomically."""
    return await scripts.purge_source(EventKeys(event_id), source, dry_run)
