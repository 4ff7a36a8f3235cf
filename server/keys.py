"""Every Redis key Boxoffice uses. Each key of an event carries the hash tag {ev:<id>}, so all
of an event's keys live in one Redis Cluster slot and every Lua script stays single-slot."""

from __future__ import annotations

import re
from dataclasses import dataclass

EVENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
EVENTS_CHANNEL = "bo:events"  # cluster-wide: settings of some event changed


@dataclass(frozen=True, slots=True)
class EventKeys:
    event_id: str

    def _key(self, name: str) -> str:
        return f"bo:{{ev:{self.event_id}}}:{name}"

    @property
    def cfg(self) -> str:
        """HASH: live mirror of the event's queue settings and sale state."""
        return self._key("cfg")

    @property
    def visitors(self) -> str:
        """HASH visitor_id -> queue_id: makes join idempotent."""
        return self._key("visitors")

    @property
    def owner(self) -> str:
        """HASH queue_id -> visitor_id."""
        return self._key("owner")

    @property
    def tickets(self) -> str:
        """HASH queue_id -> ticket number (assigned on joining the line)."""
        return self._key("tickets")

    @property
    def pre(self) -> str:
        """ZSET queue_id -> join time (ms): the pre-queue, shuffled when the sale opens."""
        return self._key("pre")

    @property
    def line(self) -> str:
        """ZSET queue_id -> ticket: the waiting line in admission order."""
        return self._key("line")

    @property
    def seen(self) -> str:
        """ZSET queue_id -> last sign of life (ms) for visitors still waiting."""
        return self._key("seen")

    @property
    def active(self) -> str:
        """ZSET queue_id -> session expiry (ms): admitted sessions alive."""
        return self._key("active")

    @property
    def bucket(self) -> str:
        """HASH tokens, ts: the admission token bucket."""
        return self._key("bucket")

    @property
    def seq(self) -> str:
        """STRING: the last ticket number handed out."""
        return self._key("seq")

    @property
    def stats(self) -> str:
        """HASH of counters: joins, admitted, expired, left, serving, sessions_ended."""
        return self._key("stats")

    @property
    def admits(self) -> str:
        """ZSET of admission batches in the last minute: member "<ms>:<n>", score ms."""
        return self._key("admits")

    @property
    def channel(self) -> str:
        """Pub/sub channel for this event's news (admissions, state changes)."""
        return self._key("news")

    def all(self) -> list[str]:
        return [
            self.cfg, self.visitors, self.owner, self.tickets, self.pre, self.line, self.seen,
            self.active, self.bucket, self.seq, self.stats, self.admits,
        ]  # fmt: skip
