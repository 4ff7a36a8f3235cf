"""Named domain errors and the one middleware that turns every failure into a JSON answer."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence

import asyncpg
import msgspec
import redis.exceptions
from aiohttp import web

log = logging.getLogger("boxoffice.errors")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FieldError(msgspec.Struct, frozen=True):
    """One problem of a refused body: where (a path like `sections[0].price`, "" for the body as
    a whole) and what, in words a person reads (server.core.field_errors finds them)."""

    path: str
    message: str


_AT = re.compile(r"^(?P<why>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def from_validation(exc: msgspec.ValidationError) -> FieldError:
    """One msgspec error as a FieldError: its path, and its words (a "field: why" raised by a
    type's own check names the field)."""
    match = _AT.match(str(exc))
    assert match is not None
    path, why = (match["path"] or "").lstrip("."), match["why"]
    lead = re.match(r"^(\w+): (.+)$", why, re.S)
    if lead and not path:
        return FieldError(lead[1], lead[2])
    return FieldError(path, why)


def summary(found: Sequence[FieldError]) -> str:
    """The `detail` sentence of a 422 with these problems: the first ("path: message")."""
    first = found[0]
    detail = f"{first.path}: {first.message}" if first.path else first.message
    if len(found) > 1:
        detail += f" (and {len(found) - 1} more: see fields)"
    return detail


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    error: str
    detail: str
    # a 422 for a refused body: every problem, each next to its field
    fields: list[FieldError] | None = None


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        retry_after: int | None = None,
        extra: dict[str, object] | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.code
        self.retry_after = retry_after
        self.extra = extra or {}


class BadRequest(DomainError):
    status, code = 400, "bad_request"


class Invalid(DomainError):
    status, code = 422, "invalid"

    @classmethod
    def of(cls, found: Iterable[FieldError]) -> Invalid:
        """The 422 for these problems (server.core.field_errors): all of them in `fields`, the
        first in `detail`."""
        fields = list(found)
        return cls(summary(fields), extra={"fields": fields})


class Unauthorized(DomainError):
    status, code = 401, "unauthorized"


class Forbidden(DomainError):
    status, code = 403, "forbidden"


class NotFound(DomainError):
    status, code = 404, "not_found"


class PaymentDeclined(DomainError):
    status, code = 402, "card_declined"


class Conflict(DomainError):
    status, code = 409, "conflict"


class Gone(DomainError):
    status, code = 410, "gone"


class RateLimited(DomainError):
    status, code = 429, "rate_limited"


class Unavailable(DomainError):
    status, code = 503, "unavailable"


_encoder = msgspec.json.Encoder()

# Redis unreachable, or in the seconds of a failover: a cluster whose slot has no primary yet
# (CLUSTERDOWN, TRYAGAIN, slots not covered) or a demoted primary refusing writes (READONLY).
REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ReadOnlyError,
)

DATABASE_DOWN = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int,
    code: str,
    detail: str,
    retry_after: int | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    body: object = ErrorBody(code, detail)
    if extra:
        body = {"error": code, "detail": detail, **extra}
    return web.Response(
        status=status,
        body=_encoder.encode(body),
        content_type="application/json",
        headers=headers,
    )


def _from_http_exception(exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        raise exc
    code = HTTP_CODES.get(exc.status, "error")
    detail = exc.reason
    if exc.status == 405:
        detail = "method not allowed on this path"
    elif exc.status == 404:
        detail = "no such resource"
    elif exc.status == 413:
        detail = "request body too large"
    response = error_response(exc.status, code, detail)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_response(exc.status, exc.code, exc.detail, exc.retry_after, exc.extra)
    except web.HTTPException as exc:
        return _from_http_exception(exc)
    except msgspec.ValidationError as exc:
        refused = Invalid.of([from_validation(exc)])
        return error_response(422, refused.code, refused.detail, extra=refused.extra)
    except msgspec.DecodeError as exc:
        return error_response(400, "malformed_json", f"request body is not valid JSON: {exc}")
    except REDIS_DOWN as exc:
        log.warning("redis unavailable", extra={"path": request.path, "error": str(exc)})
        return error_response(503, "redis_unavailable", "queue store unavailable, retry", 5)
    except DATABASE_DOWN as exc:
        log.warning("database unavailable", extra={"path": request.path, "error": str(exc)})
        return error_response(503, "database_unavailable", "database unavailable, retry", 5)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal", "internal error; it has been logged")
