"""Per-process websocket fan-out: one pre-serialised tick written to every local socket of an
event, admission messages to the sockets of the admitted, exact ranks at a slow jittered pace."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from aiohttp import web

from server.core.clock import from_ms, now_ms
from server.core.keys import EventKeys
from server.core.loops import Loop
from server.core.messages import (
    AdmittedMsg,
    ClosedMsg,
    ConfirmedMsg,
    ServerMsg,
    StatusMsg,
    TickMsg,
    encoder,
)
from server.core.metrics import Metrics
from server.waiting.line import Admitted, Place, Snapshot
from server.waiting.room import Room

log = logging.getLogger("boxoffice.fanout")

CHUNK = 256  # sockets written between two yields to the event loop
# Sockets one place (one visitor in one event) may hold open in one process: a few tabs. Counted
# in the process, which is enough: a socket costs the process that holds it, and a visitor
# spread over P processes holds at most P times this (NGINX also caps connections per visitor).
MAX_SOCKETS_PER_PLACE = 8
TOUCH_CHUNK = 1000  # queue ids per sign-of-life write
# Sockets whose rank is looked up and sent in one go. With 10,000 sockets and the default 30 s
# refresh, 300-700 come due each second (more after a burst of opens); all of them at once held
# the loop 20-27 ms (the bench's longest own stall); this many at a time, a quarter of that or
# less.
RANK_CHUNK = 128
# A socket whose unsent bytes pass this skips ticks until its reader catches up: each tick
# replaces the last, so a slow reader loses nothing but stale positions.
SLOW_SOCKET_BYTES = 64 * 1024
# Every socket is pinged this often from one loop; one that sent no frame (a pong, a ping, a
# message) since the last ping is dropped: a vanished peer is found within 25-50 s.
PING_SECONDS = 25.0
PING_FRAME = bytes((0x89, 0))  # a websocket ping with no payload, as a server sends it


def text_frame(text: str) -> bytes:
    """One websocket text frame as a server sends it (unmasked, uncompressed: the app's
    sockets have permessage-deflate off), built once and written to every socket."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


@dataclass(eq=False, slots=True)  # one per socket: no __dict__ each
class Conn:
    ws: web.WebSocketResponse
    event_id: str
    queue_id: str
    visitor_id: str
    next_rank_at: float = 0.0
    admitted: bool = False
    greeted: bool = False  # ticks start after the first status, which they build on
    transport: asyncio.Transport | None = None  # the socket's, for frames built once
    answered: bool = True  # a frame came in since the last ping (Hub.ping_step)


