"""The line's Lua scripts (join, status, leave, reap, open_sale, admit) behind typed async
wrappers, and the shapes they answer with.

Each wrapper passes every key in KEYS (spelled by server.core.keys) and time as "" (Redis TIME)
unless the caller drives time itself, as tests do. Joins and status reads made in the same
event-loop turn share one pipeline (server.store.lua.Batcher)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from server.core.keys import EventKeys
from server.core.settings import DEFAULT_RETURN_WINDOW_SECONDS
from server.store import lua
from server.store.lua import AnyRedis, Batched, as_text, time_arg
from server.store.redis_client import sharded

SCRIPT_NAMES = (
    "join", "status", "leave", "reap", "open_sale", "admit", "restore", "new_epoch",
    "purge_source",
)  # fmt: skip
TICKETS_PER_EPOCH = 2**32  # tickets of Redis epoch e are above (e - 1) * this (new_epoch.lua)
MAX_EVENTS_KEPT = 1000  # events whose script KEYS a process keeps spelled out
SOURCES_KEPT = 10_000  # client addresses an event's place counts keep (the biggest)


class Place(msgspec.Struct, frozen=True):
    """Where a queue entry stands; rank is 0-based, -1 when not waiting in the line. State
    "away" (read without a sign of life): out of the line until the fan shows up again."""

    state: str
    queue_id: str
    visitor_id: str
    ticket: int
    rank: int
    session_expires_ms: int
    epoch: int = 0  # the event's Redis epoch when this was read (queue/new_epoch.lua)
    retry_ms: int = 0  # state "limited": ms until the attempt may be made again


class Count(NamedTuple):
    """An attempt a script counts in a fixed window before it acts (queue/lib/window.lua)."""

    key: str  # the counter (EventKeys.rate)
    most: int  # attempts allowed in a window
    window_ms: int


NOT_COUNTED = Count("", 0, 0)  # a counter slot of a script left unused (most 0)


def _count_slots(k: EventKeys, counts: Sequence[Count]) -> tuple[list[str], list[int]]:
    """The two counter KEYS and their four ARGV (most, window ms each) of join.lua and
    status.lua; an unused slot names the event's stats hash, never touched (most 0)."""
    if len(counts) > 2:
        raise ValueError("a script counts at most two attempts")
    first, second = [*counts, NOT_COUNTED, NOT_COUNTED][:2]
    keys = [first.key or k.stats, second.key or k.stats]
    return keys, [first.most, first.window_ms, second.most, second.window_ms]


def _limited(r: list[Any], visitor_id: str) -> Place:
    """The answer of a script that counted an attempt over its limit and did nothing."""
    return Place("limited", "", visitor_id, -1, -1, 0, int(r[5]), retry_ms=int(r[4]))


def _place(r: list[Any], queue_id: str, visitor_id: str) -> Place:
    """A Place from a script's {state, …, session_expires_ms, epoch} answer."""
    epoch = int(r[5]) if len(r) > 5 else 0
    return Place(as_text(r[0]), queue_id, visitor_id, int(r[2]), int(r[3]), int(r[4]), epoch)


class Admitted(msgspec.Struct, frozen=True, array_like=True):
    queue_id: str
    visitor_id: str
    expires_ms: int


class Snapshot(msgspec.Struct, frozen=True):
    """What one admission step saw and did."""

    found: bool
    opened: bool = False
    paused: bool = False
    closed: bool = False
    sold_out: bool = False
    serving: int = 0
    admitted_total: int = 0
    waiting: int = 0
    prequeue: int = 0
    active: int = 0
    admitted_last_window: int = 0
    window_ms: int = 0
    now_ms: int = 0
    exhausted: bool = False  # every seat left is held: the bucket admits nobody
    admitted: tuple[Admitted, ...] = ()

    @property
    def halted(self) -> bool:
        """Admission stands still: paused by ops, or every seat left is held."""
        return self.paused or self.exhausted


class Reaped(msgspec.Struct, frozen=True, array_like=True):
    """What one reap did: places dropped for good, visitors moved out of the line (away)."""

    gone: int
    stepped_away: int


