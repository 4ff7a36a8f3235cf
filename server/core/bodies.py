"""Request bodies from outside: JSON only (415 otherwise, the second line of CSRF defence after
SameSite cookies: a cross-site form can send text/plain or form bodies, never application/json
without a CORS preflight, which this service never grants), read within a time limit, and decoded
into a Struct with integral numbers such as 153.0 taken as the integer they are (JSON Schema's
`integer` includes them; msgspec alone refuses them)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from server.core import field_errors
from server.core.errors import DomainError, Handler, Invalid, error_response
from server.core.http import read_body

T = TypeVar("T")

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_READ_TIMEOUT_S = 10.0


class RequestTimeout(DomainError):
    status, code = 408, "request_timeout"


def media_type_problem(
    method: str, path: str, content_type: str | None, has_body: bool
) -> str | None:
    """Why a request's body cannot be taken (a sentence), or None if it can.

    The rule: on /api/, a request that carries a body must send it as application/json (with
    any parameters, e.g. charset). A request without a body is not judged by its Content-Type:
    there is nothing to read (HTTP clients label empty POSTs application/octet-stream)."""
    if method not in BODY_METHODS or not path.startswith("/api/") or not has_body:
        return None
    if content_type is None or not content_type.strip():
        return "a request body must be sent as application/json"
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return None
    return f"request bodies must be application/json, not {media or 'empty'!s}"


@web.middleware
async def json_only_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    problem = media_type_problem(
        request.method,
        request.path,
        request.headers.get("Content-Type"),
        request.body_exists,
    )
    if problem is not None:
        return error_response(415, "unsupported_media_type", problem)
    return await handler(request)


def _integral(value: Any) -> Any:
    """JSON numbers with a zero fraction (153.0, 1e3) as ints, everywhere in a decoded body."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


def decode(raw: bytes, kind: type[T]) -> T:
    """A JSON body as `kind`; msgspec.DecodeError (400) or Invalid (422, every problem, each
    named by its field: server.core.field_errors) otherwise.

    The typed decode runs first; only a body it refuses is decoded again untyped, with integral
    numbers made ints, and converted (a body nested too deeply for that keeps the first error)."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as first:
        try:
            plain = _integral(msgspec.json.decode(raw))
        except RecursionError:
            raise first from None
        try:
            return msgspec.convert(plain, kind)
        except msgspec.ValidationError as exc:
            raise Invalid.of(field_errors.of_body(plain, kind, exc)) from None


async def read_json(request: web.Request, kind: type[T]) -> T:
    """The request's (required) JSON body as `kind`, read within BODY_READ_TIMEOUT_S."""
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_S):
            raw = await read_body(request)
    except TimeoutError:
        raise RequestTimeout("the request body arrived too slowly") from None
    return decode(raw, kind)
