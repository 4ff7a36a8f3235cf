"""Small helpers every route module shares: JSON answers, required JSON bodies, the client's
address."""

from __future__ import annotations

import ipaddress

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


def client_address(request: web.Request) -> str:
    """The client's IP address. A loopback peer is a proxy on this machine (the NGINX of
    `python -m server up`, which overwrites X-Real-IP with the address it saw), so its X-Real-IP
    is believed; any other peer is the client itself and X-Real-IP is ignored."""
    peer = request.remote or ""
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer or "unknown"
    if ip.is_loopback:
        try:
            return str(ipaddress.ip_address(request.headers.get("X-Real-IP", "").strip()))
        except ValueError:
            pass
    return str(ip)
