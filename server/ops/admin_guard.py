"""Who is asking on the admin API, and may they: credentials, CSRF, the permission table, step-up
codes, with failed credentials throttled per client address and per account.

Credentials, in order: `Authorization: Bearer <token>` (the shared BOXOFFICE_ADMIN_TOKEN while
it is configured, or a scoped API token), else the console's session cookie. Every failed
credential — a wrong token, a wrong sign-in (password or code), a wrong step-up code, a wrong
current password — counts one failure for the client's address in Redis (queue/rate_limit.lua,
key keys.admin_failures), shared by every process; sign-ins and codes also count for the account
(keys.account_failures). Past the limit the address (or account) is answered 429 with
Retry-After until its window ends, whatever it presents; other addresses and accounts are
unaffected. A request with no credential guessed nothing and is not counted; neither is a stale
session cookie (its 256 bits are not guessable). Failures and throttles are logged. The check
needs Redis: without it the admin API answers 503 (failing closed)."""

from __future__ import annotations

import dataclasses
import hmac
import logging
import math
from collections.abc import AsyncIterator

from aiohttp import web

from server.core import client_address, keys
from server.core.errors import Forbidden, RateLimited, Unauthorized
from server.core.identity import admin_token_matches, bearer
from server.core.settings import SETTINGS
from server.ops import accounts, sessions
from server.ops.permissions import Principal, Rule, needs_step_up, rule_for, verdict
from server.store import audit
from server.store.db import POOL
from server.store.lua import AnyRedis, register
from server.store.redis_client import REDIS

log = logging.getLogger("boxoffice.admin")

FAILURES_PER_WINDOW = 10  # per client address
WINDOW_MS = 60_000
ACCOUNT_FAILURES_PER_WINDOW = 5  # per account, from any address
ACCOUNT_WINDOW_MS = 300_000
REFUSED = "admin token missing or wrong"
CSRF_HEADER = "X-CSRF-Token"
OTP_HEADER = "X-Boxoffice-OTP"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PRINCIPAL = web.RequestKey("principal", Principal)


def _throttled(reset_ms: int, whose: str) -> RateLimited:
    return RateLimited(
        f"too many failed sign-ins {whose}; wait before trying again",
        retry_after=max(1, math.ceil(reset_ms / 1000)),
    )


