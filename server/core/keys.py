"""Every Redis key Boxoffice uses. Each key of an event carries the hash tag {ev:<id>}, so all
of an event's keys live in one Redis Cluster slot and every Lua script stays single-slot."""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_CHANNEL = "bo:events"  # cluster-wide: settings of some event changed
NEWS_PATTERN = "bo:{ev:*}:news"  # every event's news channel (EventKeys.channel)
AUTOPILOT_LOCK = "bo:autopilot:lock"  # STRING: instance id of the process that steers
_TAG = "bo:{ev:"


def resend_rate(kind: str, digest: str) -> str:
    """STRING: "resend my tickets" requests in the current window, per email or per address
    (kind "email" or "addr"; digest is a hash, so no address or email is kept in a key name)."""
    return f"bo:resend:{kind}:{digest}"


def event_of(key: str | bytes) -> str:
    """The event id inside one of an event's keys or channels ("bo:{ev:<id>}:…")."""
    text = key.decode() if isinstance(key, bytes) else key
    if not text.startswith(_TAG) or "}" not in text:
        raise ValueError(f"not an event key: {text!r}")
    return text[len(_TAG) : text.index("}")]


def admin_failures(address: str) -> str:
    """STRING: failed admin authentications from one client address in the current window
    (queue/rate_limit.lua; the window is the key's expiry)."""
    return f"bo:authfail:admin:{address}"


def account_failures(account: str) -> str:
    """STRING: failed sign-ins to one operator account (any address) in the current window;
    `account` is a digest of the normalised email, so any text a client sends makes a plain
    key and no email is written to Redis."""
    return f"bo:authfail:account:{account}"


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
    def away(self) -> str:
        """ZSET queue_id -> last sign of life (ms) of waiting visitors silent for longer than the
        grace: out of the line, so the admission step passes them by at no cost; back in at
        their own ticket (ahead of everyone who came later) when they return within the return
        window, gone after it (queue/reap.lua, status.lua, join.lua)."""
        return self._key("away")

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
        """HASH of counters: joins, admitted, expired, left, serving, sessions_ended,
        challenges_issued, challenges_solved, challenges_failed, purged."""
        return self._key("stats")

    @property
    def admits(self) -> str:
        """ZSET of admission batches in the last minute: member "<ms>:<n>", score ms."""
        return self._key("admits")

    @property
    def seats(self) -> str:
        """HASH seat_id -> hold_id, or "sold": live state of assigned seats (absent = free)."""
        return self._key("seats")

    @property
    def holds(self) -> str:
        """HASH hold_id -> JSON {v: visitor, q: queue_id, s: seats, g: {section: qty}, x}."""
        return self._key("holds")

    @property
    def holdexp(self) -> str:
        """ZSET hold_id -> expiry ms: a hold is live while its expiry is in the future."""
        return self._key("holdexp")

    @property
    def vhold(self) -> str:
        """HASH visitor_id -> hold_id: one live hold per visitor."""
        return self._key("vhold")

    @property
    def gacap(self) -> str:
        """HASH section -> capacity of each standing section."""
        return self._key("gacap")

    @property
    def gasold(self) -> str:
        """HASH section -> units sold in each standing section."""
        return self._key("gasold")

    @property
    def gaheld(self) -> str:
        """HASH section -> units in holds not yet tidied away."""
        return self._key("gaheld")

    @property
    def sold_orders(self) -> str:
        """SET of order ids whose seats are marked sold in Redis."""
        return self._key("sold_orders")

    @property
    def returned_orders(self) -> str:
        """SET of refunded order ids whose seats went back on sale in Redis."""
        return self._key("returned_orders")

    @property
    def inventory(self) -> str:
        """HASH: built_ms when seat state was last rebuilt from PostgreSQL."""
        return self._key("inventory")

    @property
    def reservations(self) -> str:
        """STREAM of confirmed reservations, fed by the outbox relay."""
        return self._key("reservations")

    def rate(self, kind: str, visitor_id: str) -> str:
        """STRING: a visitor's attempts at one kind of request in the current window."""
        return self._key(f"rl:{kind}:{visitor_id}")

    def spent(self, nonce: str) -> str:
        """STRING: a bot-challenge solution already used for a place (expires with it)."""
        return self._key(f"pow:{nonce}")

    def pressure(self, source: str) -> str:
        """HASH v, t: decaying count of challenges asked for by one source ("a:<address>",
        "n:<network>", "v:<visitor>") or by the whole crowd ("crowd")."""
        return self._key(f"pw:{source}")

    @property
    def seatver(self) -> str:
        """STRING: bumped by every hold script that changes seat state (seat map caches)."""
        return self._key("seatver")

    @property
    def seatcount(self) -> str:
        """HASH held, sold: the entries of `seats` by kind (a hold id, or "sold"), kept by the
        hold scripts as they write `seats` (queue/lib/holds.lua), so counts need no scan."""
        return self._key("seatcount")

    @property
    def sources(self) -> str:
        """ZSET client address -> places taken in line (at most SOURCES_KEPT, the biggest)."""
        return self._key("sources")

    @property
    def source_places(self) -> str:
        """ZSET "<address>|<queue_id>", score 0: the places each address took (join.lua), read
        by lexical range to purge one address's waiting places (purge_source.lua)."""
        return self._key("srcq")

    def hold_keys(self) -> list[str]:
        """The first nine KEYS of every hold script (queue/lib/holds.lua)."""
        return [self.seats, self.holds, self.holdexp, self.vhold, self.gacap, self.gasold,
                self.gaheld, self.seatver, self.seatcount]  # fmt: skip

    @property
    def channel(self) -> str:
        """Pub/sub channel for this event's news (admissions, state changes)."""
        return self._key("news")

    def all(self) -> list[str]:
        return [
            self.cfg, self.visitors, self.owner, self.tickets, self.pre, self.line, self.seen,
            self.away, self.active, self.bucket, self.seq, self.stats, self.admits,
            *self.hold_keys(),
            self.sold_orders, self.returned_orders, self.inventory, self.reservations, self.sources,
            self.source_places,
        ]  # fmt: skip
