"""The waiting room's operations: join, status, leave, settings mirror. Handlers stay thin."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import msgspec
from aiohttp import web

from server.core import rules
from server.core.clock import from_ms, now_ms, to_ms
from server.core.errors import Conflict, Forbidden, NotFound, Unavailable
from server.core.ids import check_event_id, parse_queue_id
from server.core.keys import EVENTS_CHANNEL, EventKeys
from server.core.messages import ChangedNews, EventPatch, QueueState, QueueStatus, encoder
from server.core.settings import Settings
from server.core.tokens import AccessClaims, PlaceClaims, Signer, new_id
from server.store import audit, db
from server.store.events import EventCache
from server.store.lua import AnyRedis
from server.waiting.challenge import NOT_ASKED, Proof, refusal, too_many
from server.waiting.line import Count, Place, Scripts, Snapshot


class Standing(msgspec.Struct, frozen=True):
    """A fan's place as answered (status) and as kept by the browser (a signed place token)."""

    status: QueueStatus
    kept: str | None = None


class Room:
    def __init__(
        self,
        settings: Settings,
        redis: AnyRedis,
        scripts: Scripts,
        pool: db.Pool,
        cache: EventCache,
        signer: Signer,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.scripts = scripts
        self.pool = pool
        self.cache = cache
        self.signer = signer
        self.snapshots: dict[str, Snapshot] = {}  # latest admission step seen by this process
        # the fans' rate estimate per event and the Redis time of its last update (observe)
        self.estimates: dict[str, tuple[float | None, int]] = {}

    @classmethod
    def of(cls, settings: Settings, redis: AnyRedis, pool: db.Pool) -> Room:
        """The room of one process: its scripts, event cache and signer built from settings."""
        scripts = Scripts(redis, settings.return_window_seconds)
        return cls(settings, redis, scripts, pool, EventCache(pool), Signer(settings.secret))

    # ---- settings mirror --------------------------------------------------------------------

    async def mirror(self, ev: db.EventRow) -> None:
        """Copy the event's settings from PostgreSQL (the truth) to Redis (the live copy). Into a
        Redis that lacks them (a new event, or Redis lost its data) a new epoch comes first, so
        places kept by fans' browsers can be taken back (restore) in their old order."""
        k = EventKeys(ev.id)
        if not await self.redis.hexists(k.cfg, "epoch"):
            await self.scripts.new_epoch(k, await db.next_redis_epoch(self.pool, ev.id))
        await self.redis.hset(
            EventKeys(ev.id).cfg,
            mapping={
                "rate_per_min": ev.rate_per_min,
                "max_active": ev.max_active,
                "session_ms": ev.session_minutes * 60_000,
                "tick_ms": self.settings.tick_ms,
                "paused": int(ev.paused),
                "closed": int(ev.closed),
                "sold_out": int(ev.sold_out),
                "sale_starts_ms": to_ms(ev.sale_starts_at),
                "prequeue_opens_ms": to_ms(ev.prequeue_opens_at),
            },
        )
        if now_ms() >= to_ms(ev.sale_starts_at):
            await self.scripts.open_sale(EventKeys(ev.id), secrets.randbelow(2**31))

    async def change(
        self,
        event_id: str,
        patch: EventPatch,
        who: str = audit.DEFAULT_WHO,
        action: str = "patch",
        note: str | None = None,
        step_up: bool = False,
    ) -> db.EventRow:
        """Apply a settings patch; the audit rows go in the same transaction as the change."""
        async with self.pool.acquire() as conn, conn.transaction():
            old = await db.update_event(conn, check_event_id(event_id), patch)
            if old is None:
                raise NotFound("no such event", code="event_not_found")
            new = {f: getattr(patch, f) for f in old}
            await audit.record(conn, event_id, who, action, audit.diff(old, new), note, step_up)
        self.cache.invalidate(event_id)
        ev = await self.cache.require(event_id)
        await self.mirror(ev)
        await self.announce(event_id)
        return ev

    async def announce(self, event_id: str) -> None:
        """Tell every process that an event's settings changed (they re-read it at once)."""
        await self.redis.publish(EVENTS_CHANNEL, encoder.encode(ChangedNews(event_id)))

    # ---- fan operations ---------------------------------------------------------------------

    async def join(
        self,
        ev: db.EventRow,
        visitor_id: str,
        proof: Proof = NOT_ASKED,
        kept: PlaceClaims | None = None,
        source: str = "",
        counts: Sequence[Count] = (),
    ) -> Standing:
        """A place for this visitor: the one its kept place cookie names if that can be
        restored, else its live one, else a new one counted under `source`, the client
        address ("" for none). `counts`: the join's attempt, counted by the join script itself
        (429 over a limit), when no kept place is to be restored first."""
        if kept is not None:
            if counts:
                raise ValueError("a kept place is restored first: count the attempt before")
            restored = await self.restore(ev, kept)
            if restored is not None:
                return self.standing(ev.id, restored)
        keys = EventKeys(ev.id)
        queue_id = f"{ev.id}.{new_id()}"
        args = (None, proof.arg, proof.nonce, source, counts)
        place = await self.scripts.join(keys, visitor_id, queue_id, *args)
        if place.state == "nocfg":
            await self.mirror(ev)
            place = await self.scripts.join(keys, visitor_id, queue_id, *args)
        if place.state == "limited":
            raise too_many("join", place.retry_ms)
        if place.state in ("challenge", "spent"):
            raise refusal(ev.id, proof, place.state)
        if place.state == "not_open":
            raise Conflict("the queue for this event is not open yet", code="not_open")
        if place.state in ("closed", "sold_out"):
            refused: QueueState = "closed" if place.state == "closed" else "sold_out"
            return Standing(QueueStatus(queue_id=None, event_id=ev.id, state=refused))
        if place.state == "nocfg":
            raise Unavailable("the queue is being rebuilt, retry", retry_after=1)
        return self.standing(ev.id, place)

    async def place(
        self,
        queue_id: str,
        visitor_id: str | None,
        touch: bool,
        counts: Sequence[Count] = (),
    ) -> Place:
        """Where a place stands, read by one status.lua call. With `touch` it records a sign of
        life (a visitor away comes back in at their ticket), but only the owner's requests are
        one: a stranger's refused request changes nothing, nor keeps someone else's abandoned
        place alive. `counts`: a status request's attempt, counted first (429 over a limit)."""
        k = EventKeys(parse_queue_id(queue_id))
        owner = visitor_id or ""
        place = await self.scripts.status(k, queue_id, touch, owner=owner, counts=counts)
        if place.state == "limited":
            raise too_many("status", place.retry_ms)
        if place.state == "unknown":
            raise NotFound("no such place in the queue", code="queue_not_found")
        if visitor_id is not None and place.visitor_id != visitor_id:
            raise Forbidden("this place in the queue belongs to another visitor")
        return place

    async def status(
        self,
        queue_id: str,
        visitor_id: str | None,
        kept: PlaceClaims | None = None,
        counts: Sequence[Count] = (),
    ) -> Standing:
        event_id = parse_queue_id(queue_id)
        if kept is not None and kept.q == queue_id:
            try:
                place = await self.place(queue_id, visitor_id, touch=True, counts=counts)
            except NotFound:
                restored = await self.restore(await self.cache.require(event_id), kept)
                if restored is None:
                    raise
                place = restored
        else:
            place = await self.place(queue_id, visitor_id, touch=True, counts=counts)
        return self.standing(event_id, place)

    async def restore(self, ev: db.EventRow, kept: PlaceClaims) -> Place | None:
        """Take back a place the fan's browser kept, if Redis lost it since (a later epoch)."""
        k = EventKeys(ev.id)
        args = (k, kept.v, kept.q, kept.t, kept.x, kept.p)
        place = await self.scripts.restore(*args)
        if place.state == "nocfg":
            await self.mirror(ev)
            place = await self.scripts.restore(*args)
        return place if place.state in ("prequeue", "waiting", "admitted") else None

    async def leave(self, queue_id: str, visitor_id: str | None) -> None:
        await self.place(queue_id, visitor_id, touch=False)
        await self.scripts.leave(EventKeys(parse_queue_id(queue_id)), queue_id)

    async def touch(self, event_id: str, queue_ids: list[str]) -> None:
        """Record a sign of life for visitors still waiting (never re-adds a dropped one)."""
        if queue_ids:
            stamp = now_ms()
            await self.redis.zadd(
                EventKeys(event_id).seen, dict.fromkeys(queue_ids, stamp), xx=True, gt=True
            )

    # ---- views -----------------------------------------------------------------------------

    def observe(self, ev: db.EventRow, snap: Snapshot) -> None:
        """Take one admission step's snapshot; update the rate the fans' estimates use: the
        configured and measured rates blended by the measurement's history, smoothed and
        bounded in change (rules.blended_rate, rules.smoothed_rate); none while halted."""
        self.snapshots[ev.id] = snap
        target = None
        if not snap.halted:
            measured = rules.measured_rate_per_min(snap.admitted_last_window, snap.window_ms)
            target = rules.blended_rate(ev.rate_per_min, measured, snap.window_ms)
        previous, at = self.estimates.get(ev.id, (None, snap.now_ms))
        self.estimates[ev.id] = (
            rules.smoothed_rate(previous, target, snap.now_ms - at),
            snap.now_ms,
        )

    def estimated_rate(self, event_id: str) -> float | None:
        """Admissions per minute the fans' ETAs use (observe); None when unknown."""
        rate = self.estimates.get(event_id, (None, 0))[0]
        return None if rate is None else round(rate, 2)

    def measured_rate(self, event_id: str) -> float | None:
        snap = self.snapshots.get(event_id)
        if snap is None:
            return None
        return rules.measured_rate_per_min(snap.admitted_last_window, snap.window_ms)

    def access_token(self, event_id: str, place: Place) -> str:
        claims = AccessClaims(event_id, place.visitor_id, place.queue_id, place.session_expires_ms)
        return self.signer.access_token(claims)

    def standing(self, event_id: str, place: Place) -> Standing:
        """The answer to the fan, and the place for the fan's browser to keep (signed)."""
        status = self.describe(event_id, place)
        if place.state not in ("prequeue", "waiting", "admitted"):
            return Standing(status)
        claims = PlaceClaims(
            e=event_id,
            v=place.visitor_id,
            q=place.queue_id,
            t=max(0, place.ticket),
            x=place.session_expires_ms if place.state == "admitted" else 0,
            p=place.epoch,
        )
        return Standing(status, self.signer.place_token(claims))

    def describe(self, event_id: str, place: Place) -> QueueStatus:
        """The fan's status, stamped with this server's clock (the page's countdowns use it)."""
        return msgspec.structs.replace(
            self._describe(event_id, place), server_time=from_ms(now_ms())
        )

    def _describe(self, event_id: str, place: Place) -> QueueStatus:
        snap = self.snapshots.get(event_id)
        rate = self.estimated_rate(event_id)
        ticket = place.ticket if place.ticket >= 0 else None
        if place.state == "admitted":
            return QueueStatus(
                queue_id=place.queue_id,
                event_id=event_id,
                state="admitted",
                access_token=self.access_token(event_id, place),
                access_expires_at=from_ms(place.session_expires_ms),
                ticket=ticket,
                rate_per_min=rate,
            )
        window = self.settings.return_window_seconds
        if place.state == "expired":
            return QueueStatus(
                place.queue_id, event_id, "expired", ticket=ticket, return_window_seconds=window
            )
        if snap is not None and (snap.closed or snap.sold_out):
            return QueueStatus(
                place.queue_id, event_id, "closed" if snap.closed else "sold_out", ticket=ticket
            )
        position = rules.position_from_rank(place.rank)
        halted = snap.halted if snap is not None else False
        return QueueStatus(
            queue_id=place.queue_id,
            event_id=event_id,
            state="prequeue" if place.state == "prequeue" else "waiting",
            position=position,
            eta_seconds=rules.eta_seconds(position, rate, halted),
            ticket=ticket,
            rate_per_min=rate,
            return_window_seconds=window,
        )


ROOM = web.AppKey("room", Room)
