"""Who is asking: the visitor cookie for fans, bearer tokens for admitted fans and for ops."""

from __future__ import annotations

import hmac

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from server.core.errors import BadRequest, Handler
from server.core.origins import came_over_tls
from server.core.tokens import Signer, new_id

VISITOR_COOKIE = "bo_visitor"
VISITOR_KEY = web.RequestKey("visitor_id", str)
COOKIE_MAX_AGE = 30 * 24 * 3600


def visitor_cookies(cookie_headers: list[str]) -> list[str]:
    """The values of every bo_visitor cookie the raw Cookie header(s) carry (quotes around a
    value removed, as aiohttp's parser does). More than one is refused: aiohttp keeps one of
    them (and NGINX reads another), so a second one could escape per-visitor limits. Read from
    the header's text, not request.cookies: that parses every cookie into a dict the request
    keeps, for as long as a websocket lives."""
    found = []
    for header in cookie_headers:
        for part in header.split(";"):
            name, _, value = part.partition("=")
            if name.strip() == VISITOR_COOKIE:
                value = value.strip()
                if len(value) > 1 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                found.append(value)
    return found


def visitor_middleware(signer: Signer, secure: bool) -> Middleware:
    """Every request gets a visitor id; a new or invalid cookie is replaced on the response.
    A request with more than one visitor cookie is refused. The cookie is Secure when `secure`
    (production mode) or when the request came over TLS."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        cookies = request.headers.getall(hdrs.COOKIE, ())
        found = visitor_cookies(cookies) if cookies else []
        if len(found) > 1:
            raise BadRequest(
                f"more than one {VISITOR_COOKIE} cookie in the request", code="duplicate_cookie"
            )
        visitor_id = signer.visitor_from_cookie(found[0] if found else None)
        fresh = visitor_id is None
        if visitor_id is None:
            visitor_id = new_id()
        request[VISITOR_KEY] = visitor_id
        response = await handler(request)
        if fresh and not response.prepared:
            value = signer.visitor_cookie(visitor_id)
            add_cookie(
                response, VISITOR_COOKIE, value, COOKIE_MAX_AGE, secure or came_over_tls(request)
            )
        return response

    return middleware


def add_cookie(
    response: web.StreamResponse, name: str, value: str, max_age: int, secure: bool
) -> None:
    """Set one of our cookies (HttpOnly, SameSite=Lax, Path=/; Secure when `secure`). Written
    as the header's text: aiohttp's cookie objects cost more than the rest of a join's answer.
    `name` and `value` are ours (url-safe characters and dots), never a client's."""
    tail = "; Secure" if secure else ""
    response.headers.add(
        hdrs.SET_COOKIE, f"{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Lax{tail}"
    )


def visitor_id(request: web.Request) -> str:
    return request[VISITOR_KEY]


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def admin_token_matches(token: str, admin_token: str) -> bool:
    """Constant-time comparison that takes any string a client can send: undecodable header
    bytes arrive as lone surrogates, which plain str.encode() refuses."""
    return hmac.compare_digest(token.encode("utf-8", "surrogatepass"), admin_token.encode())
