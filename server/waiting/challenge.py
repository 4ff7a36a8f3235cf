"""Bots pay, fans barely notice: the proof of work (ALTCHA) a new place in line costs, its
adaptive price, and the per-visitor / per-address limits of the fan's queue requests.

Challenges are ALTCHA v2, `PBKDF2/SHA-256`: the browser widget (npm `altcha`) derives keys with
WebCrypto and the Python library (`altcha.solve_challenge`) with hashlib, both native code, so a
scripted farm pays per place about what a fan's browser pays (an iterated-SHA or v1 challenge
runs ~20x faster in Python than in the widget). The server checks a solution with one key
derivation, only after the challenge's signature, expiry and event have passed.

A challenge is signed with a key derived from BOXOFFICE_SECRET under its own label, expires
within minutes, names its event in its signed data, and buys one place: join.lua records its
nonce as spent atomically with making the place."""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import altcha
import msgspec
from aiohttp import web
from redis.asyncio import Redis

from server.core import client_address
from server.core.errors import DomainError, Forbidden, RateLimited
from server.core.keys import EventKeys
from server.core.messages import ChallengePolicy
from server.store import lua
from server.store.lua import AnyRedis, Batched, time_arg
from server.waiting.line import Count

ALGORITHM = "PBKDF2/SHA-256"
EXPIRES_SECONDS = 300  # a challenge must be solved and spent within five minutes
HALF_LIFE_MS = 60_000  # pressure halves every minute without new challenges


# ---- the price of a place: pure rules --------------------------------------------------------


class Level(msgspec.Struct, frozen=True):
    """One cost level: `cost` PBKDF2 iterations per try; a try succeeds when the derived key
    starts with `key_prefix` (hex), so the expected work is cost * 16**len(key_prefix)
    iterations. The server's check is one derivation: `cost` iterations."""

    cost: int
    key_prefix: str

    @property
    def expected_iterations(self) -> int:
        return self.cost * (1 << (4 * len(self.key_prefix)))


# Each level doubles the expected work. Browser figures (headless Chromium, this 2-core machine,
# the widget's default workers): ~2.5-5 M iterations/s, so level 0 is ~0.1 s and level 7 ~10 s.
# Costs of at least 500 iterations keep the widget's per-try overhead small.
LEVELS: tuple[Level, ...] = (
    Level(1000, "00"),  # 0: 0.26 M iterations, a calm sale
    Level(2000, "00"),  # 1: 0.5 M
    Level(4000, "00"),  # 2: 1 M, the least "always" asks
    Level(500, "000"),  # 3: 2 M
    Level(1000, "000"),  # 4: 4 M
    Level(2000, "000"),  # 5: 8 M
    Level(4000, "000"),  # 6: 16 M
    Level(500, "0000"),  # 7: 33 M, the most: a carrier NAT under a farm still gets in
)
ALWAYS_BASE = 2
FREE_PER_SOURCE = 3.0  # challenges a source may ask for per half-life before its price rises
NETWORK_SHARE = 4.0  # a /24 or /64 counts a quarter: it holds several honest households
CROWD_FREE = 2000.0  # the event's own crowd raises everyone's price above this...
CROWD_MAX_LEVELS = 2  # ...by at most this many levels


class Pressure(msgspec.Struct, frozen=True):
    """Decayed counts of challenges asked for recently (before this one)."""

    address: float = 0.0
    network: float = 0.0
    visitor: float = 0.0
    crowd: float = 0.0


def decayed(count: float, at_ms: int, now_ms: int, half_life_ms: int = HALF_LIFE_MS) -> float:
    """A pressure count last updated at `at_ms`, as it stands at `now_ms` (pressure.lua's
    decay, for reading without bumping)."""
    return count * 2 ** (-max(0, now_ms - at_ms) / half_life_ms)


def cost_level(policy: ChallengePolicy, pressure: Pressure) -> int:
    """The level of the next challenge: each doubling of a source's pressure adds one level
    (doubling the work), so a source's cost per place grows with the places it takes; the
    crowd adds up to CROWD_MAX_LEVELS. Never refuses: the top level is the ceiling."""
    source = max(pressure.address, pressure.visitor, pressure.network / NETWORK_SHARE)
    from_source = int(math.log2(1 + max(0.0, source) / FREE_PER_SOURCE))
    from_crowd = min(CROWD_MAX_LEVELS, int(math.log2(1 + max(0.0, pressure.crowd) / CROWD_FREE)))
    base = ALWAYS_BASE if policy == "always" else 0
    return min(len(LEVELS) - 1, base + from_source + from_crowd)


