"""Operator accounts: the rules (emails, passwords, roles, TOTP codes, recovery codes) as plain
functions, and the accounts' rows in PostgreSQL.

Passwords are hashed with argon2id (argon2-cffi's defaults); verifying costs tens of
milliseconds, so it runs in a thread, and a sign-in for an unknown email verifies against a
dummy hash so that both answers take as long. TOTP (RFC 6238, pyotp) codes of the previous,
current and next 30-second step are accepted, each step at most once per account (the last
step used is kept in the row, updated atomically). Recovery codes carry 80 random bits, are
stored as SHA-256 digests and are spent once."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from msgspec import Meta

from server.core import ids, qr
from server.core.errors import Conflict, NotFound

Role = Literal["owner", "operator", "viewer", "door"]
ROLES: tuple[Role, ...] = ("owner", "operator", "viewer", "door")
ISSUER = "Boxoffice"

# ---- emails ---------------------------------------------------------------------------------

MAX_EMAIL = 254
# An operator's login: one whole ASCII address, in any case (dot-atom local part, dotted host
# names, a letters-only top-level domain). The rule of normalise_email and of OperatorEmail.
EMAIL_BODY = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_EMAIL = re.compile(EMAIL_BODY)
# An operator's email in a request body (the published schema says the same rule).
OperatorEmail = Annotated[str, Meta(pattern=ids.schema_pattern(EMAIL_BODY), max_length=MAX_EMAIL)]


def normalise_email(raw: str) -> str | None:
    """The login name: trimmed, one whole ASCII address (no NUL, no second line), lower case;
    None when `raw` is not one."""
    text = raw.strip()
    if len(text) > MAX_EMAIL or not _EMAIL.fullmatch(text):
        return None
    return text.lower()


def account_digest(email: str) -> str:
    """A short, fixed-alphabet name for an account in Redis keys (any text a client sends)."""
    return hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# ---- passwords ------------------------------------------------------------------------------

MIN_PASSWORD, MAX_PASSWORD = 12, 256
_hasher = PasswordHasher()
_dummy_hash: str | None = None


def password_problem(password: str, email: str) -> str | None:
    """Why a new password is refused, or None."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return f"new_password: {MIN_PASSWORD} to {MAX_PASSWORD} characters"
    if "\x00" in password or not _encodable(password):
        return "new_password: no NUL and no unpaired surrogates"
    if len(set(password)) < 6:
        return "new_password: too repetitive (use at least 6 different characters)"
    if email and email.split("@")[0] in password.lower():
        return "new_password: must not contain your email's name"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _secret_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    return _hasher.hash(_secret_bytes(password))


def verify_password(stored: str | None, password: str) -> bool:
    """True if `password` matches `stored`; with stored None, a dummy hash is verified so that
    an unknown account costs the same time as a known one."""
    global _dummy_hash
    if stored is None:
        if _dummy_hash is None:
            _dummy_hash = hash_password(secrets.token_urlsafe(16))
        _verify(_dummy_hash, password)
        return False
    return _verify(stored, password)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, _secret_bytes(password))
    except (VerificationError, InvalidHashError):
        return False


async def verify_password_async(stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, stored, password)


def temporary_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


# ---- TOTP -----------------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]{6}")


def new_totp_secret() -> str:
    return pyotp.random_base32()  # 32 base32 characters, 160 bits


def totp_step(secret: str, code: str, now: float) -> int | None:
    """The 30-second step (previous, current or next, for clock drift) whose code `code` is,
    or None."""
    if not _DIGITS.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(datetime.fromtimestamp(now, UTC))
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def fresh_totp_step(secret: str, code: str, now: float, last_step: int) -> int | None:
    """The step of a right code not used before (a code replayed within its minute is refused)."""
    step = totp_step(secret, code, now)
    return step if step is not None and step > last_step else None


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    return qr.svg(uri)


# ---- recovery codes -------------------------------------------------------------------------

RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY = re.compile(f"[{_RECOVERY_ALPHABET}]{{16}}")


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    """Codes like `abcd-efgh-jkmn-pqrs` (16 characters of 31, about 79 bits each)."""
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def recovery_digest(code: str) -> str | None:
    """The stored form of a recovery code as a person may type it (any case, dashes, spaces);
    None when the text cannot be one."""
    plain = code.strip().lower().replace("-", "").replace(" ", "")
    if not _RECOVERY.fullmatch(plain):
        return None
    return hashlib.sha256(plain.encode()).hexdigest()


