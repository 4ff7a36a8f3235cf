"""Console sessions and scoped API tokens, stored server-side in PostgreSQL by digest only, and
the live websockets each of them holds open on this process (closed at once when the session
or token ends here; other processes notice within RECHECK_S).

A session ends when its operator signs out (here or everywhere), is disabled or reset, after
`console_idle_minutes` without a request, and `console_session_hours` after sign-in, whichever
comes first."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import Meta

from server.core import ids
from server.ops.accounts import Conn
from server.ops.permissions import Principal

SESSION_COOKIE = "bo_console"
COOKIE_PATH = "/api"  # the admin API and check-in at the door (/api/events/{id}/checkins)
TOKEN_PREFIX = "bo_"
RECHECK_S = 2.0  # how often an open live socket checks that its credential still stands

_SID = re.compile(r"[A-Za-z0-9_-]{43}")
_TOKEN = re.compile(r"bo_[A-Za-z0-9_-]{43}")
TOKEN_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
# A token's name in a request body (the published schema says the same rule).
TokenName = Annotated[str, Meta(pattern=ids.schema_pattern(TOKEN_NAME.pattern))]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def session_digest(cookie: str | None) -> str | None:
    """The stored form of a session cookie's value; None for anything that cannot be one."""
    if cookie is None or not _SID.fullmatch(cookie):
        return None
    return digest(cookie)


def token_digest(token: str) -> str | None:
    """The stored form of an API token; None for anything that cannot be one."""
    return digest(token) if _TOKEN.fullmatch(token) else None


# ---- sessions -------------------------------------------------------------------------------


