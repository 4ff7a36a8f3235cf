"""Operators by name: signing in and out, one's own password and authenticator, and (for owners)
operators, scoped API tokens and their audit trail. The rules are in accounts.py, sessions.py
and permissions.py; these handlers only wire them."""

from __future__ import annotations

import logging
from typing import Annotated

import msgspec
from aiohttp import web
from msgspec import UNSET, Meta, Struct, UnsetType

from server.core import client_address
from server.core.bodies import read_json
from server.core.errors import Invalid, NotFound, Unauthorized
from server.core.http import json_response
from server.core.settings import SETTINGS
from server.ops import accounts, sessions
from server.ops.accounts import Role
from server.ops.admin_guard import ADMIN_GUARD, admin_only, route_rule
from server.ops.permissions import Principal, Scope
from server.store import audit
from server.store.db import POOL

log = logging.getLogger("boxoffice.operators")
routes = web.RouteTableDef()

Text = Annotated[str, Meta(max_length=1024)]
SIGN_IN_FAILED = "email, password or code not accepted"
CLOSE_SIGNED_OUT = 4401
MAX_AUDIT = 500


class SignIn(Struct, forbid_unknown_fields=True, frozen=True):
    email: Text
    password: Text
    otp: Text = ""


class SessionView(Struct, frozen=True):
    email: str
    role: str
    csrf_token: str
    must_change_password: bool = False


class SignInOptions(Struct, frozen=True):
    shared_token: bool  # BOXOFFICE_ADMIN_TOKEN is configured (and works, with full power)


class PasswordChange(Struct, forbid_unknown_fields=True, frozen=True):
    password: Text
    new_password: Text


class CodeBody(Struct, forbid_unknown_fields=True, frozen=True):
    otp: Text


class Enrolment(Struct, frozen=True):
    totp_secret: str
    otpauth_uri: str
    qr_svg: str


class RecoveryCodes(Struct, frozen=True):
    recovery_codes: list[str]


class OperatorCreate(Struct, forbid_unknown_fields=True, frozen=True):
    email: accounts.OperatorEmail
    role: Role


class OperatorPatch(Struct, forbid_unknown_fields=True, frozen=True):
    role: Role | UnsetType = UNSET
    disabled: bool | UnsetType = UNSET


class TokenCreate(Struct, forbid_unknown_fields=True, frozen=True):
    name: sessions.TokenName
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=20)]


class Ended(Struct, frozen=True):
    ended: int


_sign_in = msgspec.json.Decoder(SignIn)
_password = msgspec.json.Decoder(PasswordChange)
_code = msgspec.json.Decoder(CodeBody)
_operator_create = msgspec.json.Decoder(OperatorCreate)
_operator_patch = msgspec.json.Decoder(OperatorPatch)
_token_create = msgspec.json.Decoder(TokenCreate)


def _tls(request: web.Request) -> bool:
    """Whether the browser reached us over TLS (directly, or through the NGINX of `up` on this
    machine); production mode always marks the cookie Secure."""
    if request.app[SETTINGS].mode == "production" or request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return client_address.of(request) != (request.remote or "") and forwarded == "https"


def _email_or_404(raw: str) -> str:
    email = accounts.normalise_email(raw)
    if email is None:
        raise NotFound("no such operator", code="operator_not_found")
    return email


def _session_of(p: Principal) -> str:
    assert p.session is not None and p.operator_id is not None  # SELF routes: sessions only
    return p.session


# ---- signing in and out -----------------------------------------------------------------------


@routes.get("/api/admin/sign-in-options")
async def sign_in_options(request: web.Request) -> web.Response:
    """What the console's sign-in page offers (no credential needed)."""
    route_rule(request)
    return json_response(SignInOptions(shared_token=bool(request.app[SETTINGS].admin_token)))


@routes.post("/api/admin/session")
async def sign_in(request: web.Request) -> web.Response:
    """Email, password and code → a session cookie and its CSRF token. Any wrong part is the
    same 401 sign_in_failed, after the same password-hash work."""
    route_rule(request)
    body = await read_json(request, SignIn)
    guard, address, pool = request.app[ADMIN_GUARD], client_address.of(request), request.app[POOL]
    email = accounts.normalise_email(body.email)
    account = accounts.account_digest(email or body.email.strip().lower())
    await guard.not_throttled(address, account)
    op = await accounts.by_email(pool, email) if email is not None else None
    ok = await accounts.verify_password_async(
        op.password_hash if op is not None else None, body.password
    )
    if ok and op is not None and not op.disabled:
        code = body.otp.strip()
        if code or accounts.needs_totp(op.role):
            ok = await accounts.check_code(pool, op, code)
    else:
        ok = False
    if not ok or op is None:
        await guard.failed(address, account, "wrong email, password or code")
        raise Unauthorized(SIGN_IN_FAILED, code="sign_in_failed")
    sid, csrf = await sessions.start(pool, op.id, address)
    log.info("operator signed in", extra={"address": address, "operator": op.email})
    response = json_response(SessionView(op.email, op.role, csrf, op.must_change_password))
    settings = request.app[SETTINGS]
    response.set_cookie(
        sessions.SESSION_COOKIE,
        sid,
        path=sessions.COOKIE_PATH,
        max_age=settings.console_session_hours * 3600,
        httponly=True,
        samesite="Strict",
        secure=_tls(request),
    )
    return response