def needs_totp(role: str) -> bool:
    """Owners and operators always sign in with a code; viewers and door staff may (a code they
    give must be right)."""
    return role in ("owner", "operator")


# ---- rows -----------------------------------------------------------------------------------

Conn = Any  # an asyncpg pool, connection or pool connection

COLUMNS = (
    "id, email, role, password_hash, must_change_password, totp_secret, totp_pending_secret,"
    " totp_last_step, disabled_at IS NOT NULL AS disabled, created_at, created_by"
)


class OperatorRow(msgspec.Struct, frozen=True):
    id: int
    email: str
    role: Role
    password_hash: str
    must_change_password: bool
    totp_secret: str
    totp_pending_secret: str | None
    totp_last_step: int
    disabled: bool
    created_at: datetime
    created_by: str


class OperatorView(msgspec.Struct, frozen=True):
    """An operator as owners see it (no secrets)."""

    email: str
    role: Role
    disabled: bool
    must_change_password: bool
    created_at: datetime
    created_by: str
    sessions: int = 0


class Issued(msgspec.Struct, frozen=True):
    """What a new or reset operator needs, shown once: a temporary password and the TOTP secret
    (also as an otpauth:// URI and its QR code)."""

    email: str
    role: Role
    password: str
    totp_secret: str
    otpauth_uri: str
    qr_svg: str


def _row(record: asyncpg.Record) -> OperatorRow:
    return msgspec.convert(dict(record), OperatorRow)


def issued(email: str, role: Role, password: str, secret: str) -> Issued:
    uri = provisioning_uri(secret, email)
    return Issued(email, role, password, secret, uri, qr_svg(uri))


async def by_email(conn: Conn, email: str) -> OperatorRow | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM operators WHERE email = $1", email)
    return None if row is None else _row(row)


async def by_id(conn: Conn, operator_id: int) -> OperatorRow | None:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM operators WHERE id = $1", operator_id)
    return None if row is None else _row(row)


async def create(conn: Conn, email: str, role: Role, created_by: str) -> Issued:
    """A new account with a temporary password and a TOTP secret; 409 if the email exists."""
    password, secret = temporary_password(), new_totp_secret()
    hashed = await asyncio.to_thread(hash_password, password)
    row = await conn.fetchrow(
        "INSERT INTO operators (email, role, password_hash, totp_secret, created_by)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING id",
        email,
        role,
        hashed,
        secret,
        created_by,
    )
    if row is None:
        raise Conflict("an operator with this email exists", code="operator_exists")
    return issued(email, role, password, secret)


async def reset(conn: Conn, email: str) -> Issued:
    """A new temporary password and TOTP secret; recovery codes and sessions end."""
    password, secret = temporary_password(), new_totp_secret()
    hashed = await asyncio.to_thread(hash_password, password)
    row = await conn.fetchrow(
        "UPDATE operators SET password_hash = $2, totp_secret = $3, totp_pending_secret = NULL,"
        " totp_last_step = 0, must_change_password = true WHERE email = $1 RETURNING id, role",
        email,
        hashed,
        secret,
    )
    if row is None:
        raise NotFound("no such operator", code="operator_not_found")
    await conn.execute("DELETE FROM operator_recovery_codes WHERE operator_id = $1", row["id"])
    await conn.execute("DELETE FROM operator_sessions WHERE operator_id = $1", row["id"])
    return issued(email, row["role"], password, secret)


async def views(conn: Conn) -> list[OperatorView]:
    rows = await conn.fetch(
        "SELECT o.email, o.role, o.disabled_at IS NOT NULL AS disabled, o.must_change_password,"
        " o.created_at, o.created_by, count(s.id_hash) AS sessions FROM operators o"
        " LEFT JOIN operator_sessions s ON s.operator_id = o.id"
        " GROUP BY o.id ORDER BY o.email"
    )
    return [msgspec.convert(dict(r), OperatorView) for r in rows]


def keeps_an_owner(active_owners: int, was_active_owner: bool, is_active_owner: bool) -> bool:
    """A change to one account must leave at least one owner who can sign in."""
    after = active_owners - int(was_active_owner) + int(is_active_owner)
    return after >= 1


