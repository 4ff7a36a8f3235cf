"""Bad input against the real app, Redis and PostgreSQL: every malformed, unauthorised or
misdirected request gets a clear 4xx JSON error {"error", "detail"} and changes nothing in Redis
or PostgreSQL. Plus the operational endpoints: health, readiness, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import WSMsgType
from prometheus_client.parser import text_string_to_metric_families

from server.core.identity import VISITOR_COOKIE
from server.core.keys import EventKeys, admin_failures
from server.core.settings import Settings
from server.core.tokens import Signer, new_id

from .helpers import ADMIN, SECRET, create_event, event_body
from .world import AUTH_FAILURES, Client, World, expect_error, session_for, text

# ---- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """The app behind a proxy on loopback (as under `up`): X-Forwarded-For names the client, so
    each kind of wrong admin header can come from an address of its own."""
    return msgspec.structs.replace(base_settings, trusted_proxies="127.0.0.1")


# ---- events, queue ids, methods --------------------------------------------------------------


async def test_unknown_and_malformed_events_are_404_and_write_nothing(world: World) -> None:
    before = await world.state()
    c = world.client
    for event_id in ("no-such-event", "UPPER", "a" * 41, "-leading", "caf%C3%A9", "a%20b", "x.y"):
        for method, path in (
            ("GET", f"/api/events/{event_id}"),
            ("POST", f"/api/events/{event_id}/queue"),
            ("GET", f"/api/admin/events/{event_id}"),
            ("GET", f"/api/admin/events/{event_id}/stats"),
        ):
            response = await c.request(method, path, headers=ADMIN)
            await expect_error(response, 404, "event_not_found")
        response = await c.patch(
            f"/api/admin/events/{event_id}", json={"paused": False}, headers=ADMIN
        )
        await expect_error(response, 404, "event_not_found")
        response = await c.post(
            f"/api/admin/events/{event_id}/admit", json={"count": 1}, headers=ADMIN
        )
        await expect_error(response, 404, "event_not_found")
    for path in ("/api/nothing-here", "/api/events/x/y/z"):
        await expect_error(await c.get(path), 404, "not_found")
    # Outside the API a browser is asking: the same 404 as an HTML page.
    for path in ("/nope", "/static/nope.js", "/static/js/nope.js", f"/e/{world.event_id}/x"):
        response = await c.get(path)
        assert (response.status, response.content_type) == (404, "text/html"), path
        assert "<h1>Page not found</h1>" in await response.text()
    await world.unchanged_since(before)


async def test_malformed_and_unknown_queue_ids(world: World) -> None:
    before = await world.state()
    c = world.client
    malformed = [
        "garbage",
        world.event_id,
        f"{world.event_id}.short",
        f"{world.event_id}.{'A' * 23}",
        f"UPPER.{new_id()}",
        f"{world.event_id}.{new_id()}.extra",
        f"{world.queue_id}x",
        "%00",
    ]
    for queue_id in malformed:
        await expect_error(await c.get(f"/api/queue/{queue_id}"), 422, "bad_queue_id")
        await expect_error(await c.delete(f"/api/queue/{queue_id}"), 422, "bad_queue_id")
        await expect_error(await c.get(f"/api/queue/{queue_id}/ws"), 422, "bad_queue_id")
    unknown = [f"{world.event_id}.{new_id()}", f"no-such-event.{new_id()}"]
    for queue_id in unknown:
        await expect_error(await c.get(f"/api/queue/{queue_id}"), 404, "queue_not_found")
        await expect_error(await c.delete(f"/api/queue/{queue_id}"), 404, "queue_not_found")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await world.fan.ws_connect(f"/api/queue/{queue_id}/ws")
        assert refused.value.status == 404
    await world.unchanged_since(before)


async def test_wrong_methods_are_405_json_with_allow(world: World) -> None:
    before = await world.state()
    c = world.client
    cases = [
        ("PUT", "/api/events", "GET"),
        ("DELETE", f"/api/events/{world.event_id}", "GET"),
        ("GET", f"/api/events/{world.event_id}/queue", "POST"),
        ("PUT", f"/api/events/{world.event_id}/queue", "POST"),
        ("POST", f"/api/queue/{world.queue_id}", "GET"),
        ("PATCH", f"/api/queue/{world.queue_id}", "GET"),
        ("POST", f"/api/queue/{world.queue_id}/ws", "GET"),
        ("DELETE", f"/api/admin/events/{world.event_id}", "PATCH"),
        ("POST", f"/api/admin/events/{world.event_id}/stats", "GET"),
        ("GET", f"/api/admin/events/{world.event_id}/admit", "POST"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/metrics", "GET"),
        ("POST", "/api/openapi.json", "GET"),
    ]
    for method, path, allowed in cases:
        response = await c.request(method, path, headers=ADMIN, json={"paused": True})
        await expect_error(response, 405, "method_not_allowed")
        assert allowed in response.headers.get("Allow", ""), (method, path, response.headers)
    await world.unchanged_since(before)


# ---- admin bodies ----------------------------------------------------------------------------


def bad_create_bodies() -> list[tuple[bytes, int, str | None]]:
    def body(**overrides: Any) -> bytes:
        return json.dumps(event_body(**overrides)).encode()

    def without(field: str) -> bytes:
        data = event_body()
        del data[field]
        return json.dumps(data).encode()

    sections_both = [{"id": "A", "name": "x", "price": 1, "rows": 2, "seats_per_row": 2}]
    sections_both[0]["capacity"] = 4
    return [
        (b"", 422, "body_required"),
        (b"not json", 400, "malformed_json"),
        (b"\xff\xfe\x00garbage", 400, "malformed_json"),
        (b'{"name": "unterminated', 400, "malformed_json"),
        (b"null", 422, "invalid"),
        (b"[]", 422, "invalid"),
        (b"[" * 5000 + b"]" * 5000, 422, "invalid"),
        (b'"a string"', 422, "invalid"),
        (b"{}", 422, "invalid"),
        (without("sections"), 422, "invalid"),
        (body(name=5), 422, "invalid"),
        (body(name=""), 422, "invalid"),
        (body(rate_per_min="fast"), 422, "invalid"),
        (body(rate_per_min=-1), 422, "invalid"),
        (body(rate_per_min=1.5), 422, "invalid"),
        (body(rate_per_min=True), 422, "invalid"),
        (body(rate_per_min=2**70), 422, "invalid"),
        (body(max_active=0), 422, "invalid"),
        (body(currency="eur"), 422, "invalid"),
        (body(id="Not A Slug"), 422, "invalid"),
        (body(id="a" * 41), 422, "invalid"),
        (body(starts_at="2027-03-01T20:00:00"), 422, "invalid"),  # no offset
        (body(starts_at="yesterday"), 422, "invalid"),
        (body(sale_starts_at="2099-01-01T00:00:00Z"), 422, "invalid"),  # after the event
        (body(sections=[]), 422, "invalid"),
        (body(sections=sections_both), 422, "invalid"),
        (body(sections=[{"id": "A", "name": "x", "price": 1, "rows": 2}]), 422, "invalid"),
        (body(sections=[{"id": "A", "name": "x", "price": -1, "capacity": 3}]), 422, "invalid"),
        (
            body(sections=[{"id": "A", "name": "x", "price": 1, "capacity": 3, "colour": "red"}]),
            422,
            "invalid",
        ),
        (
            body(sections=[{"id": "A", "name": "x", "price": 1, "capacity": 3}] * 2),
            422,
            "invalid",
        ),
        (
            body(
                sections=[{"id": "A", "name": "x", "price": 1, "rows": 1000, "seats_per_row": 1000}]
            ),
            422,
            "invalid",
        ),
        (body(surprise="field"), 422, "invalid"),
        (body(paused=True), 422, "invalid"),  # a setting, not part of creation
    ]


async def test_bad_create_bodies_are_rejected_and_store_nothing(world: World) -> None:
    before = await world.state()
    for raw, status, code in bad_create_bodies():
        response = await world.client.post(
            "/api/admin/events",
            data=raw,
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        await expect_error(response, status, code)
    # A taken id is a conflict, and the first event stays as it was.
    taken = json.dumps(event_body(id=world.event_id, name="Impostor")).encode()
    response = await world.client.post(
        "/api/admin/events", data=taken, headers={**ADMIN, "Content-Type": "application/json"}
    )
    await expect_error(response, 409, "event_exists")
    await world.unchanged_since(before)


async def test_bad_patch_and_admit_bodies_change_nothing(world: World) -> None:
    before = await world.state()
    patch_path = f"/api/admin/events/{world.event_id}"
    for raw, status, code in [
        (b"", 422, "body_required"),
        (b"{", 400, "malformed_json"),
        (b"paused=true", 400, "malformed_json"),
        (b"[]", 422, "invalid"),
        (b"true", 422, "invalid"),
        (b'{"paused": "no"}', 422, "invalid"),
        (b'{"paused": 0}', 422, "invalid"),
        (b'{"rate_per_min": -5}', 422, "invalid"),
        (b'{"rate_per_min": "600"}', 422, "invalid"),
        (b'{"max_active": 0}', 422, "invalid"),
        (b'{"session_minutes": 100000}', 422, "invalid"),
        (b'{"paused": false, "currency": "USD"}', 422, "invalid"),
        (b'{"id": "other"}', 422, "invalid"),
    ]:
        response = await world.client.patch(
            patch_path, data=raw, headers={**ADMIN, "Content-Type": "application/json"}
        )
        await expect_error(response, status, code)
    admit_path = f"/api/admin/events/{world.event_id}/admit"
    for raw, status, code in [
        (b"", 422, "body_required"),
        (b"x", 400, "malformed_json"),
        (b'{"count": 0}', 422, "invalid"),
        (b'{"count": 10001}', 422, "invalid"),
        (b'{"count": "5"}', 422, "invalid"),
        (b'{"count": 1, "force": true}', 422, "invalid"),
    ]:
        response = await world.client.post(
            admit_path, data=raw, headers={**ADMIN, "Content-Type": "application/json"}
        )
        await expect_error(response, status, code)
    await world.unchanged_since(before)


async def test_oversized_bodies_are_413(world: World, settings: Settings) -> None:
    before = await world.state()
    huge = json.dumps(event_body(venue="v" * settings.max_body_bytes)).encode()
    assert len(huge) > settings.max_body_bytes
    for method, path in (
        ("POST", "/api/admin/events"),
        ("PATCH", f"/api/admin/events/{world.event_id}"),
        ("POST", f"/api/admin/events/{world.event_id}/admit"),
    ):
        response = await world.client.request(
            method, path, data=huge, headers={**ADMIN, "Content-Type": "application/json"}
        )
        await expect_error(response, 413, "body_too_large")
    await world.unchanged_since(before)


async def test_admin_routes_need_the_admin_token(world: World) -> None:
    before = await world.state()
    c = world.client
    token = ADMIN["Authorization"].removeprefix("Bearer ")
    wrong_headers: list[dict[str, str]] = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"Authorization": f"Bearer {token.upper()}"},
        {"X-Admin-Token": token},
    ]
    routes = [
        ("GET", "/api/admin/events", None),
        ("POST", "/api/admin/events", event_body()),
        ("GET", f"/api/admin/events/{world.event_id}", None),
        ("PATCH", f"/api/admin/events/{world.event_id}", {"paused": False}),
        ("GET", f"/api/admin/events/{world.event_id}/stats", None),
        ("POST", f"/api/admin/events/{world.event_id}/admit", {"count": 5}),
    ]
    # Each kind of wrong header from its own address: a wrong token is a counted failure (see
    # test_admin_guessing_is_throttled_per_address), and six stay below the throttle.
    for i, headers in enumerate(wrong_headers):
        for method, path, body in routes:
            sent = {**headers, "X-Forwarded-For": f"192.0.2.{i + 1}"}
            response = await c.request(method, path, json=body, headers=sent)
            await expect_error(response, 401, "unauthorized")
    failures = {
        text(key): int(text(await world.redis.get(key)))
        for key in await world.redis.keys(f"{AUTH_FAILURES}*")
    }
    # Bearer tokens that were presented and wrong count; no token (or another scheme) does not.
    assert failures == {
        admin_failures(f"192.0.2.{i + 1}"): len(routes)
        for i, headers in enumerate(wrong_headers)
        if headers.get("Authorization", "").startswith("Bearer ")
        and headers["Authorization"] != "Bearer"
    }
    await world.unchanged_since(before, ignore=AUTH_FAILURES)


# ---- visitors: cookies and other people's places ---------------------------------------------


async def test_another_visitors_queue_id_is_403(world: World) -> None:
    before = await world.state()
    path = f"/api/queue/{world.queue_id}"
    async with world.stranger.get(path) as r:
        await expect_error(r, 403, "forbidden")
    async with world.stranger.delete(path) as r:
        await expect_error(r, 403, "forbidden")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.stranger.ws_connect(f"{path}/ws")
    assert refused.value.status == 403
    # Nothing changed, not even the owner's sign of life.
    await world.unchanged_since(before)
    seen = EventKeys(world.event_id).seen
    score_before = await world.redis.zscore(seen, world.queue_id)
    for _ in range(3):
        async with world.stranger.get(path) as r:
            assert r.status == 403
    assert await world.redis.zscore(seen, world.queue_id) == score_before
    async with world.fan.get(path) as r:
        mine = await r.json()
    assert (mine["state"], mine["position"]) == ("waiting", 1)


async def test_forged_cookies_are_new_visitors(world: World) -> None:
    before = await world.state()
    fan_cookie = next(c.value for c in world.fan.cookie_jar if c.key == VISITOR_COOKIE)
    fan_id = fan_cookie.split(".")[0]
    forgeries = [
        "garbage",
        "",
        fan_id,  # the id without its signature
        f"{fan_id}.",
        f"{fan_id}.{'A' * 43}",
        f"{fan_id}.{fan_cookie.split('.')[1]}.extra",
        Signer("another-secret-" + "z" * 32).visitor_cookie(fan_id),
        f"{fan_id}x.{fan_cookie.split('.')[1]}",
        "../../etc/passwd",
        "\u00e9" * 30,
    ]
    for forged in forgeries:
        async with session_for(world.client, forged) as thief:
            async with thief.get(f"/api/queue/{world.queue_id}") as r:
                await expect_error(r, 403, "forbidden")
            async with thief.delete(f"/api/queue/{world.queue_id}") as r:
                await expect_error(r, 403, "forbidden")
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await thief.ws_connect(f"/api/queue/{world.queue_id}/ws")
            assert refused.value.status == 403
            # The forged cookie is replaced by a fresh identity of the thief's own.
            async with thief.get("/healthz") as r:
                assert r.status == 200
                minted = r.cookies[VISITOR_COOKIE].value
            assert minted != forged
            assert Signer(SECRET).visitor_from_cookie(minted) not in (None, fan_id)
    await world.unchanged_since(before)
    # The real cookie still works, and a valid cookie is not replaced.
    async with world.fan.get(f"/api/queue/{world.queue_id}") as r:
        assert r.status == 200
        assert VISITOR_COOKIE not in r.cookies
        assert (await r.json())["position"] == 1


# ---- websockets ------------------------------------------------------------------------------


async def test_plain_request_on_the_websocket_path_is_400(world: World) -> None:
    before = await world.state()
    for headers in (
        {},
        {"Upgrade": "websocket"},
        {"Connection": "Upgrade", "Upgrade": "h2c"},
        {"Connection": "Upgrade", "Upgrade": "websocket"},  # no key, no version
    ):
        async with world.fan.get(f"/api/queue/{world.queue_id}/ws", headers=headers) as r:
            await expect_error(r, 400, "websocket_expected")
    await world.unchanged_since(before)


async def receive_reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = await ws.receive_json(timeout=10)
        if msg["type"] != "tick":
            return msg


async def test_garbage_frames_get_errors_then_the_socket_closes(world: World) -> None:
    before = await world.state()
    ws = await world.fan.ws_connect(f"/api/queue/{world.queue_id}/ws")
    hello = await receive_reply(ws)
    assert (hello["type"], hello["position"]) == ("status", 1)
    frames = [
        "not json",
        "[]",
        "null",
        "42",
        '{"type": "launch"}',
        '{"type": "PING"}',
        '{"type": "admitted", "access_token": "x"}',
        '{"type": 1}',
        "\u0000",
    ]
    for frame in frames:
        await ws.send_str(frame)
        reply = await receive_reply(ws)
        assert reply["type"] == "error" and reply["error"] == "bad_message", (frame, reply)
    await ws.send_bytes(b"\x00\xff")
    assert (await receive_reply(ws))["error"] == "bad_message"
    await ws.send_str('{"type": "ping"}')
    assert await receive_reply(ws) == {"type": "pong"}
    # Past the limit of bad frames the server closes with a policy violation.
    for _ in range(30):
        if ws.closed:
            break
        await ws.send_str("bad")
    while (msg := await ws.receive(timeout=10)).type == WSMsgType.TEXT:
        pass
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1008
    await ws.close()

    # An oversized frame closes the socket as "message too big".
    ws = await world.fan.ws_connect(f"/api/queue/{world.queue_id}/ws")
    assert (await receive_reply(ws))["type"] == "status"
    await ws.send_str(json.dumps({"type": "ping", "pad": "x" * 10_000}))
    while (msg := await ws.receive(timeout=10)).type == WSMsgType.TEXT:
        pass
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1009
    await ws.close()

    # The place is intact: same ticket, same position, nothing else touched.
    ws = await world.fan.ws_connect(f"/api/queue/{world.queue_id}/ws")
    again = await receive_reply(ws)
    assert (again["type"], again["state"], again["position"], again["ticket"]) == (
        "status",
        "waiting",
        1,
        1,
    )
    await ws.close()
    await world.unchanged_since(before)


async def test_joining_before_the_queue_opens_is_409_and_writes_nothing(
    world: World, client: Client
) -> None:
    before = await world.state()
    later = await create_event(
        client,
        sale_starts_at="2099-01-01T00:00:00Z",
        prequeue_opens_at="2098-12-31T00:00:00Z",
        starts_at="2099-06-01T00:00:00Z",
    )
    after_create = await world.state()
    assert {"events", "sections"} <= set(after_create.changes(before))
    async with world.stranger.post(f"/api/events/{later['id']}/queue") as r:
        await expect_error(r, 409, "not_open")
    await world.unchanged_since(after_create)


# ---- health, readiness, metrics, OpenAPI -----------------------------------------------------


async def test_health_and_readiness(client: Client) -> None:
    healthz = await client.get("/healthz")
    assert healthz.status == 200 and await healthz.json() == {"status": "ok"}
    readyz = await client.get("/readyz")
    assert readyz.status == 200 and await readyz.json() == {"status": "ready"}


async def test_metrics_are_prometheus_text(world: World) -> None:
    c = world.client
    await c.get(f"/api/events/{world.event_id}")
    deadline = time.monotonic() + 30
    while True:
        response = await c.get("/metrics")
        assert response.status == 200
        assert response.content_type == "text/plain"
        body = await response.text()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        waiting = [
            s.value
            for s in getattr(families.get("boxoffice_waiting"), "samples", [])
            if s.labels.get("event") == world.event_id
        ]
        if waiting or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert waiting == [1.0], "the admission step reports the waiting line"
    assert {
        "boxoffice_http_request_duration_seconds",
        "boxoffice_admissions",
        "boxoffice_websocket_connections",
        "boxoffice_tick_errors",
        "boxoffice_active_sessions",
    } <= set(families)
    requests = families["boxoffice_http_request_duration_seconds"]
    routes = {s.labels.get("route") for s in requests.samples}
    assert "/api/events/{event_id}" in routes
    assert all(name.startswith("boxoffice_") for name in families)


DOCUMENTED = {
    "/api/events": {"get"},
    "/api/events/{event_id}": {"get"},
    "/api/events/{event_id}/queue": {"post"},
    "/api/queue/{queue_id}": {"get", "delete"},
    "/api/queue/{queue_id}/ws": {"get"},
    "/api/admin/events": {"post"},
    "/api/admin/events/{event_id}": {"patch"},
    "/api/admin/events/{event_id}/stats": {"get"},
    "/metrics": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


async def test_openapi_document(client: Client) -> None:
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    doc = json.loads(await response.text())
    assert str(doc["openapi"]).startswith("3.")
    paths = doc["paths"]
    for path, methods in DOCUMENTED.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
        for method in methods:
            assert paths[path][method]["responses"], (path, method)
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    error = schemas["ErrorBody"]
    assert set(error["required"]) == {"error", "detail"}
    create = paths["/api/admin/events"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/EventCreate"
    )