@routes.get("/api/admin/session")
async def session_view(request: web.Request) -> web.Response:
    """The signed-in operator (and the CSRF token, for a page reloaded)."""
    p = await admin_only(request)
    assert p.role is not None and p.csrf_token is not None
    return json_response(SessionView(p.who, p.role, p.csrf_token, p.must_change_password))


def _signed_out(response: web.Response) -> web.Response:
    response.del_cookie(sessions.SESSION_COOKIE, path=sessions.COOKIE_PATH)
    return response


@routes.delete("/api/admin/session")
async def sign_out(request: web.Request) -> web.Response:
    p = await admin_only(request)
    session = _session_of(p)
    await sessions.end(request.app[POOL], session)
    await request.app[sessions.CONSOLE_SOCKETS].close(
        f"session:{session}", CLOSE_SIGNED_OUT, "signed out"
    )
    return _signed_out(web.Response(status=204))


@routes.delete("/api/admin/sessions")
async def sign_out_everywhere(request: web.Request) -> web.Response:
    """End every session of the signed-in operator, on every device."""
    p = await admin_only(request)
    _session_of(p)
    ended = await sessions.end_all(request.app[POOL], p.operator_id or 0)
    await request.app[sessions.CONSOLE_SOCKETS].close(
        f"operator:{p.operator_id}", CLOSE_SIGNED_OUT, "signed out everywhere"
    )
    log.info("operator signed out everywhere", extra={"operator": p.who, "sessions": ended})
    return _signed_out(json_response(Ended(ended)))


# ---- one's own account --------------------------------------------------------------------------


async def _own_row(request: web.Request, p: Principal) -> accounts.OperatorRow:
    op = await accounts.by_id(request.app[POOL], p.operator_id or 0)
    if op is None:
        raise Unauthorized("admin token missing or wrong")
    return op


@routes.post("/api/admin/account/password")
async def change_password(request: web.Request) -> web.Response:
    """The current password and a new one; other sessions of the account end."""
    p = await admin_only(request)
    session = _session_of(p)
    body = await read_json(request, PasswordChange)
    guard, address, pool = request.app[ADMIN_GUARD], client_address.of(request), request.app[POOL]
    account = accounts.account_digest(p.who)
    await guard.not_throttled(address, account)
    op = await _own_row(request, p)
    if not await accounts.verify_password_async(op.password_hash, body.password):
        await guard.failed(address, account, "wrong current password")
        raise Invalid("password: the current password is not right", code="wrong_password")
    problem = accounts.password_problem(body.new_password, op.email)
    if problem is not None:
        raise Invalid(problem, code="weak_password")
    async with pool.acquire() as conn, conn.transaction():
        await accounts.set_password(conn, op.id, body.new_password)
        await sessions.end_others(conn, op.id, session)
    return web.Response(status=204)


@routes.post("/api/admin/account/totp")
async def start_enrolment(request: web.Request) -> web.Response:
    """A new authenticator secret (and its QR code); the current one works until the new one
    is confirmed with a code."""
    p = await admin_only(request)
    _session_of(p)
    secret = await accounts.start_enrolment(request.app[POOL], p.operator_id or 0)
    uri = accounts.provisioning_uri(secret, p.who)
    return json_response(Enrolment(secret, uri, accounts.qr_svg(uri)))


@routes.post("/api/admin/account/totp/confirm")
async def confirm_enrolment(request: web.Request) -> web.Response:
    """A code of the new secret makes it the account's; new recovery codes, shown once."""
    p = await admin_only(request)
    _session_of(p)
    body = await read_json(request, CodeBody)
    guard, address, pool = request.app[ADMIN_GUARD], client_address.of(request), request.app[POOL]
    account = accounts.account_digest(p.who)
    await guard.not_throttled(address, account)
    async with pool.acquire() as conn, conn.transaction():
        op = await _own_row(request, p)
        codes = await accounts.confirm_enrolment(conn, op, body.otp.strip())
    if codes is None:
        await guard.failed(address, account, "wrong enrolment code")
        raise Invalid("otp: not the current code of the new secret", code="wrong_code")
    return json_response(RecoveryCodes(codes))


@routes.post("/api/admin/account/recovery-codes")
async def new_recovery_codes(request: web.Request) -> web.Response:
    p = await admin_only(request)
    _session_of(p)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        codes = await accounts.replace_recovery_codes(conn, p.operator_id or 0)
    return json_response(RecoveryCodes(codes))


