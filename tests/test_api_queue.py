"""The queue through HTTP and the websocket, against the real app, Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from server.core.tokens import Signer, TokenError

from .helpers import ADMIN, SECRET, create_event, join, visitor

Client = TestClient[Any, Any]


async def test_join_is_idempotent_per_visitor(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    first = await (await join(client, ev["id"])).json()
    again = await (await join(client, ev["id"])).json()
    assert first["state"] == "waiting"
    assert first["position"] == 1
    assert again["queue_id"] == first["queue_id"]
    assert again["ticket"] == first["ticket"]


async def test_status_polling_and_leave(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    joined = await (await join(client, ev["id"])).json()
    status = await client.get(f"/api/queue/{joined['queue_id']}")
    assert status.status == 200
    assert (await status.json())["position"] == 1
    gone = await client.delete(f"/api/queue/{joined['queue_id']}")
    assert gone.status == 204
    after = await (await client.get(f"/api/queue/{joined['queue_id']}")).json()
    assert after["state"] == "expired"
    rejoined = await (await join(client, ev["id"])).json()
    assert rejoined["queue_id"] != joined["queue_id"]


async def test_websocket_streams_status_then_admission(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    joined = await (await join(client, ev["id"])).json()
    ws = await client.ws_connect(f"/api/queue/{joined['queue_id']}/ws")
    first = await ws.receive_json(timeout=5)
    assert first["type"] == "status"
    assert first["state"] == "waiting"
    assert first["position"] == 1
    await ws.send_json({"type": "ping"})
    seen = []
    patch = await client.patch(
        f"/api/admin/events/{ev['id']}", json={"rate_per_min": 600}, headers=ADMIN
    )
    assert patch.status == 200
    while True:
        msg = await ws.receive_json(timeout=5)
        seen.append(msg["type"])
        if msg["type"] == "admitted":
            break
    assert "pong" in seen
    claims = Signer(SECRET).verify_access(
        msg["access_token"], event_id=ev["id"], visitor_id=None, now_ms=0
    )
    assert claims.q == joined["queue_id"]
    status = await (await client.get(f"/api/queue/{joined['queue_id']}")).json()
    assert status["state"] == "admitted"
    assert status["access_token"] == msg["access_token"]
    await ws.close()


async def test_token_refused_for_other_event_and_forgery(client: Client) -> None:
    ev = await create_event(client, rate_per_min=6000)
    joined = await (await join(client, ev["id"])).json()
    for _ in range(100):
        status = await (await client.get(f"/api/queue/{joined['queue_id']}")).json()
        if status["state"] == "admitted":
            break
        await asyncio.sleep(0.05)
    token = status["access_token"]
    signer = Signer(SECRET)
    for kwargs in (
        {"event_id": "other-event", "visitor_id": None, "now_ms": 0},
        {"event_id": ev["id"], "visitor_id": "someone-else-xxxxxxxxx", "now_ms": 0},
        {"event_id": ev["id"], "visitor_id": None, "now_ms": 2**62},
    ):
        try:
            signer.verify_access(token, **kwargs)
        except TokenError:
            pass
        else:
            raise AssertionError(f"token accepted with {kwargs}")
    forged = Signer("another-secret-" + "z" * 32)
    try:
        forged.verify_access(token, event_id=ev["id"], visitor_id=None, now_ms=0)
    except TokenError:
        pass
    else:
        raise AssertionError("token verified under another secret")


async def test_garbage_websocket_frames_get_errors(client: Client) -> None:
    ev = await create_event(client, rate_per_min=0)
    joined = await (await join(client, ev["id"])).json()
    ws = await client.ws_connect(f"/api/queue/{joined['queue_id']}/ws")
    assert (await ws.receive_json(timeout=5))["type"] == "status"
    for frame in ("not json", '{"type": "launch"}', "[]"):
        await ws.send_str(frame)
        reply = await ws.receive_json(timeout=5)
        while reply["type"] == "tick":
            reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "error"
    await ws.send_bytes(b"\x00\x01")
    reply = await ws.receive_json(timeout=5)
    assert reply["type"] in ("error", "tick")
    status = await (await client.get(f"/api/queue/{joined['queue_id']}")).json()
    assert status["state"] == "waiting" and status["position"] == 1
    await ws.close()
    assert ws.closed
    assert (await ws.receive()).type in (WSMsgType.CLOSED, WSMsgType.CLOSE)


async def test_a_tick_reaches_every_waiting_socket_as_one_valid_frame(client: Client) -> None:
    """Ticks are framed once and written into each socket's transport: every waiting socket
    gets a well-formed text frame with the event's new state, and other frames still follow."""
    ev = await create_event(client, rate_per_min=0)
    sockets = []
    for _ in range(3):
        joined = await (await join(client, ev["id"], visitor())).json()
        ws = await client.ws_connect(f"/api/queue/{joined['queue_id']}/ws")
        assert (await ws.receive_json(timeout=5))["type"] == "status"
        sockets.append(ws)
    patch = await client.patch(
        f"/api/admin/events/{ev['id']}", json={"paused": True}, headers=ADMIN
    )
    assert patch.status == 200
    for ws in sockets:
        tick = await ws.receive_json(timeout=10)
        while not (tick["type"] == "tick" and tick["paused"]):
            tick = await ws.receive_json(timeout=10)
        assert tick["state"] == "on_sale" and tick["waiting"] >= 1
        await ws.send_str('{"type": "ping"}')  # aiohttp's own writer, after ours
        reply = await ws.receive_json(timeout=5)
        while reply["type"] == "tick":
            reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "pong"
        await ws.close()
