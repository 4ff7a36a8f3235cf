"""Bots pay, fans barely notice: the proof of work at join, its adaptive price, client addresses
and the limits nobody can mint around (real Redis and PostgreSQL)."""

from __future__ import annotations

import base64
import itertools
import json
import time
from typing import Any

import altcha
import asyncpg
import msgspec
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core.client_address import client_address, parse_networks, source_network
from server.core.errors import RateLimited
from server.core.identity import visitor_cookies
from server.core.keys import EventKeys
from server.core.settings import Settings, SettingsError, from_env
from server.core.tokens import Signer
from server.runtime.app import create_app
from server.runtime.stack import with_local_proxy
from server.waiting.challenge import (
    ALWAYS_BASE,
    GUARD,
    LEVELS,
    LIMITS,
    Pressure,
    cost_level,
)
from tests.helpers import ADMIN, SECRET, create_event, join, join_body, solve, visitor

# ---- pure rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "pressure", "level"),
    [
        ("adaptive", Pressure(), 0),  # the first fan pays little
        ("always", Pressure(), ALWAYS_BASE),
        ("adaptive", Pressure(address=2.9), 0),  # a reload or two is free
        ("adaptive", Pressure(address=3), 1),
        ("adaptive", Pressure(address=9), 2),  # each doubling of pressure: one level up
        ("adaptive", Pressure(address=21), 3),
        ("adaptive", Pressure(visitor=21), 3),  # the visitor counts like the address
        ("adaptive", Pressure(network=12), 1),  # the /24 counts a quarter
        ("adaptive", Pressure(address=21, network=400), 5),  # the worst source decides
        ("adaptive", Pressure(crowd=1999), 0),
        ("adaptive", Pressure(crowd=2000), 1),  # a big crowd: everyone pays a little more
        ("adaptive", Pressure(crowd=1e9), 2),  # ...but at most two levels
        ("always", Pressure(address=9), ALWAYS_BASE + 2),
        ("adaptive", Pressure(address=1e12, crowd=1e12), len(LEVELS) - 1),  # never refused
        ("adaptive", Pressure(address=-5), 0),
    ],
)
def test_cost_level(policy: Any, pressure: Pressure, level: int) -> None:
    assert cost_level(policy, pressure) == level


def test_levels_double_the_work() -> None:
    work = [lvl.expected_iterations for lvl in LEVELS]
    assert all(b == 2 * a for a, b in itertools.pairwise(work))
    assert all(lvl.cost >= 500 for lvl in LEVELS)


PROXY = parse_networks("127.0.0.1, 10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", [], "203.0.113.9"),  # no proxy
        ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),  # untrusted peer: its header is a lie
        ("127.0.0.1", [], "127.0.0.1"),  # trusted peer without a header: itself
        ("127.0.0.1", ["198.51.100.7"], "198.51.100.7"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),  # the client wrote 6.6.6.6
        ("127.0.0.1", ["198.51.100.7, 10.1.2.3"], "198.51.100.7"),  # two trusted hops
        ("127.0.0.1", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),  # repeated headers
        ("127.0.0.1", ["garbage, 198.51.100.7"], "198.51.100.7"),
        ("127.0.0.1", ["198.51.100.7, garbage"], "127.0.0.1"),  # a broken hop: stop
        ("10.0.0.5", ["10.0.0.4, 10.0.0.3"], "10.0.0.4"),  # all trusted: the farthest
        ("::ffff:127.0.0.1", ["2001:db8::5"], "2001:db8::5"),  # v4-mapped peer
        ("fd00::1", [" 2001:db8::7 "], "2001:db8::7"),
        (None, ["1.2.3.4"], "unknown"),
        ("not-an-ip", [], "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, PROXY) == expected


def test_client_address_trusts_nobody_by_default() -> None:
    assert client_address("127.0.0.1", ["1.2.3.4"], parse_networks("")) == "127.0.0.1"


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.77", "203.0.113.0/24"),
        ("unknown", "unknown"),
    ],
)
def test_source_network(address: str, network: str) -> None:
    assert source_network(address) == network


