"""Where places come from: each new place counted under its client address at join, the ops view
(challenge counters, the price now, top sources) and the audited purge of one source's waiting
places (real Redis and PostgreSQL, the app behind a trusted proxy on 127.0.0.1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.core.keys import EventKeys
from server.core.settings import Settings
from server.runtime.app import create_app
from server.store import lua
from server.waiting.challenge import decayed
from server.waiting.sources import check_source, recorded
from tests.helpers import ADMIN, create_event, join, visitor

Client = TestClient[Any, Any]
FARM, FAN, OTHER = "203.0.113.7", "198.51.100.20", "192.0.2.99"


@pytest.fixture
async def proxied(
    aiohttp_client: Any, settings: Settings, redis: Redis, pg: asyncpg.Pool
) -> Client:
    """The app behind a trusted proxy on 127.0.0.1: X-Forwarded-For names each client."""
    trusting = msgspec.structs.replace(settings, trusted_proxies="127.0.0.1")
    result: Client = await aiohttp_client(create_app(trusting), cookie_jar=DummyCookieJar())
    return result


def source(address: str, visitor_id: str | None = None) -> dict[str, str]:
    """A new visitor (a signed cookie) from one client address."""
    return {**visitor(visitor_id), "X-Forwarded-For": address}


async def take(client: Client, event_id: str, address: str, n: int) -> list[dict[str, str]]:
    """`n` fresh visitors from `address` take places (policy off: no solving); their headers."""
    taken = []
    for _ in range(n):
        headers = source(address)
        r = await client.post(f"/api/events/{event_id}/queue", headers=headers)
        assert r.status == 200, await r.text()
        taken.append(headers | {"X-Queue-Id": (await r.json())["queue_id"]})
    return taken


async def bots(client: Client, event_id: str, query: str = "") -> dict[str, Any]:
    r = await client.get(f"/api/admin/events/{event_id}/bots{query}", headers=ADMIN)
    assert r.status == 200, await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def purge(client: Client, event_id: str, address: str, confirm: bool) -> tuple[int, Any]:
    r = await client.post(
        f"/api/admin/events/{event_id}/sources/purge",
        json={"source": address, "confirm": confirm},
        headers={**ADMIN, "X-Boxoffice-Operator": "ops-anna"},
    )
    return r.status, await r.json()


# ---- rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kept"),
    [("203.0.113.7", "203.0.113.7"), ("2001:db8::1", "2001:db8::1"), ("127.0.0.1", ""),
     ("::1", ""), ("unknown", "")],
)  # fmt: skip
def test_recorded_sources(address: str, kept: str) -> None:
    assert recorded(address) == kept


@pytest.mark.parametrize(
    ("raw", "ok"),
    [(" 203.0.113.7 ", "203.0.113.7"), ("2001:DB8:0::1", "2001:db8::1"), ("127.0.0.1", None),
     ("203.0.113.0/24", None), ("not an address", None), ("", None), ("1.2.3.4|x", None)],
)  # fmt: skip
def test_check_source(raw: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(Exception, match="source:"):
            check_source(raw)
    else:
        assert check_source(raw) == ok


@pytest.mark.parametrize(
    ("count", "at", "now", "value"),
    [(8.0, 0, 0, 8.0), (8.0, 0, 60_000, 4.0), (8.0, 0, 180_000, 1.0), (8.0, 100, 50, 8.0)],
)
def test_decayed_pressure(count: float, at: int, now: int, value: float) -> None:
    assert decayed(count, at, now, 60_000) == pytest.approx(value)


# ---- the view and the purge ------------------------------------------------------------------


async def test_top_sources_and_their_price(proxied: Client, redis: Redis) -> None:
    ev = await create_event(proxied, challenge="off", rate_per_min=0)
    await take(proxied, ev["id"], FARM, 5)
    await take(proxied, ev["id"], FAN, 1)
    await proxied.post(f"/api/events/{ev['id']}/queue", headers=visitor())  # loopback: not counted
    for _ in range(12):  # the farm asks for challenges: its price rises, nobody else's
        r = await proxied.get(f"/api/events/{ev['id']}/challenge", headers=source(FARM))
        assert r.status == 200
    view = await bots(proxied, ev["id"])
    assert view["policy"] == "off" and view["level"] == 0
    assert view["challenges_issued"] == 12
    rows = {row["source"]: row for row in view["sources"]}
    assert [row["source"] for row in view["sources"]] == [FARM, FAN]
    assert (rows[FARM]["places"], rows[FARM]["waiting"]) == (5, 5)
    assert (rows[FAN]["places"], rows[FAN]["waiting"]) == (1, 1)
    assert rows[FARM]["level"] >= 2 and rows[FAN]["level"] == 0, rows
    assert [row["source"] for row in (await bots(proxied, ev["id"], "?limit=1"))["sources"]] == [
        FARM
    ]

    # A place that left is no longer waiting; the count of places taken stays.
    gone = (await take(proxied, ev["id"], FAN, 1))[0]
    r = await proxied.delete(f"/api/queue/{gone['X-Queue-Id']}", headers=gone)
    assert r.status == 204
    rows = {row["source"]: row for row in (await bots(proxied, ev["id"]))["sources"]}
    assert (rows[FAN]["places"], rows[FAN]["waiting"]) == (2, 1)


async def test_purge_counts_first_then_removes_one_sources_waiting_places(
    proxied: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    ev = await create_event(proxied, challenge="off", rate_per_min=0)
    farm = await take(proxied, ev["id"], FARM, 4)
    fan = await take(proxied, ev["id"], FAN, 2)
    k = EventKeys(ev["id"])
    before = await redis.zrange(k.line, 0, -1)

    status, dry = await purge(proxied, ev["id"], FARM, confirm=False)
    assert (status, dry["waiting"], dry["purged"]) == (200, 4, 0), dry
    assert await redis.zrange(k.line, 0, -1) == before  # a dry run changes nothing
    assert await pg.fetchval("SELECT count(*) FROM audit_log WHERE action = 'purge_source'") == 0

    status, done = await purge(proxied, ev["id"], FARM, confirm=True)
    assert (status, done["waiting"], done["purged"]) == (200, 4, 4), done
    left = [m.decode() for m in await redis.zrange(k.line, 0, -1) if isinstance(m, bytes)]
    assert left == [h["X-Queue-Id"] for h in fan]  # the fans keep their places and order
    for headers in farm:  # a purged place reads as expired to its visitor
        r = await proxied.get(f"/api/queue/{headers['X-Queue-Id']}", headers=headers)
        assert (await r.json())["state"] == "expired"
    row = await pg.fetchrow(
        "SELECT who, field, new_value FROM audit_log WHERE action = 'purge_source'"
    )
    assert row is not None
    assert row["who"] == "ops-anna" and row["field"] == "purge_source"
    assert msgspec.json.decode(row["new_value"]) == {"source": FARM, "purged": 4}
    assert (await bots(proxied, ev["id"]))["purged"] == 4

    status, again = await purge(proxied, ev["id"], FARM, confirm=True)
    assert (status, again["purged"]) == (200, 0)
    # A purged visitor may come back: its next join makes a new place at the end.
    r = await proxied.post(f"/api/events/{ev['id']}/queue", headers=farm[0])
    assert r.status == 200 and (await r.json())["position"] == 3

    # The pre-queue too: an event whose sale opens later.
    later = await create_event(
        proxied,
        challenge="off",
        sale_starts_at=(now + timedelta(hours=1)).isoformat(),
        prequeue_opens_at=(now - timedelta(minutes=1)).isoformat(),
    )
    await take(proxied, later["id"], FARM, 3)
    await take(proxied, later["id"], OTHER, 1)
    assert (await purge(proxied, later["id"], FARM, confirm=True))[1]["purged"] == 3
    assert await redis.zcard(EventKeys(later["id"]).pre) == 1


async def test_bad_purges_and_views_are_refused(proxied: Client) -> None:
    ev = await create_event(proxied, challenge="off")
    url = f"/api/admin/events/{ev['id']}/sources/purge"
    cases: list[tuple[Any, int, str]] = [
        ({"source": "127.0.0.1", "confirm": True}, 422, "invalid"),
        ({"source": "1.2.3.0/24"}, 422, "invalid"),
        ({"source": "x|y"}, 422, "invalid"),
        ({"source": 5}, 422, "invalid"),
        ({"confirm": True}, 422, "invalid"),
        ({"source": FARM, "drop": "all"}, 422, "invalid"),
    ]
    for body, status, code in cases:
        r = await proxied.post(url, json=body, headers=ADMIN)
        answer = await r.json()
        assert (r.status, answer["error"]) == (status, code), (body, answer)
        assert answer["detail"]
    r = await proxied.post(url, headers=ADMIN)
    assert (r.status, (await r.json())["error"]) == (422, "body_required")
    r = await proxied.post(url, json={"source": FARM, "confirm": True})
    assert r.status == 401
    r = await proxied.get(f"/api/admin/events/{ev['id']}/bots")
    assert r.status == 401
    for limit in ("0", "101", "x", "-1"):
        r = await proxied.get(f"/api/admin/events/{ev['id']}/bots?limit={limit}", headers=ADMIN)
        assert (r.status, (await r.json())["error"]) == (422, "invalid"), limit
    r = await proxied.get("/api/admin/events/nope/bots", headers=ADMIN)
    assert r.status == 404


async def test_source_counts_are_bounded(redis: Redis, client: Client) -> None:
    """join.lua keeps the ARGV[6] biggest sources; the purge list keeps every place."""
    ev = await create_event(client, challenge="off")
    k = EventKeys(ev["id"])
    script = lua.register(redis, "join")["join"]
    keys = [k.cfg, k.visitors, k.owner, k.tickets, k.pre, k.line, k.seen, k.active, k.seq,
            k.stats, k.spent("-"), k.sources, k.source_places, k.away, k.stats, k.stats]  # fmt: skip
    plan = ["a"] * 3 + ["b"] * 2 + ["c", "d", "e"]
    for i, src in enumerate(plan):
        args: list[str | int] = [f"v{i}", f"{ev['id']}.q{i}", "", "", src, 3, 60_000, 0, 0, 0, 0]
        answer = await script(keys=keys, args=args)
        assert answer[0] in (b"waiting", b"prequeue"), answer
    pairs: Any = await redis.zrange(k.sources, 0, -1, withscores=True)
    kept = {m.decode(): int(s) for m, s in pairs}
    assert len(kept) == 3 and kept["a"] == 3 and kept["b"] == 2, kept
    assert await redis.zcard(k.source_places) == len(plan)


async def test_policy_select_is_a_patch_field_and_audited(
    proxied: Client, pg: asyncpg.Pool
) -> None:
    ev = await create_event(proxied)
    r = await proxied.patch(
        f"/api/admin/events/{ev['id']}", json={"challenge": "always"}, headers=ADMIN
    )
    assert r.status == 200 and (await r.json())["settings"]["challenge"] == "always"
    row = await pg.fetchrow("SELECT old_value, new_value FROM audit_log WHERE field = 'challenge'")
    assert row is not None
    assert (row["old_value"], row["new_value"]) == ('"adaptive"', '"always"')
    assert (await bots(proxied, ev["id"]))["level"] == 2  # "always" starts higher
    r = await join(proxied, ev["id"], headers=source(FAN))
    assert r.status == 200, await r.text()
    view = await bots(proxied, ev["id"])
    assert (view["challenges_solved"], view["sources"][0]["source"]) == (1, FAN)