# ---- limits ----------------------------------------------------------------------------------

LimitKind = Literal["join", "status", "ws", "challenge"]
WINDOW_MS = 60_000
# Attempts per minute: (per visitor, per client address). Per visitor about what NGINX allows at
# its edge; per address generous, since a carrier NAT puts thousands of fans behind one. Each is
# above 0: join.lua and status.lua read a most of 0 as "not counted here".
LIMITS: dict[LimitKind, tuple[int, int]] = {
    "join": (60, 3000),
    "status": (600, 30000),
    "ws": (120, 6000),
    "challenge": (120, 6000),
}


def retry_after(reset_ms: int) -> int:
    return max(1, math.ceil(reset_ms / 1000))


def too_many(kind: LimitKind, reset_ms: int) -> RateLimited:
    """The refusal of an attempt over its limit, whoever counted it."""
    return RateLimited(f"too many {kind} requests; slow down", retry_after=retry_after(reset_ms))


# ---- solutions -------------------------------------------------------------------------------


class _Params(msgspec.Struct):
    nonce: str
    expiresAt: int  # the wire name
    data: dict[str, Any]


class _Challenge(msgspec.Struct):
    parameters: _Params


class _Payload(msgspec.Struct):
    challenge: _Challenge


_payload = msgspec.json.Decoder(_Payload)


class Proof(msgspec.Struct, frozen=True):
    """What join.lua is told: `arg` is "" (no challenge asked), "none" (a new place needs a
    solution and there is no valid one) or the ms a valid solution's nonce stays spent."""

    arg: str = ""
    nonce: str = "-"
    given: bool = False  # a solution came with the request (so "none" means it failed)


NOT_ASKED = Proof()


def challenge_url(event_id: str) -> str:
    return f"/api/events/{event_id}/challenge"


def refusal(event_id: str, proof: Proof, state: str) -> DomainError:
    """The answer to a join that got no place for want of a (fresh, valid) solution."""
    if state == "challenge" and not proof.given:
        return Forbidden(
            "solve the challenge to take a place in line",
            code="challenge_required",
            extra={"challenge": challenge_url(event_id)},
        )
    return Forbidden(
        "the challenge solution is wrong, expired, for another event or already used",
        code="challenge_failed",
        extra={"challenge": challenge_url(event_id)},
    )