def test_trusted_proxies_setting() -> None:
    assert from_env({"BOXOFFICE_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"}).trusted_proxies
    with pytest.raises(SettingsError, match=r"BOXOFFICE_TRUSTED_PROXIES.*10\.0\.0\.0/33"):
        from_env({"BOXOFFICE_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/33"})
    assert with_local_proxy("") == "127.0.0.1"
    assert with_local_proxy("10.0.0.0/8") == "10.0.0.0/8,127.0.0.1"
    assert with_local_proxy("127.0.0.1, ::1") == "127.0.0.1,::1"


@pytest.mark.parametrize(
    ("headers", "values"),
    [
        ([], []),
        (["bo_visitor=a"], ["a"]),
        (["x=1; bo_visitor=a; y=2"], ["a"]),
        (["bo_visitor=a; bo_visitor=b"], ["a", "b"]),
        (["bo_visitor=a", "bo_visitor=b"], ["a", "b"]),  # two Cookie headers (HTTP/2 style)
        (["not_bo_visitor=a; bo_visitorx=b"], []),
        ([" bo_visitor =a;bo_visitor=b"], ["a", "b"]),
        (['bo_visitor="a.b"'], ["a.b"]),  # quoted, as aiohttp's parser reads it
    ],
)
def test_visitor_cookies(headers: list[str], values: list[str]) -> None:
    assert visitor_cookies(headers) == values


# ---- the challenge at join ---------------------------------------------------------------------


def payload(solution: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(solution))
    return data


async def places(redis: Redis, event_id: str) -> int:
    return int(await redis.hlen(EventKeys(event_id).visitors))


