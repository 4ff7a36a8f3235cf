"""A fan's websocket after the upgrade: the first message, then pongs, errors for bad frames
and answers to pings until the socket closes. It runs as the response's write_eof(), which
aiohttp awaits once the handler and every middleware around it have returned, so a waiting fan
keeps none of their coroutine frames alive."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from server.core.errors import REDIS_DOWN
from server.core.keys import EventKeys
from server.core.messages import ErrorMsg, PongMsg, client_decoder
from server.waiting.fanout import Conn, Hub
from server.waiting.line import Place
from server.waiting.room import Room

log = logging.getLogger("boxoffice.queue")

MAX_BAD_FRAMES = 20
WS_MAX_MESSAGE = 4096
_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})
_UNEXPECTED_CLOSE = 1011  # the server met an error: the fan's page reconnects

Conversation = Callable[[], Coroutine[Any, Any, None]]

# The names aiohttp sets on a websocket response after its __init__ and before it waits for
# the client's next frame (prepare(), then receive()): class defaults until then.
_SET_BEFORE_WAITING = (
    "_loop",
    "_keep_alive",
    "_must_be_empty_body",
    "_req",
    "_payload_writer",
    "_ws_protocol",
    "_writer",
    "_reader",
    "_parser",
    "_waiting",
)


class Socket(web.WebSocketResponse):
    """The queue's websocket. aiohttp finishes every response by awaiting its write_eof() after
    the handler returned (a websocket's closes it); a Socket given a conversation runs it there
    instead, then closes. While a fan waits, the await chain of their socket is aiohttp's
    connection and request (start, _handle_request, finish_response), the conversation and
    receive(): 6 coroutines instead of 14 when the handler, its five middlewares, aiohttp's
    _handle and sub-app middleware and an `async for` stayed suspended around it."""

    __slots__ = ("_conversation",)

    def __init__(self) -> None:
        # permessage-deflate off: ~7x less memory per socket and a 3x faster broadcast. No
        # aiohttp heartbeat (a timer and a ping task per socket): the Hub pings every socket
        # from one loop and drops those that did not answer (Hub.ping_step); autoping off so
        # the conversation sees the pongs.
        super().__init__(compress=False, autoping=False, max_msg_size=WS_MAX_MESSAGE)
        self._conversation: Conversation | None = None
        # CPython 3.11 keeps the attributes of a class's instances in one key table shared by
        # all of them, which takes new names only while the class has few instances (its room
        # shrinks by one with each new instance, from 30). A crowd's handshakes create many
        # Sockets before the first is prepared, so the names aiohttp sets in prepare() and
        # receive() found no room and every waiting socket carried a dict of its own (0.8 kB).
        # Set here, they are in the table from the first instance on.
        for name in _SET_BEFORE_WAITING:
            setattr(self, name, getattr(Socket, name))

    def converse(self, conversation: Conversation) -> None:
        """Run `conversation` once the handler returned; it closes the socket at its end."""
        self._conversation = conversation

    def write_eof(self) -> Coroutine[Any, Any, None]:  # type: ignore[override]  # as aiohttp's
        conversation, self._conversation = self._conversation, None
        if conversation is None:
            return super().write_eof()
        return conversation()


def conversation(conn: Conn, hub: Hub, room: Room, place: Place) -> Conversation:
    """The conversation of a socket the Hub holds as `conn` (already added), for `place`."""
    return functools.partial(_converse, conn, hub, room, place)


async def _converse(conn: Conn, hub: Hub, room: Room, place: Place) -> None:
    ws, bad = conn.ws, 0
    try:
        greeted = await _greet(conn, hub, room, place)
        del place  # not kept for the socket's life
        # The loop is inline (not `async for`, not a function of its own): each would keep
        # one more coroutine suspended per socket.
        while greeted:
            msg = await ws.receive()
            conn.answered = True  # any frame is a sign of life (Hub.ping_step)
            kind = msg.type
            if kind in _ENDED:
                break
            if kind == WSMsgType.TEXT:
                try:
                    client_decoder.decode(msg.data)
                except msgspec.MsgspecError as exc:
                    bad += 1
                    await hub.send(conn, ErrorMsg("bad_message", f"not a known message: {exc}"))
                else:
                    await hub.send(conn, PongMsg())
            elif kind == WSMsgType.BINARY:
                bad += 1
                await hub.send(conn, ErrorMsg("bad_message", "binary frames are not accepted"))
            elif kind == WSMsgType.PING:
                await ws.pong(msg.data)
            if bad > MAX_BAD_FRAMES:
                await ws.close(code=1008, message=b"too many bad messages")
                break
    except Exception as exc:  # after the upgrade no HTTP answer can be sent: log, then close
        if isinstance(exc, REDIS_DOWN):
            log.warning("websocket: redis unavailable", extra={"error": str(exc)})
        else:
            log.exception("websocket: unhandled error", extra={"queue_id": conn.queue_id})
        await ws.close(code=_UNEXPECTED_CLOSE, message=b"server error")
    finally:
        hub.remove(conn)
        if not conn.admitted:
            try:
                await room.touch(conn.event_id, [conn.queue_id])  # the grace period runs from now
            except Exception as exc:
                log.debug("touch on close failed: %s", exc)
    await ws.write_eof()  # closes the socket (a no-op if it is closed)


async def _greet(conn: Conn, hub: Hub, room: Room, place: Place) -> bool:
    if place.state in ("waiting", "prequeue"):
        # Read again now that the socket is registered: an admission announced while the
        # upgrade was in flight reached no socket, and this read sees it.
        place = await room.scripts.status(EventKeys(conn.event_id), conn.queue_id)
    return await hub.greet(conn, place)
