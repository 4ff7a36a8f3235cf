"""Signed values: the visitor cookie, an admitted visitor's access token, a fan's place in line
and ticket codes.

HMAC-SHA256 with BOXOFFICE_SECRET, each kind under its own domain label, so a value signed for
one purpose never verifies as another. Any process verifies without a Redis round trip.

Every part of a presented value is checked against its alphabet and length before the MAC is
compared, so any byte a client can send (non-ASCII, a second separator) is a plain refusal.
Ticket codes end in a MAC of exactly TICKET_MAC_LENGTH url-safe characters, which may include
'-': the MAC is cut off by length, never by searching for '-'."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets

import msgspec

VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
QUEUE_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
MAC = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of an HMAC-SHA256, no padding
TICKET_MAC_LENGTH = 16
TICKET_MAC = re.compile(r"[A-Za-z0-9_-]{16}")
TICKET_BODY = re.compile(r"([A-Za-z0-9_-]{1,64})-([1-9][0-9]{0,5})")
MAX_ACCESS_TOKEN = 1024


class TokenError(Exception):
    """A token is malformed, forged, expired or not meant for this use."""


class AccessClaims(msgspec.Struct, frozen=True):
    e: str  # event id
    v: str  # visitor id
    q: str  # queue id
    x: int  # expiry, ms since the epoch


class PlaceClaims(msgspec.Struct, frozen=True):
    """A place in line as the fan's browser keeps it (cookie), so a Redis that lost its data
    can take it back in its old order (server.waiting.room.Room.restore)."""

    e: str  # event id
    v: str  # visitor id
    q: str  # queue id
    t: int  # ticket number (its order in the line); 0 while in the pre-queue
    x: int  # admitted session's expiry ms; 0 while waiting
    p: int  # the event's Redis epoch when this was signed (server.core.keys EventKeys.cfg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Randomness:
    """os.urandom read 4 kB at a time (a join takes two ids; one system call each was a visible
    share of its cost). A forked child starts with none, so no two processes share bytes."""

    CHUNK = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._buffer):
            self._buffer, self._at = secrets.token_bytes(self.CHUNK), 0
        out = self._buffer[self._at : self._at + n]
        self._at += n
        return out

    def forget(self) -> None:
        self._buffer, self._at = b"", 0


_RANDOM = _Randomness()
os.register_at_fork(after_in_child=_RANDOM.forget)


def new_id() -> str:
    """A random 128-bit id, 22 url-safe characters."""
    return _b64(_RANDOM.take(16))


class Signer:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(secret.encode()).digest()
        self._claims = msgspec.json.Encoder()
        self._decode_claims = msgspec.json.Decoder(AccessClaims)
        self._decode_place = msgspec.json.Decoder(PlaceClaims)

    def _mac(self, label: str, payload: str) -> str:
        # hmac.digest: OpenSSL's one-shot HMAC, without building an HMAC object per value
        return _b64(hmac.digest(self._key, f"{label}\n{payload}".encode(), "sha256"))

    def subkey(self, label: str) -> bytes:
        """A key of its own for another signer (e.g. the bot challenge), from the same secret."""
        return hmac.new(self._key, f"key\n{label}".encode(), hashlib.sha256).digest()

    def visitor_cookie(self, visitor_id: str) -> str:
        return f"{visitor_id}.{self._mac('visitor', visitor_id)}"

    def visitor_from_cookie(self, cookie: str | None) -> str | None:
        if not cookie or cookie.count(".") != 1:
            return None
        visitor_id, mac = cookie.split(".")
        if not VISITOR_ID.fullmatch(visitor_id) or not MAC.fullmatch(mac):
            return None
        if not hmac.compare_digest(mac, self._mac("visitor", visitor_id)):
            return None
        return visitor_id

    def _sign(self, label: str, claims: msgspec.Struct) -> str:
        payload = _b64(self._claims.encode(claims))
        return f"{payload}.{self._mac(label, payload)}"

    def _payload(self, label: str, token: str) -> bytes:
        """The verified payload of a signed token; TokenError if it is not one of `label`."""
        if not token or token.count(".") != 1 or len(token) > MAX_ACCESS_TOKEN:
            raise TokenError(f"malformed {label} token")
        payload, mac = token.split(".")
        if not MAC.fullmatch(mac) or not payload.isascii():
            raise TokenError(f"malformed {label} token")
        if not hmac.compare_digest(mac, self._mac(label, payload)):
            raise TokenError(f"{label} token signature does not verify")
        try:
            return _unb64(payload)
        except ValueError as exc:
            raise TokenError(f"malformed {label} token") from exc

    def access_token(self, claims: AccessClaims) -> str:
        return self._sign("access", claims)

    def place_token(self, claims: PlaceClaims) -> str:
        return self._sign("place", claims)

    def verify_place(self, token: str, *, event_id: str, visitor_id: str) -> PlaceClaims:
        """A place this visitor held at this event; TokenError otherwise."""
        try:
            claims = self._decode_place.decode(self._payload("place", token))
        except msgspec.DecodeError as exc:
            raise TokenError("malformed place token") from exc
        if claims.e != event_id or claims.v != visitor_id:
            raise TokenError("place token is for another event or visitor")
        return claims

    def verify_access(
        self, token: str, *, event_id: str, visitor_id: str | None, now_ms: int, leeway_ms: int = 0
    ) -> AccessClaims:
        """Check an access token for this event and visitor; raise TokenError otherwise."""
        try:
            claims = self._decode_claims.decode(self._payload("access", token))
        except msgspec.DecodeError as exc:
            raise TokenError("malformed access token") from exc
        if claims.e != event_id:
            raise TokenError("access token is for another event")
        if visitor_id is not None and claims.v != visitor_id:
            raise TokenError("access token belongs to another visitor")
        if claims.x + leeway_ms <= now_ms:
            raise TokenError("access token has expired")
        return claims

    def ticket_code(self, order_id: str, number: int) -> str:
        """One code per ticket: unguessable (the order id is random) and verifiable offline."""
        body = f"{order_id}-{number}"
        return f"{body}-{self._mac('ticket', body)[:TICKET_MAC_LENGTH]}"

    def verify_ticket(self, code: str) -> tuple[str, int]:
        """(order id, ticket number) of a genuine code; TokenError otherwise."""
        cut = len(code) - TICKET_MAC_LENGTH
        body, dash, mac = code[: cut - 1], code[cut - 1 : cut], code[cut:]
        parts = TICKET_BODY.fullmatch(body)
        if dash != "-" or parts is None or not TICKET_MAC.fullmatch(mac):
            raise TokenError("malformed ticket code")
        if not hmac.compare_digest(mac, self._mac("ticket", body)[:TICKET_MAC_LENGTH]):
            raise TokenError("ticket code does not verify")
        return parts.group(1), int(parts.group(2))