async def expect(response: Any, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert response.status == status, body
    assert body["error"] == code, body
    assert body["detail"]
    return body


async def test_challenge_is_signed_for_its_event_and_not_cached(
    client: TestClient[Any, Any],
) -> None:
    ev = await create_event(client)
    assert ev["settings"]["challenge"] == "adaptive"  # the default
    r = await client.get(f"/api/events/{ev['id']}/challenge")
    assert r.status == 200
    assert r.headers["Cache-Control"] == "no-store"
    challenge = await r.json()
    params = challenge["parameters"]
    assert params["algorithm"] == "PBKDF2/SHA-256"
    assert params["data"] == {"event": ev["id"], "level": 0}
    assert 0 < params["expiresAt"] - time.time() <= 300
    assert len(challenge["signature"]) == 64
    await expect(await client.get("/api/events/nope/challenge"), 404, "event_not_found")


async def test_no_solution_no_place(
    client: TestClient[Any, Any], redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(client)
    before = await pg.fetchrow("SELECT * FROM events WHERE id = $1", ev["id"])
    for body in (None, {}, {"altcha": None}):
        r = await client.post(f"/api/events/{ev['id']}/queue", json=body)
        refused = await expect(r, 403, "challenge_required")
        assert refused["challenge"] == f"/api/events/{ev['id']}/challenge"
    for bad in ("not base64!", base64.b64encode(b"[1,2]").decode(), "e30="):
        r = await client.post(f"/api/events/{ev['id']}/queue", json={"altcha": bad})
        await expect(r, 403, "challenge_failed")
    assert await places(redis, ev["id"]) == 0
    # Nothing was created: no place, no visitor, no ticket, no spent solution.
    k = EventKeys(ev["id"])
    assert not await redis.exists(k.visitors, k.owner, k.tickets, k.pre, k.line, k.seen)
    assert int(await redis.get(k.seq) or 0) == 0  # (open_sale writes 0 when the sale opens)
    assert not await redis.keys(k.spent("*"))
    assert int(await redis.hget(EventKeys(ev["id"]).stats, "joins") or 0) == 0
    assert int(await redis.hget(EventKeys(ev["id"]).stats, "challenges_failed") or 0) == 3
    assert await pg.fetchrow("SELECT * FROM events WHERE id = $1", ev["id"]) == before
    r = await client.post(
        f"/api/events/{ev['id']}/queue", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    await expect(r, 400, "malformed_json")
    r = await client.post(f"/api/events/{ev['id']}/queue", json={"altcha": "x", "more": 1})
    await expect(r, 422, "invalid")


async def test_a_solution_buys_one_place(fans: TestClient[Any, Any], redis: Redis) -> None:
    ev = await create_event(fans)
    fan = visitor()
    body = await join_body(fans, ev["id"], fan)
    r = await fans.post(f"/api/events/{ev['id']}/queue", json=body, headers=fan)
    assert r.status == 200, await r.text()
    place = await r.json()
    assert place["state"] == "waiting"
    # The same fan rejoins without a new solution (a reload), and with a spent one.
    for again in (None, body):
        r = await fans.post(f"/api/events/{ev['id']}/queue", json=again, headers=fan)
        assert (await r.json())["queue_id"] == place["queue_id"]
    # Replayed under another cookie: refused, nothing created.
    r = await fans.post(f"/api/events/{ev['id']}/queue", json=body, headers=visitor())
    await expect(r, 403, "challenge_failed")
    assert await places(redis, ev["id"]) == 1
    stats = await (await fans.get(f"/api/admin/events/{ev['id']}/stats", headers=ADMIN)).json()
    assert (stats["challenges_issued"], stats["challenges_solved"]) == (1, 1)
    assert stats["challenges_failed"] == 1


async def test_other_event_expired_and_forged_solutions_fail(
    fans: TestClient[Any, Any], redis: Redis
) -> None:
    ev = await create_event(fans)
    other = await create_event(fans)
    key = Signer(SECRET).subkey("altcha")

    def made(event_id: str, expires_at: int, secret: bytes = key) -> str:
        ch = altcha.create_challenge(
            "PBKDF2/SHA-256",
            LEVELS[0].cost,
            key_prefix=LEVELS[0].key_prefix,
            expires_at=expires_at,
            data={"event": event_id, "level": 0},
            hmac_secret=secret,
        )
        return str(solve(ch.to_dict()))

    now = int(time.time())
    elsewhere = (await join_body(fans, other["id"], visitor()))["altcha"]
    forged = payload(made(ev["id"], now + 60))
    forged["challenge"]["parameters"]["data"]["event"] = ev["id"] + "x"
    tampered = payload(made(other["id"], now + 60))
    tampered["challenge"]["parameters"]["data"]["event"] = ev["id"]
    for solution in (
        elsewhere,  # a genuine solution of another event
        made(ev["id"], now - 1),  # expired
        made(ev["id"], now + 60, b"not our key"),  # signed by someone else
        base64.b64encode(json.dumps(tampered).encode()).decode(),  # event rewritten
        base64.b64encode(json.dumps(forged).encode()).decode(),
    ):
        r = await fans.post(
            f"/api/events/{ev['id']}/queue", json={"altcha": solution}, headers=visitor()
        )
        await expect(r, 403, "challenge_failed")
    assert await places(redis, ev["id"]) == 0
    # ...and the genuine one still buys its place at its own event.
    r = await fans.post(
        f"/api/events/{other['id']}/queue", json={"altcha": elsewhere}, headers=visitor()
    )
    assert r.status == 200


async def test_policy_is_set_patched_and_audited(fans: TestClient[Any, Any]) -> None:
    client = fans
    ev = await create_event(client, challenge="off")
    assert ev["settings"]["challenge"] == "off"
    r = await client.post(f"/api/events/{ev['id']}/queue", headers=visitor())
    assert r.status == 200  # no challenge asked
    url = f"/api/admin/events/{ev['id']}"
    r = await client.patch(url, json={"challenge": "always"}, headers=ADMIN)
    assert (await r.json())["settings"]["challenge"] == "always"
    r = await client.get(f"/api/events/{ev['id']}/challenge", headers=visitor())
    assert (await r.json())["parameters"]["data"]["level"] >= ALWAYS_BASE
    fresh = await client.post(f"/api/events/{ev['id']}/queue", headers=visitor())
    await expect(fresh, 403, "challenge_required")
    r = await client.patch(url, json={"challenge": "sometimes"}, headers=ADMIN)
    await expect(r, 422, "invalid")
    audit = await (await client.get(f"{url}/audit", headers=ADMIN)).json()
    changes = [(a["field"], a["old"], a["new"]) for a in audit if a["field"] == "challenge"]
    assert changes == [("challenge", "off", "always")]


# ---- a farm from one source ---------------------------------------------------------------------


@pytest.fixture
async def behind_proxy(
    aiohttp_client: Any, settings: Settings, redis: Redis, pg: asyncpg.Pool
) -> TestClient[Any, Any]:
    """The app behind a trusted proxy on 127.0.0.1: X-Forwarded-For names each client. No
    cookies kept: every request is a fresh visitor unless it says otherwise."""
    trusting = msgspec.structs.replace(settings, trusted_proxies="127.0.0.1")
    result: TestClient[Any, Any] = await aiohttp_client(
        create_app(trusting), cookie_jar=DummyCookieJar()
    )
    return result


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def test_a_farm_minting_cookies_pays_more_per_place(
    behind_proxy: TestClient[Any, Any], redis: Redis
) -> None:
    client = behind_proxy
    ev = await create_event(client)
    farm = from_address("203.0.113.7")
    for _ in range(20):  # a fresh cookie per join, no solving: no place at all
        r = await client.post(f"/api/events/{ev['id']}/queue", headers=farm)
        await expect(r, 403, "challenge_required")
    assert await places(redis, ev["id"]) == 0

    levels = []
    for _ in range(12):  # solving: every place costs more than the one before
        r = await client.get(f"/api/events/{ev['id']}/challenge", headers=farm)
        challenge = await r.json()
        levels.append(challenge["parameters"]["data"]["level"])
        r = await client.post(
            f"/api/events/{ev['id']}/queue", json={"altcha": solve(challenge)}, headers=farm
        )
        assert r.status == 200, await r.text()
    assert await places(redis, ev["id"]) == 12
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] >= 2, levels
    work = [LEVELS[level].expected_iterations for level in levels]
    assert work[-1] >= 4 * work[0]

    async def level_for(address: str) -> int:
        r = await client.get(f"/api/events/{ev['id']}/challenge", headers=from_address(address))
        level: int = (await r.json())["parameters"]["data"]["level"]
        return level

    for _ in range(12):  # the farm keeps asking
        await client.get(f"/api/events/{ev['id']}/challenge", headers=farm)
    # A neighbour in the farm's /24 pays a little more; elsewhere a fan pays the least.
    assert await level_for("203.0.113.8") >= 1
    assert await level_for("198.51.100.1") == 0
    # The farm's own address keeps its price, and still gets a challenge (never refused).
    assert await level_for("203.0.113.7") >= levels[-1]


async def test_pressure_decays(behind_proxy: TestClient[Any, Any]) -> None:
    ev = await create_event(behind_proxy)
    guard = behind_proxy.app[GUARD]
    t0 = 1_000_000_000
    for i in range(30):
        await guard.pressure(ev["id"], "v", "203.0.113.7", now_ms=t0 + i)
    busy = await guard.pressure(ev["id"], "w", "203.0.113.7", now_ms=t0 + 100)
    assert busy.address == pytest.approx(30, rel=0.01)
    assert cost_level("adaptive", busy) >= 3
    calm = await guard.pressure(ev["id"], "w", "203.0.113.7", now_ms=t0 + 100 + 5 * 60_000)
    assert calm.address < 1.5  # five half-lives later
    assert cost_level("adaptive", calm) == 0


# ---- limits ---------------------------------------------------------------------------------------


async def test_duplicate_visitor_cookie_is_refused(fans: TestClient[Any, Any]) -> None:
    client = fans  # keeps no cookies: the raw header goes out as written
    ev = await create_event(client, challenge="off")
    one, two = visitor()["Cookie"], visitor()["Cookie"]
    for path in (
        f"/api/events/{ev['id']}/queue",
        f"/api/events/{ev['id']}/challenge",
        "/api/events",
    ):
        method = client.post if path.endswith("/queue") else client.get
        r = await method(path, headers={"Cookie": f"{one}; {two}"})
        await expect(r, 400, "duplicate_cookie")
        assert "Set-Cookie" not in r.headers


async def test_join_and_status_limits_per_visitor(fans: TestClient[Any, Any], redis: Redis) -> None:
    ev = await create_event(fans, challenge="off")
    fan = visitor()
    url = f"/api/events/{ev['id']}/queue"
    per_visitor = LIMITS["join"][0]
    for _ in range(per_visitor):
        r = await fans.post(url, headers=fan)
        assert r.status == 200
    r = await fans.post(url, headers=fan)
    await expect(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert (await fans.post(url, headers=visitor())).status == 200  # others are not affected

    queue_id = (await (await fans.post(url, headers=(other := visitor()))).json())["queue_id"]
    for _ in range(LIMITS["status"][0]):
        assert (await fans.get(f"/api/queue/{queue_id}", headers=other)).status == 200
    await expect(await fans.get(f"/api/queue/{queue_id}", headers=other), 429, "rate_limited")
    # Websocket connects, per visitor: each attempt counts (here plain GETs, answered 400 as not
    # an upgrade) until the limit answers 429 before any upgrade is looked at.
    ws = f"/api/queue/{queue_id}/ws"
    for _ in range(LIMITS["ws"][0]):
        await expect(await fans.get(ws, headers=other), 400, "websocket_expected")
    await expect(await fans.get(ws, headers=other), 429, "rate_limited")
    await expect(await fans.get(ws, headers=visitor()), 400, "websocket_expected")


async def test_a_join_is_counted_once_whichever_counts_it(
    fans: TestClient[Any, Any], redis: Redis
) -> None:
    """A join that restores a kept place is counted before the restore (rate_limit.lua), one
    with nothing to check or restore by join.lua itself: either way once."""
    ev = await create_event(fans, challenge="off")
    url, per_visitor = f"/api/events/{ev['id']}/queue", LIMITS["join"][0]
    fan_id = "f" * 22
    fan = visitor(fan_id)
    first = await fans.post(url, headers=fan)
    assert first.status == 200
    kept = first.cookies[f"bo_place_{ev['id']}"].value
    with_kept = {"Cookie": f"{fan['Cookie']}; bo_place_{ev['id']}={kept}"}
    for n in range(1, per_visitor):
        r = await fans.post(url, headers=with_kept if n % 2 else fan)
        assert r.status == 200, await r.text()
    counter = EventKeys(ev["id"]).rate("join", fan_id)
    assert int(await redis.get(counter) or 0) == per_visitor
    for headers in (with_kept, fan):
        await expect(await fans.post(url, headers=headers), 429, "rate_limited")
    assert int(await redis.get(counter) or 0) == per_visitor + 2


async def test_a_refused_join_body_counts_as_an_attempt(fans: TestClient[Any, Any]) -> None:
    ev = await create_event(fans, challenge="off")
    url, fan = f"/api/events/{ev['id']}/queue", visitor()
    bad = {**fan, "Content-Type": "application/json"}
    for _ in range(LIMITS["join"][0]):
        await expect(await fans.post(url, data=b"{not json", headers=bad), 400, "malformed_json")
    await expect(await fans.post(url, headers=fan), 429, "rate_limited")


async def test_limits_per_address(behind_proxy: TestClient[Any, Any]) -> None:
    ev = await create_event(behind_proxy, challenge="off")
    guard = behind_proxy.app[GUARD]
    per_address = LIMITS["ws"][1]
    for i in range(per_address):  # fresh visitors, one address
        await guard.limit("ws", ev["id"], f"visitor-{i}", "203.0.113.7")
    with pytest.raises(RateLimited):
        await guard.limit("ws", ev["id"], "yet-another", "203.0.113.7")
    await guard.limit("ws", ev["id"], "yet-another", "203.0.113.8")  # another address
    for i in range(per_address + 1):  # a local proxy or load generator: per visitor only
        await guard.limit("ws", ev["id"], f"local-{i}", "127.0.0.1")
    # Through HTTP: the address limit answers 429 whoever the visitor claims to be.
    r = await behind_proxy.get(
        f"/api/queue/{ev['id']}.{'A' * 22}/ws", headers=from_address("203.0.113.7")
    )
    await expect(r, 429, "rate_limited")


async def test_join_helper_works_for_every_policy(client: TestClient[Any, Any]) -> None:
    for policy in ("off", "adaptive", "always"):
        ev = await create_event(client, challenge=policy)
        r = await join(client, ev["id"])
        assert r.status == 200, await r.text()
