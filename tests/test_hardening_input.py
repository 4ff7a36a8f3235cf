"""Issue 9, items 3, 7, 8 (app side), 9, 10 and 11: each hostile input exactly as the review sent
it, the answer, and that nothing changed. The rules behind them are pure functions, tested by
table here too. (Items 8's NGINX side: tests/test_nginx.py; item 12: tests/test_schema.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis as sync_redis
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from server.booking.service import BOOKING
from server.core.bodies import media_type_problem
from server.core.identity import VISITOR_COOKIE
from server.core.keys import EventKeys
from server.core.origins import origin_allowed
from server.core.settings import Settings, SettingsError
from server.core.tokens import new_id
from server.ops.catalog import MAX_ASSIGNED_SEATS_PER_EVENT
from server.runtime.embedded import EmbeddedRedis
from server.runtime.listener import ConnectionLimits, Runner
from server.store.redis_client import PackedSSLConnection, make_redis
from server.waiting.fanout import MAX_SOCKETS_PER_PLACE

from .helpers import ADMIN, admitted_fan, create_event, event_body, visitor
from .world import World, expect_error, pg_state

Client = TestClient[Any, Any]
JSON = {"Content-Type": "application/json"}


# ---- item 3: NUL bytes and odd values ----------------------------------------------------------


async def test_nul_and_odd_values_are_4xx_and_write_nothing(world: World) -> None:
    before = await world.state()
    c = world.client
    for path in ("/api/orders/%00", "/api/orders/%00/tickets/1.svg", "/api/orders/a%0Ab"):
        await expect_error(await c.get(path), 404, "order_not_found")
    await expect_error(await c.post("/api/orders/%00/pay", json={"card": "4242424242424242"}), 404)
    bad_events = [
        event_body(name="a\u0000b"),
        event_body(venue="Arena\u0000"),
        event_body(id="evil\n"),
        event_body(name="Spring Tour\n"),
        event_body(sale_starts_at="0001-01-01T00:00:00+14:00"),
        event_body(starts_at="9999-12-31T23:59:59-14:00"),
        event_body(sections=[{"id": "A\n", "name": "x", "price": 1, "capacity": 3}]),
    ]
    for body in bad_events:
        response = await c.post("/api/admin/events", json=body, headers=ADMIN)
        await expect_error(response, 422)
    await world.unchanged_since(before)


async def test_refused_checkout_keeps_the_hold_and_its_extension(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    ev = await create_event(fans)
    fan = await admitted_fan(fans, ev["id"])
    status, hold = await fan.hold(ev["id"], {"seats": ["A-1-1"]})
    assert status == 201, hold
    k = EventKeys(ev["id"])
    stored = await redis.hget(k.holds, hold["hold_id"])
    assert stored is not None
    expiry = await redis.zscore(k.holdexp, hold["hold_id"])
    before = await pg_state(pg)
    for email in ("a\u0000b@x.com", "fan@example.com\n", "fan@exam\tple.com", "x" * 300):
        status, answer = await fan.checkout(hold["hold_id"], email)
        assert status == 422 and answer["error"] == "invalid", (email, answer)
    status, answer = await fan.call("POST", f"/api/holds/{hold['hold_id']}/checkout", None)
    assert status == 422 and answer["error"] == "body_required"
    # The hold is as it was: same record (its one-time extension flag unset), same expiry.
    assert await redis.hget(k.holds, hold["hold_id"]) == stored
    assert json.loads(stored)["x"] == 0
    assert await redis.zscore(k.holdexp, hold["hold_id"]) == expiry
    assert await pg_state(pg) == before
    # And the honest checkout after them still gets the extension.
    status, order = await fan.checkout(hold["hold_id"])
    assert status == 201, order
    extended = await redis.hget(k.holds, hold["hold_id"])
    assert extended is not None and json.loads(extended)["x"] == 1


# ---- item 7: content types, origins, secure cookies ------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "content_type", "has_body", "refused"),
    [
        ("POST", "/api/holds/x/checkout", "application/json", True, False),
        ("POST", "/api/holds/x/checkout", "application/json; charset=utf-8", True, False),
        ("POST", "/api/holds/x/checkout", "Application/JSON", True, False),
        ("POST", "/api/holds/x/checkout", "text/plain", True, True),
        ("POST", "/api/holds/x/checkout", "application/x-www-form-urlencoded", True, True),
        ("POST", "/api/holds/x/checkout", "multipart/form-data; boundary=x", True, True),
        ("POST", "/api/holds/x/checkout", None, True, True),
        ("PATCH", "/api/admin/events/x", "text/plain;charset=UTF-8", True, True),
        ("POST", "/api/events/x/queue", "application/octet-stream", False, False),  # no body
        ("POST", "/api/events/x/queue", None, False, False),
        ("GET", "/api/events", "text/plain", True, False),  # not a body method
        ("POST", "/e/x", "text/plain", True, False),  # not the API
    ],
)
def test_media_type_rule(
    method: str, path: str, content_type: str | None, has_body: bool, refused: bool
) -> None:
    assert (media_type_problem(method, path, content_type, has_body) is not None) == refused


@pytest.mark.parametrize(
    ("origin", "public_url", "host", "allowed"),
    [
        (None, "", "a.example", True),  # not a browser
        ("https://tickets.example", "https://tickets.example", "x", True),
        ("https://tickets.example:443", "https://tickets.example/", "x", True),
        ("https://TICKETS.example", "https://tickets.example", "x", True),
        ("http://tickets.example", "https://tickets.example", "x", False),  # scheme
        ("https://tickets.example:8443", "https://tickets.example", "x", False),  # port
        ("https://evil.example", "https://tickets.example", "tickets.example", False),
        ("null", "https://tickets.example", "x", False),
        ("http://127.0.0.1:8080", "", "127.0.0.1:8080", True),  # dev: same host
        ("http://192.168.1.5:8080", "", "192.168.1.5:8080", True),
        ("https://box.example", "", "box.example", True),
        ("http://evil.example", "", "127.0.0.1:8080", False),
        ("http://127.0.0.1:9999", "", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080", "", None, False),
        ("null", "", "127.0.0.1:8080", False),
        ("javascript:alert(1)", "", "127.0.0.1:8080", False),
        ("http://[::1]:8080", "", "[::1]:8080", True),
    ],
)
def test_origin_rule(origin: str | None, public_url: str, host: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, public_url, host) is allowed


async def test_csrf_second_line(world: World) -> None:
    before = await world.state()
    c = world.client
    # A cross-site form can post text/plain or a form; the API refuses both with 415.
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = await c.post(
            "/api/admin/events",
            data=json.dumps(event_body()),
            headers={**ADMIN, "Content-Type": content_type},
        )
        await expect_error(response, 415, "unsupported_media_type")
    # A page of another site opening the fan's queue socket, or the console's: 403 before any
    # upgrade; a plain GET on the live route is 400 (with the token), 401 without.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.fan.ws_connect(
            f"/api/queue/{world.queue_id}/ws", headers={"Origin": "https://evil.example"}
        )
    assert refused.value.status == 403
    live = f"/api/admin/events/{world.event_id}/live"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await c.ws_connect(live, headers={**ADMIN, "Origin": "https://evil.example"})
    assert refused.value.status == 403
    await expect_error(await c.get(live, headers=ADMIN), 400, "websocket_expected")
    await expect_error(await c.get(live), 401, "unauthorized")
    # The same-host page is welcome.
    host = f"{c.host}:{c.port}"
    ws = await world.fan.ws_connect(
        f"/api/queue/{world.queue_id}/ws", headers={"Origin": f"http://{host}"}
    )
    assert (await ws.receive_json(timeout=10))["type"] in ("status", "tick")
    await ws.close()
    await world.unchanged_since(before)


async def test_visitor_cookie_is_secure_over_tls_as_the_local_proxy_reports_it(
    fans: Client,
) -> None:
    plain = await fans.get("/healthz")
    assert not plain.cookies[VISITOR_COOKIE]["secure"]
    behind_tls = await fans.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.cookies[VISITOR_COOKIE]["secure"]
    assert behind_tls.cookies[VISITOR_COOKIE]["httponly"]


# ---- items 8 and 9: the app's own listener ---------------------------------------------------


@pytest.fixture
async def listener(settings: Settings, redis: Redis, pg: asyncpg.Pool) -> AsyncIterator[Any]:
    """The real app behind the production listener (server.runtime.listener.Runner), with a
    1 s idle timeout and a cap of 5 connections per address, loopback not exempt."""
    from server.runtime.app import create_app

    runner = Runner(create_app(settings), ConnectionLimits(5, exempt=()), keepalive_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server) and server.sockets
    port = int(server.sockets[0].getsockname()[1])
    yield port
    await runner.cleanup()


async def read_all(reader: asyncio.StreamReader) -> bytes:
    out = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            out += chunk
    except ConnectionResetError:
        pass
    return out


async def test_parser_refusals_are_json(listener: int) -> None:
    cases = [
        (b"GET /api/" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "uri_too_long"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431, None),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431, None),
        (b"BREW /api/events HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_method"),
        (b"GET /api/events HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400, "bad_request"),
    ]
    for raw, status, code in cases:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener)
        writer.write(raw)
        answer = await read_all(reader)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == str(status).encode(), (raw[:40], head)
        assert b"Content-Type: application/json" in head, head
        data = json.loads(body)
        assert set(data) == {"error", "detail"}
        assert code is None or data["error"] == code


async def test_slow_headers_and_connection_floods_are_cut(listener: int) -> None:
    # Slow headers: 5 connections that never finish their headers are closed by the idle
    # timeout (1 s here, 20 s in production), though they keep sending a byte now and then.
    conns = [await asyncio.open_connection("127.0.0.1", listener) for _ in range(5)]
    for _, writer in conns:
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n")

    async def dribble_until_closed(reader: asyncio.StreamReader, writer: Any) -> bool:
        for _ in range(100):
            if reader.at_eof():
                return True
            try:
                writer.write(b"X-a: b\r\n")
                await writer.drain()
                await asyncio.wait_for(reader.read(1), 0.3)
            except TimeoutError:
                continue
            except ConnectionError:
                return True
        return reader.at_eof()

    closed = await asyncio.gather(*(dribble_until_closed(r, w) for r, w in conns))
    assert all(closed), closed
    for _, writer in conns:
        writer.close()
    # A sixth connection from one address while five are open is closed at once.
    held = [await asyncio.open_connection("127.0.0.1", listener) for _ in range(5)]
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert await read_all(reader) == b""
    writer.close()
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    # Once they are gone, the address is served again.
    reader, writer = await asyncio.open_connection("127.0.0.1", listener)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert (await read_all(reader)).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_one_place_holds_a_bounded_number_of_sockets(world: World) -> None:
    before = await world.state()
    path = f"/api/queue/{world.queue_id}/ws"
    sockets = [await world.fan.ws_connect(path) for _ in range(MAX_SOCKETS_PER_PLACE)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.fan.ws_connect(path)
    assert refused.value.status == 429
    await sockets.pop().close()
    await asyncio.sleep(0.1)
    sockets.append(await world.fan.ws_connect(path))  # a freed slot is usable again
    for ws in sockets:
        await ws.close()
    await world.unchanged_since(before)


# ---- item 10: Redis with a password ----------------------------------------------------------


def test_embedded_redis_asks_for_a_password(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    try:
        assert server.password and f":{server.password}@" in url
        anonymous = sync_redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
        with pytest.raises(sync_redis.AuthenticationError):
            anonymous.set("bo:x", "1")
        anonymous.close()
        with sync_redis.Redis.from_url(url, socket_timeout=2) as client:
            assert client.ping()
            assert client.get("bo:x") is None  # the refused write left nothing
        conf = tmp_path / "redis" / "redis.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600
        assert server.process is not None
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert server.password.encode() not in cmdline  # not visible in `ps`
    finally:
        server.stop()
    assert os.path.exists(conf)


def test_redis_urls_with_passwords_and_tls_are_kept_whole() -> None:
    s = Settings(redis_url="rediss://:s3cret@cache.example:6380/2", database_url="x")
    client = make_redis(s)
    assert isinstance(client, Redis)
    pool = client.connection_pool
    assert pool.connection_kwargs["password"] == "s3cret"
    assert pool.connection_kwargs["db"] == 2
    # TLS kept, and its commands packed by hiredis like the rest (redis-py 8.2 lets a given
    # connection class win over the scheme's: a plain TCP class here would drop TLS)
    assert issubclass(pool.connection_class, SSLConnection)
    assert pool.connection_class is PackedSSLConnection
    unix = make_redis(Settings(redis_url="unix:///run/redis/redis.sock?db=1", database_url="x"))
    assert isinstance(unix, Redis)
    assert issubclass(unix.connection_pool.connection_class, UnixDomainSocketConnection)
    assert unix.connection_pool.connection_kwargs["path"] == "/run/redis/redis.sock"
    for bad in ("http://cache.example", "cache.example:6379"):
        with pytest.raises(SettingsError, match="redis_url"):
            Settings(redis_url=bad)


# ---- item 11: seat map cost ------------------------------------------------------------------


async def test_seat_maps_are_capped_and_built_only_on_change(
    fans: Client, redis: Redis, pg: asyncpg.Pool
) -> None:
    sections = [
        {"id": f"S{i}", "name": "x", "price": 1, "rows": 100, "seats_per_row": 200}
        for i in range(3)
    ]  # 60,000 assigned seats
    assert MAX_ASSIGNED_SEATS_PER_EVENT < 3 * 100 * 200
    before = await pg_state(pg)
    response = await fans.post(
        "/api/admin/events", json=event_body(sections=sections), headers=ADMIN
    )
    answer = await expect_error(response, 422, "too_many_seats")
    assert str(MAX_ASSIGNED_SEATS_PER_EVENT) in answer["detail"]
    assert await pg_state(pg) == before

    ev = await create_event(fans)
    app = fans.app
    assert app is not None
    maps = app[BOOKING].seat_maps
    seats = f"/api/events/{ev['id']}/seats"
    first = await (await fans.get(seats, headers=visitor())).json()
    builds = maps.builds
    for _ in range(5):  # unchanged: served from the process's copy
        assert await (await fans.get(seats, headers=visitor())).json() == first
    assert maps.builds == builds
    # The catalog never builds a seat map; its `available` comes from counters.
    listed = await (await fans.get("/api/events")).json()
    assert [e["available"] for e in listed if e["id"] == ev["id"]] == [first["available"]]
    assert maps.builds == builds
    # A change made elsewhere (another process: straight through the hold script) is seen.
    fan = await admitted_fan(fans, ev["id"])
    await redis.incr(EventKeys(ev["id"]).seatver)  # what every hold script does
    again = await (await fans.get(seats, headers=visitor())).json()
    assert maps.builds == builds + 1 and again == first
    status, _ = await fan.hold(ev["id"], {"seats": ["A-1-1"]})
    assert status == 201
    held = await (await fans.get(seats, headers=visitor())).json()
    assert held["available"] == first["available"] - 1
    one = await (await fans.get(f"/api/events/{ev['id']}")).json()
    assert one["available"] == first["available"] - 1
    assert new_id()  # (ids of the helpers stay 22 characters)