async def start(conn: Conn, operator_id: int, address: str) -> tuple[str, str]:
    """A new session: (the cookie's value, its CSRF token)."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await conn.execute(
        "INSERT INTO operator_sessions (id_hash, operator_id, csrf_token, address)"
        " VALUES ($1, $2, $3, $4)",
        digest(sid),
        operator_id,
        csrf,
        address,
    )
    return sid, csrf


_LIVE = (
    "o.disabled_at IS NULL AND s.last_seen_at > now() - make_interval(mins => $2)"
    " AND s.created_at > now() - make_interval(hours => $3)"
)


async def principal(conn: Conn, id_hash: str, idle_min: int, max_hours: int) -> Principal | None:
    """The operator of a live session (its idle clock restarts), or None."""
    row = await conn.fetchrow(
        "UPDATE operator_sessions s SET last_seen_at = now() FROM operators o"
        f" WHERE s.id_hash = $1 AND o.id = s.operator_id AND {_LIVE}"
        " RETURNING o.id, o.email, o.role, o.must_change_password, s.csrf_token,"
        " coalesce(s.step_up_until > now(), false) AS stepped_up",
        id_hash,
        idle_min,
        max_hours,
    )
    if row is None:
        return None
    return Principal(
        "session",
        row["email"],
        role=row["role"],
        operator_id=row["id"],
        session=id_hash,
        csrf_token=row["csrf_token"],
        stepped_up=row["stepped_up"],
        must_change_password=row["must_change_password"],
    )


async def alive(conn: Conn, id_hash: str, idle_min: int, max_hours: int) -> bool:
    """Whether a session still stands (without restarting its idle clock)."""
    found = await conn.fetchval(
        "SELECT 1 FROM operator_sessions s JOIN operators o ON o.id = s.operator_id"
        f" WHERE s.id_hash = $1 AND {_LIVE}",
        id_hash,
        idle_min,
        max_hours,
    )
    return found is not None


async def stepped_up(conn: Conn, id_hash: str, minutes: int) -> None:
    await conn.execute(
        "UPDATE operator_sessions SET step_up_until = now() + make_interval(mins => $2)"
        " WHERE id_hash = $1",
        id_hash,
        minutes,
    )


async def end(conn: Conn, id_hash: str) -> None:
    await conn.execute("DELETE FROM operator_sessions WHERE id_hash = $1", id_hash)


async def end_others(conn: Conn, operator_id: int, keep: str) -> None:
    await conn.execute(
        "DELETE FROM operator_sessions WHERE operator_id = $1 AND id_hash <> $2", operator_id, keep
    )


async def end_all(conn: Conn, operator_id: int) -> int:
    """End every session of one operator; how many there were."""
    done = await conn.fetch(
        "DELETE FROM operator_sessions WHERE operator_id = $1 RETURNING id_hash", operator_id
    )
    return len(done)


# ---- API tokens -----------------------------------------------------------------------------


class TokenView(msgspec.Struct, frozen=True):
    name: str
    scopes: list[str]
    created_by: str
    created_at: datetime
    revoked: bool
    last_used_at: datetime | None
    last_used_address: str | None


class NewToken(msgspec.Struct, frozen=True):
    """A token as created: its secret is shown this once."""

    name: str
    scopes: list[str]
    token: str


async def create_token(conn: Conn, name: str, scopes: Sequence[str], created_by: str) -> NewToken:
    from server.core.errors import Conflict

    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    done = await conn.fetchval(
        "INSERT INTO api_tokens (name, token_hash, scopes, created_by) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (name) DO NOTHING RETURNING id",
        name,
        digest(token),
        sorted(set(scopes)),
        created_by,
    )
    if done is None:
        raise Conflict("a token with this name exists", code="token_exists")
    return NewToken(name, sorted(set(scopes)), token)


async def token_principal(conn: Conn, token_hash: str, address: str) -> Principal | None:
    """The scoped token with this digest if not revoked (its last use is recorded), or None."""
    row = await conn.fetchrow(
        "UPDATE api_tokens SET last_used_at = now(), last_used_address = $2"
        " WHERE token_hash = $1 AND revoked_at IS NULL RETURNING name, scopes",
        token_hash,
        address,
    )
    if row is None:
        return None
    return Principal(
        "token", f"token:{row['name']}", scopes=frozenset(row["scopes"]), token_name=row["name"]
    )


async def token_alive(conn: Conn, name: str) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM api_tokens WHERE name = $1 AND revoked_at IS NULL", name
    )
    return found is not None


async def revoke_token(conn: Conn, name: str) -> bool:
    done = await conn.fetchval(
        "UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"
        " RETURNING id",
        name,
    )
    return done is not None


async def tokens(conn: Conn) -> list[TokenView]:
    rows = await conn.fetch(
        "SELECT name, scopes, created_by, created_at, revoked_at IS NOT NULL AS revoked,"
        " last_used_at, last_used_address FROM api_tokens ORDER BY revoked, name"
    )
    return [msgspec.convert(dict(r), TokenView) for r in rows]


# ---- live sockets held by a credential -------------------------------------------------------


def socket_keys(p: Principal) -> list[str]:
    """The names under which a credential's sockets are closed: its session, its operator
    (disabling, reset, sign-out everywhere) or its token (revocation)."""
    keys = []
    if p.session is not None:
        keys.append(f"session:{p.session}")
    if p.operator_id is not None:
        keys.append(f"operator:{p.operator_id}")
    if p.token_name is not None:
        keys.append(f"token:{p.token_name}")
    return keys


class ConsoleSockets:
    """The console websockets open on this process, by the credential that opened them."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[web.WebSocketResponse]] = {}

    def add(self, p: Principal, ws: web.WebSocketResponse) -> None:
        for key in socket_keys(p):
            self._by_key.setdefault(key, set()).add(ws)

    def remove(self, p: Principal, ws: web.WebSocketResponse) -> None:
        for key in socket_keys(p):
            held = self._by_key.get(key)
            if held is not None:
                held.discard(ws)
                if not held:
                    del self._by_key[key]

    async def close(self, key: str, code: int, reason: str) -> int:
        """Close every socket held under `key`; how many."""
        held = list(self._by_key.pop(key, ()))
        for ws in held:
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "error", "error": "unauthorized", "detail": reason})
            with contextlib.suppress(Exception):
                await ws.close(code=code, message=b"signed_out")
        return len(held)


CONSOLE_SOCKETS = web.AppKey("console_sockets", ConsoleSockets)
