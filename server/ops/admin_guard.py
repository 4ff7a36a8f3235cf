"""The admin token check, with failed attempts throttled per client address.

A wrong token counts one failure for the client's address in Redis (queue/rate_limit.lua, key
keys.admin_failures), shared by every process. Past FAILURES_PER_WINDOW failures in a window the
address is answered 429 with Retry-After on every admin route and the live socket, whatever it
presents, until the window ends; other addresses are unaffected. A request with no bearer token
guessed nothing and is not counted. Failures and the throttle are logged. The check needs Redis:
without it the admin API answers 503 like the fan API (failing closed)."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator

from aiohttp import web

from server.core import client_address, keys
from server.core.errors import RateLimited, Unauthorized
from server.core.identity import admin_token_matches, bearer
from server.core.settings import SETTINGS
from server.store.lua import AnyRedis, register
from server.store.redis_client import REDIS

log = logging.getLogger("boxoffice.admin")

FAILURES_PER_WINDOW = 10
WINDOW_MS = 60_000
REFUSED = "admin token missing or wrong"


def _throttled(reset_ms: int) -> RateLimited:
    return RateLimited(
        "too many failed admin sign-ins from this address; wait before trying again",
        retry_after=max(1, math.ceil(reset_ms / 1000)),
    )


class AdminGuard:
    def __init__(self, client: AnyRedis, admin_token: str) -> None:
        self.redis = client
        self.admin_token = admin_token
        self._count = register(client, "rate_limit")["rate_limit"]

    async def not_throttled(self, address: str) -> None:
        """Raise RateLimited while this address is past its failures for the window."""
        key = keys.admin_failures(address)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            count, ttl = await pipe.execute()
        if count is not None and int(count) > FAILURES_PER_WINDOW:
            raise _throttled(int(ttl) if int(ttl) > 0 else WINDOW_MS)

    async def check(self, address: str, token: str | None) -> None:
        """Return if `token` is the admin token; raise RateLimited or Unauthorized otherwise."""
        await self.not_throttled(address)
        if token is None:
            raise Unauthorized(REFUSED)
        if admin_token_matches(token, self.admin_token):
            return
        allowed, reset_ms = await self._count(
            keys=[keys.admin_failures(address)], args=[FAILURES_PER_WINDOW, WINDOW_MS]
        )
        if not allowed:
            log.warning(
                "admin sign-in throttled",
                extra={
                    "address": address,
                    "limit": FAILURES_PER_WINDOW,
                    "window_s": WINDOW_MS // 1000,
                },
            )
            raise _throttled(int(reset_ms))
        log.warning("admin sign-in failed: wrong token", extra={"address": address})
        raise Unauthorized(REFUSED)


ADMIN_GUARD = web.AppKey("admin_guard", AdminGuard)


async def require_admin(request: web.Request) -> None:
    """The request's bearer token must be the admin token (throttled per client address)."""
    await request.app[ADMIN_GUARD].check(client_address.of(request), bearer(request))


async def admin_guard_ctx(app: web.Application) -> AsyncIterator[None]:
    app[ADMIN_GUARD] = AdminGuard(app[REDIS], app[SETTINGS].admin_token)
    yield
