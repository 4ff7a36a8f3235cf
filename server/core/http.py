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
