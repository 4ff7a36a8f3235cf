"""What a waiting socket keeps alive in the server, and how a vanished peer is found: the
conversation runs after the handler and its middlewares returned, and the Hub's one ping loop
(not a timer per socket) drops a socket that stopped answering."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from server.core.tokens import new_id
from server.runtime.listener import JsonErrorHandler
from server.waiting.fanout import HUB
from server.waiting.session import Socket

from .helpers import create_event, eventually, join, visitor

Client = TestClient[Any, Any]


def _await_chain(task: asyncio.Task[Any]) -> list[str]:
    """The names of the coroutines suspended inside `task`, outermost first."""
    names: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and not isinstance(awaited, asyncio.Future):
        code = getattr(awaited, "cr_code", None)
        names.append(code.co_qualname if code is not None else type(awaited).__name__)
        awaited = getattr(awaited, "cr_await", None)
    return names


async def _open(fans: Client, event_id: str) -> tuple[Any, dict[str, str]]:
    who = visitor(new_id())
    joined = await (await join(fans, event_id, who)).json()
    ws = await fans.ws_connect(
        f"/api/queue/{joined['queue_id']}/ws", headers=who, autoping=False, heartbeat=None
    )
    assert (await ws.receive_json(timeout=5))["type"] == "status"
    return ws, who


async def test_a_waiting_socket_keeps_no_handler_or_middleware_frame(fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=0)
    ws, _ = await _open(fans, ev["id"])
    chains = [_await_chain(t) for t in asyncio.all_tasks()]
    mine = [c for c in chains if "_converse" in c]
    assert len(mine) == 1, chains
    chain = mine[0]
    # aiohttp's request task, its finish_response, the conversation, receive() and the reader:
    # with the conversation inside the handler it was 12 (five middlewares, aiohttp's _handle
    # and sub-app middleware, the handler, an `async for`).
    assert len(chain) <= 5, chain
    assert not any("middleware" in name or name == "websocket" for name in chain), chain
    # the visitor cookie was read from the header's text: the request (kept as long as the
    # socket) holds no parsed dict of every cookie
    task = next(t for t in asyncio.all_tasks() if "_converse" in _await_chain(t))
    request = task.get_coro().cr_frame.f_locals["request"]  # type: ignore[union-attr]
    assert "bo_visitor" in request.headers["Cookie"]
    assert "cookies" not in request._cache
    # still a full conversation: a ping is answered, a close ends it and frees its place
    await ws.send_str('{"type": "ping"}')
    reply = await ws.receive_json(timeout=5)
    while reply["type"] == "tick":
        reply = await ws.receive_json(timeout=5)
    assert reply["type"] == "pong"
    await ws.close()
    hub = fans.app[HUB]
    await eventually(lambda: _true(hub.count(ev["id"]) == 0), "the socket left the hub")
    await eventually(
        lambda: _true(not any("_converse" in _await_chain(t) for t in asyncio.all_tasks())),
        "the conversation ended",
    )


async def _true(value: bool) -> bool:
    return value


async def test_a_socket_that_stops_answering_pings_is_dropped(fans: Client) -> None:
    ev = await create_event(fans, rate_per_min=0)
    hub = fans.app[HUB]
    silent, _ = await _open(fans, ev["id"])  # never reads again: answers no ping
    live, _ = await _open(fans, ev["id"])
    assert hub.count(ev["id"]) == 2

    await hub.ping_step()  # both pinged
    msg = await live.receive(timeout=5)
    while msg.type != WSMsgType.PING:
        msg = await live.receive(timeout=5)
    await live.pong(msg.data)
    # the server reads in order: once it answered this ping message, it has seen the pong
    await live.send_str('{"type": "ping"}')
    reply = await live.receive(timeout=5)
    while reply.type == WSMsgType.TEXT and '"pong"' not in reply.data:
        reply = await live.receive(timeout=5)
    assert reply.type == WSMsgType.TEXT

    await hub.ping_step()  # the silent one said nothing since the last ping: dropped
    await eventually(lambda: _true(hub.count(ev["id"]) == 1), "the silent socket was dropped")
    ended = await silent.receive(timeout=5)
    while ended.type in (WSMsgType.TEXT, WSMsgType.PING):
        ended = await silent.receive(timeout=5)
    assert ended.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)

    # the live one is still served
    await live.send_str('{"type": "ping"}')
    reply = await live.receive(timeout=5)
    while reply.type != WSMsgType.TEXT or '"pong"' not in reply.data:
        reply = await live.receive(timeout=5)
    await live.close()


async def test_a_waiting_socket_keeps_its_attributes_in_the_shared_table(fans: Client) -> None:
    """Sockets created by the dozen before any is prepared (a crowd's handshakes) must not
    leave a waiting socket with a dict of its own for the names aiohttp sets later."""
    crowd = [Socket() for _ in range(40)]
    ev = await create_event(fans, rate_per_min=0)
    ws, _ = await _open(fans, ev["id"])
    waiting = [o for o in gc.get_objects() if type(o) is Socket and o.prepared and not o.closed]
    assert waiting and crowd
    for sock in waiting:
        own = [r for r in gc.get_referents(sock) if isinstance(r, dict) and "_req" in r]
        assert not own, sorted(own[0])
    await ws.close()


def test_a_connection_handler_has_no_instance_dict() -> None:
    """The listener makes one JsonErrorHandler per connection: with __slots__ (as aiohttp's
    RequestHandler has) it carries no __dict__ of its own."""
    handler = JsonErrorHandler.__new__(JsonErrorHandler)
    assert not hasattr(handler, "__dict__")
