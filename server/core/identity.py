"""Who is asking: the visitor cookie for fans, bearer tokens for admitted fans and for ops."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from server.core.errors import Handler, Unauthorized
from server.core.origins import came_over_tls
from server.core.tokens import Signer, new_id

VISITOR_COOKIE = "bo_visitor"
VISITOR_KEY = web.RequestKey("visitor_id", str)
COOKIE_MAX_AGE = 30 * 24 * 3600


def visitor_middleware(signer: Signer, secure: bool) -> Middleware:
    """Every request gets a visitor id; a new or invalid cookie is replaced on the response.
    The cookie is Secure when `secure` (production mode) or when the request came over TLS."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        visitor_id = signer.visitor_from_cookie(request.cookies.get(VISITOR_COOKIE))
        fresh = visitor_id is None
        if visitor_id is None:
            visitor_id = new_id()
        request[VISITOR_KEY] = visitor_id
        response = await handler(request)
        if fresh and not response.prepared:
            response.set_cookie(
                VISITOR_COOKIE,
                signer.visitor_cookie(visitor_id),
                max_age=COOKIE_MAX_AGE,
                httponly=True,
                samesite="Lax",
                secure=secure or came_over_tls(request),
                path="/",
            )
        return response

    return middleware


def visitor_id(request: web.Request) -> str:
    return request[VISITOR_KEY]


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def admin_token_matches(token: str, admin_token: str) -> bool:
    return hmac.compare_digest(token.encode(), admin_token.encode())


def require_admin(request: web.Request, admin_token: str) -> None:
    token = bearer(request)
    if token is None or not admin_token_matches(token, admin_token):
        raise Unauthorized("admin token missing or wrong", code="unauthorized")