# ---- operators (owners) -------------------------------------------------------------------------


@routes.get("/api/admin/operators")
async def list_operators(request: web.Request) -> web.Response:
    await admin_only(request)
    return json_response(await accounts.views(request.app[POOL]))


@routes.post("/api/admin/operators")
async def create_operator(request: web.Request) -> web.Response:
    """Invite an operator: a temporary password and an authenticator secret, shown once."""
    p = await admin_only(request)
    body = await read_json(request, OperatorCreate)
    email = body.email.lower()  # the type holds the rule: one whole address
    async with request.app[POOL].acquire() as conn, conn.transaction():
        made = await accounts.create(conn, email, body.role, p.who)
        change = {email: (None, {"role": body.role})}
        await audit.record(conn, None, p.who, "operator_create", change, step_up=p.stepped_up)
    log.info("operator created", extra={"operator": email, "by": p.who})
    return json_response(made, status=201)


async def _view(request: web.Request, email: str) -> accounts.OperatorView:
    for view in await accounts.views(request.app[POOL]):
        if view.email == email:
            return view
    raise NotFound("no such operator", code="operator_not_found")


@routes.patch("/api/admin/operators/{email}")
async def patch_operator(request: web.Request) -> web.Response:
    """Change an operator's role, or disable (ending their sessions and live sockets at once)
    or enable them."""
    p = await admin_only(request)
    email = _email_or_404(request.match_info["email"])
    body = await read_json(request, OperatorPatch)
    role = None if body.role is UNSET else body.role
    disabled = None if body.disabled is UNSET else body.disabled
    async with request.app[POOL].acquire() as conn, conn.transaction():
        old, new = await accounts.update(conn, email, role, disabled)
        change = audit.diff(
            {"role": old.role, "disabled": old.disabled},
            {"role": new.role, "disabled": new.disabled},
        )
        changes = {f"{email}.{f}": d for f, d in change.items()}
        await audit.record(conn, None, p.who, "operator_update", changes, step_up=p.stepped_up)
    if new.disabled or new.role != old.role:
        await request.app[sessions.CONSOLE_SOCKETS].close(
            f"operator:{old.id}", CLOSE_SIGNED_OUT, "your account was changed by an owner"
        )
    return json_response(await _view(request, email))


@routes.post("/api/admin/operators/{email}/reset")
async def reset_operator(request: web.Request) -> web.Response:
    """A new temporary password and authenticator secret (shown once); sessions end."""
    p = await admin_only(request)
    email = _email_or_404(request.match_info["email"])
    async with request.app[POOL].acquire() as conn, conn.transaction():
        old = await accounts.by_email(conn, email)
        made = await accounts.reset(conn, email)
        await audit.record(
            conn, None, p.who, "operator_reset", {email: (None, "reset")}, step_up=p.stepped_up
        )
    if old is not None:
        await request.app[sessions.CONSOLE_SOCKETS].close(
            f"operator:{old.id}", CLOSE_SIGNED_OUT, "your account was reset by an owner"
        )
    return json_response(made)


# ---- API tokens (owners) ------------------------------------------------------------------------


@routes.get("/api/admin/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    await admin_only(request)
    return json_response(await sessions.tokens(request.app[POOL]))


@routes.post("/api/admin/tokens")
async def create_token(request: web.Request) -> web.Response:
    """A scoped token for automation; its secret is shown this once."""
    p = await admin_only(request)
    body = await read_json(request, TokenCreate)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        made = await sessions.create_token(conn, body.name, body.scopes, p.who)
        change = {f"token:{body.name}": (None, {"scopes": made.scopes})}
        await audit.record(conn, None, p.who, "token_create", change, step_up=p.stepped_up)
    return json_response(made, status=201)


@routes.delete("/api/admin/tokens/{name}")
async def revoke_token(request: web.Request) -> web.Response:
    p = await admin_only(request)
    name = request.match_info["name"]
    if not sessions.TOKEN_NAME.fullmatch(name):  # no such name can exist: not worth a query
        raise NotFound("no such live token", code="token_not_found")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        if not await sessions.revoke_token(conn, name):
            raise NotFound("no such live token", code="token_not_found")
        change = {f"token:{name}": ("live", "revoked")}
        await audit.record(conn, None, p.who, "token_revoke", change, step_up=p.stepped_up)
    await request.app[sessions.CONSOLE_SOCKETS].close(
        f"token:{name}", CLOSE_SIGNED_OUT, "token revoked"
    )
    return web.Response(status=204)


@routes.get("/api/admin/audit")
async def account_audit(request: web.Request) -> web.Response:
    """Changes to operators and tokens, newest first (?limit=1..500, default 100)."""
    await admin_only(request)
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_AUDIT:
        raise Invalid(f"limit: a whole number from 1 to {MAX_AUDIT}")
    return json_response(await audit.entries(request.app[POOL], None, int(raw)))