class AdminGuard:
    def __init__(self, client: AnyRedis, admin_token: str) -> None:
        self.redis = client
        self.admin_token = admin_token
        self._count = register(client, "rate_limit")["rate_limit"]

    def _limits(self, address: str, account: str | None) -> list[tuple[str, int, int, str]]:
        found = [
            (keys.admin_failures(address), FAILURES_PER_WINDOW, WINDOW_MS, "from this address")
        ]
        if account is not None:
            found.append(
                (
                    keys.account_failures(account),
                    ACCOUNT_FAILURES_PER_WINDOW,
                    ACCOUNT_WINDOW_MS,
                    "for this account",
                )
            )
        return found

    async def not_throttled(self, address: str, account: str | None = None) -> None:
        """Raise RateLimited while this address (or account) is past its failures."""
        limits = self._limits(address, account)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, _, _, _ in limits:
                pipe.get(key)
                pipe.pttl(key)
            answers = await pipe.execute()
        for i, (_, limit, window, whose) in enumerate(limits):
            count, ttl = answers[2 * i], answers[2 * i + 1]
            if count is not None and int(count) > limit:
                raise _throttled(int(ttl) if int(ttl) > 0 else window, whose)

    async def failed(self, address: str, account: str | None, what: str) -> None:
        """Count one failed credential; raise RateLimited if that crossed a limit."""
        refused: RateLimited | None = None
        for key, limit, window, whose in self._limits(address, account):
            allowed, reset_ms = await self._count(keys=[key], args=[limit, window])
            if not allowed and refused is None:
                refused = _throttled(int(reset_ms), whose)
                log.warning(
                    "admin sign-in throttled",
                    extra={"address": address, "limit": limit, "window_s": window // 1000},
                )
        if refused is not None:
            raise refused
        log.warning(f"admin sign-in failed: {what}", extra={"address": address})

    async def token_principal(self, request: web.Request, token: str) -> Principal:
        """The shared admin token or a live scoped token; else a counted failure and 401."""
        address = client_address.of(request)
        if self.admin_token and admin_token_matches(token, self.admin_token):
            # The shared token names nobody: the audit keeps the optional, self-declared label.
            return Principal("admin", audit.operator(request))
        token_hash = sessions.token_digest(token)
        if token_hash is not None:
            found = await sessions.token_principal(request.app[POOL], token_hash, address)
            if found is not None:
                return found
        await self.failed(address, None, "wrong token")
        raise Unauthorized(REFUSED)


ADMIN_GUARD = web.AppKey("admin_guard", AdminGuard)


async def authenticate(request: web.Request, token: str | None = None) -> Principal:
    """Who is asking: a bearer token (`token` if given, else the Authorization header), else
    the session cookie. 401 without a valid credential, 429 while throttled."""
    guard = request.app[ADMIN_GUARD]
    await guard.not_throttled(client_address.of(request))
    presented = token if token is not None else bearer(request)
    if presented is not None:
        return await guard.token_principal(request, presented)
    found = await session_principal(request)
    if found is None:
        raise Unauthorized(REFUSED)
    return found


async def session_principal(request: web.Request) -> Principal | None:
    """The operator of the request's live session cookie, or None."""
    id_hash = sessions.session_digest(request.cookies.get(sessions.SESSION_COOKIE))
    if id_hash is None:
        return None
    s = request.app[SETTINGS]
    return await sessions.principal(
        request.app[POOL], id_hash, s.console_idle_minutes, s.console_session_hours
    )


def route_rule(request: web.Request) -> Rule:
    """The permission entry of the request's route; a route without one is refused (403)."""
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    rule = rule_for(request.method, path)
    if rule is None:
        log.error("admin route without a permission entry", extra={"path": path})
        raise Forbidden("this route has no entry in the permission table; nobody may call it")
    return rule


def permit(request: web.Request, rule: Rule, p: Principal) -> None:
    """CSRF (for sessions), then the role or scope."""
    if p.kind == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "").encode("utf-8", "surrogatepass")
        if p.csrf_token is None or not hmac.compare_digest(sent, p.csrf_token.encode()):
            raise Forbidden(f"{CSRF_HEADER} missing or wrong", code="csrf_failed")
    answer = verdict(rule, p)
    if answer == "password_first":
        raise Forbidden("change your temporary password first")
    if answer == "forbidden":
        what = f"role {p.role}" if p.kind == "session" else p.who
        raise Forbidden(f"{what} may not do this")


async def admin_only(request: web.Request) -> Principal:
    """Authenticate, check CSRF and the route's permission entry, and ask a signed-in operator
    for a fresh code where the entry says the action is always high-risk. The principal."""
    rule = route_rule(request)
    p = await authenticate(request)
    permit(request, rule, p)
    if rule.risk == "always":
        p = await step_up(request, p, True)
    request[PRINCIPAL] = p
    return p


async def step_up(request: web.Request, p: Principal, high_risk: bool) -> Principal:
    """For a high-risk action by a signed-in operator without a recent step-up: the current
    code in X-Boxoffice-OTP (else 403 step_up_required); it opens a step-up window of
    `step_up_minutes` for the session. Other principals pass unchanged."""
    if not needs_step_up(high_risk, p):
        return p
    assert p.operator_id is not None and p.session is not None
    code = request.headers.get(OTP_HEADER, "").strip()
    detail = f"this action needs the current code of your authenticator in {OTP_HEADER}"
    if not code:
        raise Forbidden(detail, code="step_up_required")
    guard, address = request.app[ADMIN_GUARD], client_address.of(request)
    account = accounts.account_digest(p.who)
    await guard.not_throttled(address, account)
    pool = request.app[POOL]
    op = await accounts.by_id(pool, p.operator_id)
    if op is None or not await accounts.check_totp(pool, op, code):
        await guard.failed(address, account, "wrong step-up code")
        raise Forbidden(f"that code was not accepted; {detail}", code="step_up_required")
    await sessions.stepped_up(pool, p.session, request.app[SETTINGS].step_up_minutes)
    p = dataclasses.replace(p, stepped_up=True)
    request[PRINCIPAL] = p
    return p


async def admin_guard_ctx(app: web.Application) -> AsyncIterator[None]:
    app[ADMIN_GUARD] = AdminGuard(app[REDIS], app[SETTINGS].admin_token)
    app[sessions.CONSOLE_SOCKETS] = sessions.ConsoleSockets()
    yield