class Guard:
    """Issues and checks challenges, counts pressure, and runs the queue's rate limits."""

    def __init__(self, redis: AnyRedis, hmac_key: bytes) -> None:
        self.redis = redis
        self._key = hmac_key
        scripts = lua.register(redis, "rate_limit", "pressure")
        rate, pressure = scripts["rate_limit"], scripts["pressure"]
        # On one Redis, calls made in the same loop turn share a pipeline (as joins do): a crowd
        # must not need a connection per request.
        self._rate: Callable[..., Awaitable[Any]] = rate
        self._pressure: Callable[..., Awaitable[Any]] = pressure
        if isinstance(redis, Redis):
            self._rate, self._pressure = (
                _keywords(Batched(redis, rate)),
                _keywords(Batched(redis, pressure)),
            )

    def address(self, request: web.Request) -> str:
        return client_address.of(request)

    # ---- limits ----

    def counts(self, kind: LimitKind, event_id: str, visitor_id: str, address: str) -> list[Count]:
        """The attempt one request of this kind makes: per visitor, and per address when it is
        a real client address. Counted by `limit`, or by join.lua with the join itself."""
        k = EventKeys(event_id)
        per_visitor, per_address = LIMITS[kind]
        found = [Count(k.rate(kind, visitor_id), per_visitor, WINDOW_MS)]
        if counts_address(address):
            found.append(Count(k.rate(kind, f"a:{address}"), per_address, WINDOW_MS))
        return found

    async def limit(self, kind: LimitKind, event_id: str, visitor_id: str, address: str) -> None:
        """Count one attempt per visitor and per address; 429 with Retry-After over a limit."""
        await self.count(kind, self.counts(kind, event_id, visitor_id, address))

    async def count(self, kind: LimitKind, counts: list[Count]) -> None:
        """Count these attempts (rate_limit.lua, one call each); 429 over a limit."""
        calls = [self._rate(keys=[c.key], args=[c.most, c.window_ms]) for c in counts]
        answers = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        if any(not allowed for allowed, _ in answers):
            raise too_many(kind, max(int(reset) for allowed, reset in answers if not allowed))

    # ---- challenges ----

    async def pressure(
        self, event_id: str, visitor_id: str, address: str, now_ms: int | None = None
    ) -> Pressure:
        """Read (and bump) the pressure behind one challenge request."""
        k = EventKeys(event_id)
        keys = [k.pressure(f"v:{visitor_id}"), k.pressure("crowd")]
        if counts_address(address):
            keys += [k.pressure(f"a:{address}"), k.pressure(f"n:{client_address.source_network(address)}")]  # fmt: skip
        values = [int(v) / 1000 for v in await self._pressure(
            keys=[*keys, k.stats], args=[time_arg(now_ms), HALF_LIFE_MS]
        )]  # fmt: skip
        visitor, crowd, *rest = values
        address_p, network_p = rest if rest else (0.0, 0.0)
        return Pressure(address=address_p, network=network_p, visitor=visitor, crowd=crowd)

    async def issue(
        self, event_id: str, policy: ChallengePolicy, visitor_id: str, address: str
    ) -> dict[str, Any]:
        level = cost_level(policy, await self.pressure(event_id, visitor_id, address))
        return self.challenge(event_id, level)

    def challenge(self, event_id: str, level: int, expires_at: int | None = None) -> dict[str, Any]:
        """A signed challenge of one level for one event, as the widget fetches it."""
        spec = LEVELS[level]
        made = altcha.create_challenge(
            ALGORITHM,
            spec.cost,
            key_prefix=spec.key_prefix,
            expires_at=int(time.time()) + EXPIRES_SECONDS if expires_at is None else expires_at,
            data={"event": event_id, "level": level},
            hmac_secret=self._key,
        )
        result: dict[str, Any] = made.to_dict()
        return result

    def proof(self, event_id: str, policy: ChallengePolicy, solution: str | None) -> Proof:
        """What a join carries: nothing asked, no valid solution, or a valid one to spend."""
        if policy == "off":
            return NOT_ASKED
        if solution is None:
            return Proof(arg="none")
        checked = self.check(event_id, solution)
        if checked is None:
            return Proof(arg="none", given=True)
        nonce, expires_at = checked
        ttl_ms = expires_at * 1000 - time.time_ns() // 1_000_000 + 1000
        return Proof(arg=str(max(1000, ttl_ms)), nonce=nonce, given=True)

    def check(self, event_id: str, solution: str) -> tuple[str, int] | None:
        """(nonce, expires_at) of a valid, unexpired solution for this event, else None.
        Cheap checks first; the library then checks the signature and derives the key once."""
        try:
            parsed = _payload.decode(base64.b64decode(solution, validate=True))
        except (binascii.Error, ValueError, msgspec.MsgspecError):
            return None
        params = parsed.challenge.parameters
        if params.data.get("event") != event_id or params.expiresAt < time.time():
            return None
        try:
            result = altcha.verify_solution(solution, self._key)
        except (ValueError, TypeError, KeyError, OverflowError):
            return None
        if not result.verified:
            return None
        return params.nonce, params.expiresAt

    async def failed(self, event_id: str) -> None:
        await self.redis.hincrby(EventKeys(event_id).stats, "challenges_failed", 1)


def _keywords(batcher: Batched) -> Callable[..., Awaitable[Any]]:
    """A batched script called like a registered one: keys=…, args=…."""

    def call(keys: list[str], args: list[str | int]) -> Awaitable[Any]:
        return batcher(keys, args)

    return call


def counts_address(address: str) -> bool:
    """Per-address limits and pressure apply to real client addresses only (see is_loopback)."""
    return address != client_address.UNKNOWN and not client_address.is_loopback(address)


GUARD = web.AppKey("guard", Guard)
