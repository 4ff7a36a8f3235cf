"""Small helpers every route module shares: JSON answers and required JSON bodies."""

from __future__ import annotations

from aiohttp import web

from server.core.errors import Invalid
from server.core.messages import encoder


async def read_body(request: web.Request) -> bytes:
    """A request's body, which must not be empty (it is decoded by the caller's Struct)."""
    body = await request.read()
    if not body:
        raise Invalid("a JSON body is required", code="body_required")
    return body


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=encoder.encode(data), status=status, content_type="application/json")


LOOPBACK = ("127.0.0.1", "::1")


def client_address(request: web.Request) -> str:
    """The client's address: NGINX's X-Real-IP when the request came through it (a proxy on
    loopback), else the peer address."""
    peer = request.remote or ""
    forwarded = request.headers.get("X-Real-IP", "").strip()
    if peer in LOOPBACK and forwarded and len(forwarded) <= 64:
        return forwarded
    return peer