async def update(
    conn: Conn, email: str, role: Role | None, disabled: bool | None
) -> tuple[OperatorRow, OperatorRow]:
    """Change an account's role or disabled state (in the caller's transaction): (old, new).
    Disabling ends its sessions. 409 last_owner if no active owner would remain."""
    await conn.execute("LOCK TABLE operators IN SHARE ROW EXCLUSIVE MODE")
    old = await by_email(conn, email)
    if old is None:
        raise NotFound("no such operator", code="operator_not_found")
    new_role = old.role if role is None else role
    new_disabled = old.disabled if disabled is None else disabled
    owners = await conn.fetchval(
        "SELECT count(*) FROM operators WHERE role = 'owner' AND disabled_at IS NULL"
    )
    was = old.role == "owner" and not old.disabled
    now_owner = new_role == "owner" and not new_disabled
    if not keeps_an_owner(int(owners), was, now_owner):
        raise Conflict("this would leave no owner who can sign in", code="last_owner")
    await conn.execute(
        "UPDATE operators SET role = $2, disabled_at = CASE WHEN $3 THEN"
        " coalesce(disabled_at, now()) ELSE NULL END WHERE id = $1",
        old.id,
        new_role,
        new_disabled,
    )
    if new_disabled:
        await conn.execute("DELETE FROM operator_sessions WHERE operator_id = $1", old.id)
    new = msgspec.structs.replace(old, role=new_role, disabled=new_disabled)
    return old, new


async def use_totp_step(conn: Conn, operator_id: int, step: int) -> bool:
    """Record `step` as used; False if it (or a later step) was used already (a replay)."""
    done = await conn.fetchval(
        "UPDATE operators SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2"
        " RETURNING id",
        operator_id,
        step,
    )
    return done is not None


async def check_code(conn: Conn, op: OperatorRow, code: str) -> bool:
    """A fresh TOTP code of the account (spent now), or one of its unused recovery codes
    (spent now)."""
    step = fresh_totp_step(op.totp_secret, code, time.time(), op.totp_last_step)
    if step is not None:
        return await use_totp_step(conn, op.id, step)
    digest = recovery_digest(code)
    if digest is None:
        return False
    spent = await conn.fetchval(
        "UPDATE operator_recovery_codes SET used_at = now()"
        " WHERE operator_id = $1 AND code_hash = $2 AND used_at IS NULL RETURNING operator_id",
        op.id,
        digest,
    )
    return spent is not None


async def check_totp(conn: Conn, op: OperatorRow, code: str) -> bool:
    """A fresh TOTP code of the account (spent now); recovery codes do not count."""
    step = fresh_totp_step(op.totp_secret, code, time.time(), op.totp_last_step)
    return step is not None and await use_totp_step(conn, op.id, step)


async def set_password(conn: Conn, operator_id: int, password: str) -> None:
    hashed = await asyncio.to_thread(hash_password, password)
    await conn.execute(
        "UPDATE operators SET password_hash = $2, must_change_password = false WHERE id = $1",
        operator_id,
        hashed,
    )


async def start_enrolment(conn: Conn, operator_id: int) -> str:
    """A new pending TOTP secret; the current one stays in force until the new one is
    confirmed with a code."""
    secret = new_totp_secret()
    await conn.execute(
        "UPDATE operators SET totp_pending_secret = $2 WHERE id = $1", operator_id, secret
    )
    return secret


async def confirm_enrolment(conn: Conn, op: OperatorRow, code: str) -> list[str] | None:
    """Make the pending secret the account's if `code` is its code now; new recovery codes
    (the old ones end). None if there is no pending secret or the code is wrong."""
    if op.totp_pending_secret is None:
        return None
    step = totp_step(op.totp_pending_secret, code, time.time())
    if step is None:
        return None
    await conn.execute(
        "UPDATE operators SET totp_secret = totp_pending_secret, totp_pending_secret = NULL,"
        " totp_last_step = $2 WHERE id = $1",
        op.id,
        step,
    )
    return await replace_recovery_codes(conn, op.id)


async def replace_recovery_codes(conn: Conn, operator_id: int) -> list[str]:
    codes = new_recovery_codes()
    await conn.execute("DELETE FROM operator_recovery_codes WHERE operator_id = $1", operator_id)
    await conn.executemany(
        "INSERT INTO operator_recovery_codes (operator_id, code_hash) VALUES ($1, $2)",
        [(operator_id, recovery_digest(c)) for c in codes],
    )
    return codes