class Scripts:
    """All queue scripts registered on one client. `return_window_s`: how long a waiting fan
    may be away (silent for longer than the grace) and still come back to the same place."""

    BATCHED = ("join", "status")

    def __init__(
        self, client: AnyRedis, return_window_s: int = DEFAULT_RETURN_WINDOW_SECONDS
    ) -> None:
        self.return_window_ms = return_window_s * 1000
        self._s = lua.register(client, *SCRIPT_NAMES)
        self._batched = {name: Batched(client, self._s[name]) for name in self.BATCHED}
        self._publish_flag = "1" if sharded(client) else "0"
        # the KEYS of the hot scripts per event, spelled once (at most MAX_EVENTS_KEPT events)
        self._join_key_lists: dict[str, tuple[list[str], list[str]]] = {}
        self._status_keys: dict[str, list[str]] = {}

    def _join_keys(self, k: EventKeys) -> tuple[list[str], list[str]]:
        """join.lua's KEYS of an event but the spent-nonce key (KEYS[11]), spelled once."""
        found = self._join_key_lists.get(k.event_id)
        if found is None:
            before = [k.cfg, k.visitors, k.owner, k.tickets, k.pre, k.line, k.seen, k.active]
            before += [k.seq, k.stats]
            if len(self._join_key_lists) >= MAX_EVENTS_KEPT:
                self._join_key_lists.clear()
            found = self._join_key_lists[k.event_id] = (
                before,
                [k.sources, k.source_places, k.away],
            )
        return found

    async def _run(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        batched = self._batched.get(name)
        if batched is not None:
            return await batched(keys, args)
        return await self._s[name](keys=keys, args=args)

    async def join(
        self,
        k: EventKeys,
        visitor_id: str,
        new_queue_id: str,
        now_ms: int | None = None,
        proof: str = "",
        nonce: str = "-",
        source: str = "",
        counts: Sequence[Count] = (),
    ) -> Place:
        """proof and nonce: see join.lua ARGV[4] and server.waiting.challenge.Proof; source:
        the client address a new place is counted under ("" for none); counts: at most two
        attempt counters the script counts first (state "limited" if one is over)."""
        count_keys, count_args = _count_slots(k, counts)
        before, after = self._join_keys(k)
        keys = [*before, k.spent(nonce), *after, *count_keys]
        args: list[str | int] = [visitor_id, new_queue_id, time_arg(now_ms), proof, source]
        r = await self._run("join", keys, [*args, SOURCES_KEPT, self.return_window_ms, *count_args])
        if as_text(r[0]) == "limited":
            return _limited(r, visitor_id)
        return _place(r, as_text(r[1]), visitor_id)

    async def status(
        self,
        k: EventKeys,
        queue_id: str,
        touch: bool = False,
        now_ms: int | None = None,
        owner: str = "",
        counts: Sequence[Count] = (),
    ) -> Place:
        """touch: record a sign of life; with `owner`, only if that visitor owns the place.
        counts: at most two attempt counters the script counts first (state "limited")."""
        keys = self._status_keys.get(k.event_id)
        if keys is None:
            if len(self._status_keys) >= MAX_EVENTS_KEPT:
                self._status_keys.clear()
            keys = [k.cfg, k.owner, k.tickets, k.pre, k.line, k.seen, k.active, k.away, k.stats]
            self._status_keys[k.event_id] = keys
        count_keys, count_args = _count_slots(k, counts)
        args = [queue_id, "1" if touch else "0", time_arg(now_ms), self.return_window_ms, owner]
        r = await self._run("status", [*keys, *count_keys], [*args, *count_args])
        if as_text(r[0]) == "limited":
            return _limited(r, "")
        return _place(r, queue_id, as_text(r[1]))

    async def restore(
        self,
        k: EventKeys,
        visitor_id: str,
        queue_id: str,
        ticket: int,
        expires_ms: int,
        epoch: int,
        now_ms: int | None = None,
    ) -> Place:
        """Take back a place kept by the fan's browser after Redis lost it (restore.lua)."""
        keys = [k.cfg, k.visitors, k.owner, k.tickets, k.pre, k.line, k.seen, k.active, k.stats]
        args: list[str | int] = [visitor_id, queue_id, ticket, expires_ms, epoch, time_arg(now_ms)]
        r = await self._run("restore", keys, args)
        return Place(as_text(r[0]), queue_id, visitor_id, int(r[2]), int(r[3]), int(r[4]))

    async def new_epoch(self, k: EventKeys, epoch: int) -> int:
        """Start a new Redis epoch for the event unless one is there; the event's epoch."""
        return int(await self._run("new_epoch", [k.cfg, k.seq], [epoch, TICKETS_PER_EPOCH]))

    async def leave(self, k: EventKeys, queue_id: str, reason: str = "left") -> bool:
        keys = [k.visitors, k.owner, k.pre, k.line, k.seen, k.active, k.stats, k.away]
        return bool(await self._run("leave", keys, [queue_id, reason]))

    async def purge_source(self, k: EventKeys, source: str, dry_run: bool) -> int:
        """The waiting places (line and pre-queue) `source` took: counted, or removed."""
        keys = [k.visitors, k.owner, k.pre, k.line, k.seen, k.stats, k.source_places]
        return int(await self._run("purge_source", keys, [source, "count" if dry_run else "purge"]))

    async def reap(
        self, k: EventKeys, grace_ms: int, limit: int = 1000, now_ms: int | None = None
    ) -> Reaped:
        """Silent visitors step out of the line; places away beyond the return window go."""
        keys = [k.cfg, k.pre, k.line, k.seen, k.away, k.stats]
        window = max(grace_ms, self.return_window_ms)
        r = await self._run("reap", keys, [grace_ms, window, limit, time_arg(now_ms)])
        return Reaped(int(r[0]), int(r[1]))

    async def open_sale(self, k: EventKeys, seed: int, now_ms: int | None = None) -> int:
        keys = [k.cfg, k.pre, k.line, k.tickets, k.seq]
        return int(await self._run("open_sale", keys, [seed, time_arg(now_ms)]))

    async def admit(
        self, k: EventKeys, max_batch: int = 500, extra: int = 0, now_ms: int | None = None
    ) -> Snapshot:
        keys = [k.cfg, k.line, k.active, k.bucket, k.stats, k.admits, k.owner, k.seen, k.pre]
        r = await self._run(
            "admit", keys, [time_arg(now_ms), max_batch, k.channel, extra, self._publish_flag]
        )
        if not r[0]:
            return Snapshot(found=False)
        flat = r[14:]
        admitted = tuple(
            Admitted(as_text(flat[i]), as_text(flat[i + 1]), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        )
        flags = [bool(x) for x in r[1:5]]
        figures = [int(x) for x in r[5:13]]
        return Snapshot(
            found=True,
            opened=flags[0],
            paused=flags[1],
            closed=flags[2],
            sold_out=flags[3],
            serving=figures[0],
            admitted_total=figures[1],
            waiting=figures[2],
            prequeue=figures[3],
            active=figures[4],
            admitted_last_window=figures[5],
            window_ms=figures[6],
            now_ms=figures[7],
            exhausted=bool(r[13]),
            admitted=admitted,
        )