class Hub:
    def __init__(self, room: Room, metrics: Metrics) -> None:
        self.room = room
        self.metrics = metrics
        self.settings = room.settings
        self._by_event: dict[str, set[Conn]] = {}
        self._by_queue: dict[str, list[Conn]] = {}  # a place's few sockets: a list is 1/4 a set
        self._last_tick: dict[str, TickMsg] = {}
        self._last_broadcast: dict[str, float] = {}
        self._opening: dict[str, int] = {}

    # ---- registry ---------------------------------------------------------------------------

    def reserve(self, queue_id: str) -> bool:
        """Claim one of the place's MAX_SOCKETS_PER_PLACE before the handshake (open sockets
        and handshakes in flight both count); False when none is left. Every True is followed
        by one unreserve(), whether or not the socket was added."""
        opening = self._opening.get(queue_id, 0)
        if len(self._by_queue.get(queue_id, ())) + opening >= MAX_SOCKETS_PER_PLACE:
            return False
        self._opening[queue_id] = opening + 1
        return True

    def unreserve(self, queue_id: str) -> None:
        left = self._opening.get(queue_id, 0) - 1
        if left > 0:
            self._opening[queue_id] = left
        else:
            self._opening.pop(queue_id, None)

    def add(self, conn: Conn) -> None:
        self._by_event.setdefault(conn.event_id, set()).add(conn)
        self._by_queue.setdefault(conn.queue_id, []).append(conn)
        self.metrics.websockets.inc()

    def remove(self, conn: Conn) -> None:
        conns = self._by_event.get(conn.event_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_event[conn.event_id]
        place = self._by_queue.get(conn.queue_id)
        if place is not None and conn in place:
            place.remove(conn)
            if not place:
                del self._by_queue[conn.queue_id]
        self.metrics.websockets.dec()

    def count(self, event_id: str | None = None) -> int:
        if event_id is not None:
            return len(self._by_event.get(event_id, ()))
        return sum(len(c) for c in self._by_event.values())

    def event_ids(self) -> set[str]:
        """The events this process holds sockets of."""
        return set(self._by_event)

    def recheck_soon(self, event_id: str) -> None:
        """Look up the place of this event's waiting sockets at the next rank refresh (within a
        second): news for them may have been missed (a subscription that was not there yet)."""
        for conn in self._by_event.get(event_id, ()):
            conn.next_rank_at = 0.0

    def waiting_queue_ids(self) -> dict[str, list[str]]:
        return {
            event_id: list({c.queue_id for c in conns if not c.admitted})
            for event_id, conns in self._by_event.items()
        }

    def schedule_rank(self, conn: Conn) -> None:
        period = self.settings.rank_refresh_seconds
        conn.next_rank_at = time.monotonic() + period * random.uniform(0.75, 1.25)

    # ---- sending ----------------------------------------------------------------------------

    async def send(self, conn: Conn, msg: ServerMsg) -> None:
        await self._write(conn, encoder.encode(msg).decode())

    @staticmethod
    def _write_frame(conn: Conn, frame: bytes) -> None:
        transport = conn.transport  # uvloop's transports are not asyncio subclasses: no isinstance
        if conn.ws.closed or transport is None:
            return
        if transport.is_closing() or transport.get_write_buffer_size() > SLOW_SOCKET_BYTES:
            return
        transport.write(frame)

    async def _write(self, conn: Conn, text: str) -> None:
        if conn.ws.closed:
            return
        try:
            await conn.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("send failed", extra={"queue_id": conn.queue_id, "error": str(exc)})

    async def broadcast(self, event_id: str, text: str) -> int:
        """Write one serialised message, framed once, to every local socket of an event
        straight into its transport (a whole frame per write, as aiohttp's own writer does, so
        the two never interleave inside a frame), yielding between chunks so a large room
        never blocks the event loop for the whole send."""
        conns = list(self._by_event.get(event_id, ()))
        frame = text_frame(text)
        started, cpu = time.perf_counter(), time.thread_time()
        for i in range(0, len(conns), CHUNK):
            for conn in conns[i : i + CHUNK]:
                if conn.greeted and not conn.admitted:
                    self._write_frame(conn, frame)
            await asyncio.sleep(0)
        self.metrics.broadcast.observe(time.perf_counter() - started)
        self.metrics.broadcast_cpu.inc(time.thread_time() - cpu)
        return len(conns)

    def status_for(self, conn: Conn, place: Place) -> StatusMsg:
        status = self.room.describe(conn.event_id, place)
        snap = self.room.snapshots.get(conn.event_id)
        return StatusMsg(
            state=status.state,
            position=status.position,
            eta_seconds=status.eta_seconds,
            rate_per_min=status.rate_per_min,
            ticket=status.ticket,
            admitted_total=snap.admitted_total if snap is not None else 0,
            paused=snap.halted if snap is not None else False,
            server_time=status.server_time,
        )

    async def greet(self, conn: Conn, place: Place) -> bool:
        """First message on a (re)connected socket; False if the socket should close."""
        if conn.admitted:
            return True  # the admission news arrived first and was delivered
        if place.state == "admitted":
            await self.send_admitted(conn, place.session_expires_ms, place)
            return True
        if place.state in ("expired", "unknown"):
            await self.send(conn, ClosedMsg("expired"))
            return False
        msg = self.status_for(conn, place)
        if msg.state in ("closed", "sold_out"):
            await self.send(conn, ClosedMsg("sold_out" if msg.state == "sold_out" else "ended"))
            return False
        self.schedule_rank(conn)
        await self.send(conn, msg)
        conn.greeted = True
        return True

    async def send_admitted(self, conn: Conn, expires_ms: int, place: Place | None = None) -> None:
        if place is None:
            place = Place("admitted", conn.queue_id, conn.visitor_id, -1, -1, expires_ms)
        token = self.room.access_token(conn.event_id, place)
        conn.admitted = True
        msg = AdmittedMsg(
            token,
            from_ms(expires_ms),
            next_url=f"/e/{conn.event_id}/seats",
            server_time=from_ms(now_ms()),
        )
        await self.send(conn, msg)
        self.metrics.delivered.inc()

    # ---- reactions to the admission step and to news ---------------------------------------

    async def on_snapshot(self, event_id: str, snap: Snapshot) -> None:
        if snap.closed or snap.sold_out:
            if self.count(event_id):
                await self.close_all(event_id, "sold_out" if snap.sold_out else "ended")
            return
        tick = TickMsg(
            state="on_sale" if snap.opened else "prequeue",
            serving=snap.serving,
            admitted_total=snap.admitted_total,
            waiting=snap.waiting + snap.prequeue,
            rate_per_min=self.room.estimated_rate(event_id),
            paused=snap.halted,
        )
        now = time.monotonic()
        if tick == self._last_tick.get(event_id):
            return
        if now - self._last_broadcast.get(event_id, 0.0) < self.settings.broadcast_ms / 1000:
            return
        self._last_tick[event_id] = tick
        self._last_broadcast[event_id] = now
        if self.count(event_id):
            await self.broadcast(event_id, encoder.encode(tick).decode())

    async def deliver_admitted(self, event_id: str, entries: list[Admitted]) -> None:
        for entry in entries:
            for conn in list(self._by_queue.get(entry.queue_id, ())):
                if conn.event_id == event_id and not conn.admitted:
                    await self.send_admitted(conn, entry.expires_ms)

    async def deliver_confirmed(self, queue_id: str, order_id: str) -> None:
        for conn in list(self._by_queue.get(queue_id, ())):
            await self.send(conn, ConfirmedMsg(order_id))

    async def close_all(self, event_id: str, reason: str) -> None:
        msg = ClosedMsg("sold_out" if reason == "sold_out" else "ended")
        text = encoder.encode(msg).decode()
        for conn in list(self._by_event.get(event_id, ())):
            if not conn.admitted:
                await self._write(conn, text)
                await conn.ws.close()

    async def close_everything(self) -> None:
        for conns in list(self._by_event.values()):
            for conn in list(conns):
                await conn.ws.close(code=1001, message=b"server shutting down")

    async def _recheck(self, conn: Conn) -> None:
        k = EventKeys(conn.event_id)
        place = await self.room.scripts.status(k, conn.queue_id)
        if place.state == "away":
            # an open socket is a sign of life: the fan is back at their own ticket
            place = await self.room.scripts.status(k, conn.queue_id, touch=True)
            await self.send(conn, self.status_for(conn, place))
        elif place.state in ("expired", "unknown"):
            await self.send(conn, ClosedMsg("expired"))
            await conn.ws.close()
        elif place.state == "admitted" and not conn.admitted:
            await self.send_admitted(conn, place.session_expires_ms, place)

    # ---- loops: signs of life for local sockets, exact ranks at a slow jittered pace ----------

    def loops(self) -> list[Loop]:
        return [
            ("heartbeat", self.heartbeat_step),
            ("ranks", self.ranks_step),
            ("pings", self.ping_step),
        ]

    async def ping_step(self) -> float:
        """Drop every socket that sent nothing since the last ping, then ping the others (one
        frame built once, as a tick): one loop for all sockets instead of a timer each."""
        conns = [c for conns in self._by_event.values() for c in conns]
        for i in range(0, len(conns), CHUNK):
            for conn in conns[i : i + CHUNK]:
                transport = conn.transport
                if transport is None or transport.is_closing():
                    continue
                if not conn.answered:
                    log.debug("no answer to a ping: dropped", extra={"queue_id": conn.queue_id})
                    transport.abort()  # its conversation sees the end and removes it
                    continue
                conn.answered = False
                transport.write(PING_FRAME)
            await asyncio.sleep(0)
        return PING_SECONDS

    async def heartbeat_step(self) -> float:
        for event_id, queue_ids in self.waiting_queue_ids().items():
            for i in range(0, len(queue_ids), TOUCH_CHUNK):
                await self.room.touch(event_id, queue_ids[i : i + TOUCH_CHUNK])
        return float(self.settings.heartbeat_seconds)

    async def ranks_step(self) -> float:
        await self.refresh_ranks()
        return 1.0

    async def refresh_ranks(self) -> int:
        """Look up the exact rank of the sockets whose jittered refresh time has come, RANK_CHUNK
        at a time (a pipeline each, the loop free between them)."""
        now = time.monotonic()
        due = [
            c
            for conns in self._by_event.values()
            for c in conns
            if not c.admitted and c.next_rank_at <= now
        ]
        for i in range(0, len(due), RANK_CHUNK):
            await self._refresh_ranks_of(due[i : i + RANK_CHUNK])
        return len(due)

    async def _refresh_ranks_of(self, due: list[Conn]) -> None:
        async with self.room.redis.pipeline(transaction=False) as pipe:
            for conn in due:
                pipe.zrank(EventKeys(conn.event_id).line, conn.queue_id)
            ranks = await pipe.execute()
        for conn, rank in zip(due, ranks, strict=True):
            self.schedule_rank(conn)
            if rank is None:
                await self._recheck(conn)  # pre-queue, admitted meanwhile, or gone
                continue
            place = Place("waiting", conn.queue_id, conn.visitor_id, -1, int(rank), 0)
            msg = self.status_for(conn, place)
            await self.send(conn, msg)


HUB = web.AppKey("hub", Hub)
