"""Where a browser request comes from (Origin) and whether it reached us over TLS.

Websockets are not covered by CORS: any page may open one to us, with the fan's cookies (or,
for the console, whatever the page can pass). So both websockets check the handshake's Origin:

- no Origin header: not a browser (browsers always send one on a websocket handshake) → allowed;
- BOXOFFICE_PUBLIC_URL set: the Origin must be that URL's scheme://host[:port] (default ports
  elided, case-insensitive host);
- BOXOFFICE_PUBLIC_URL unset (development; `python -m server up` leaves it unset for its
  workers): the Origin's host[:port] must be the request's own Host header — the page was served
  by this host, whatever name or address it was reached by. A cross-site page sends its own
  origin and our Host, so it is refused either way;
- `null` (sandboxed frames, file: pages) or anything unparsable → refused."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit

from aiohttp import web

from server.core.errors import Forbidden

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _origin_parts(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _host_parts(host: str, scheme: str) -> tuple[str, int] | None:
    """(host, port) of a Host header value, or None."""
    parts = _origin_parts(f"{scheme}://{host}")
    return None if parts is None else (parts[1], parts[2])


def origin_allowed(origin: str | None, public_url: str, host: str | None) -> bool:
    """The rule in the module docstring, as a pure function."""
    if origin is None:
        return True
    seen = _origin_parts(origin)
    if seen is None:
        return False
    if public_url:
        return seen == _origin_parts(public_url)
    if not host:
        return False
    return (seen[1], seen[2]) == _host_parts(host, seen[0])


def check_origin(request: web.Request, public_url: str) -> None:
    """Forbidden (403, before any upgrade) for a handshake from another site's page."""
    if not origin_allowed(request.headers.get("Origin"), public_url, request.headers.get("Host")):
        raise Forbidden("this socket only opens from the site's own pages", code="bad_origin")


def peer_is_local_proxy(request: web.Request) -> bool:
    """The socket peer is on this machine: the NGINX of `python -m server up` (or another local
    proxy), whose forwarding headers are believed. Any other peer is the client itself."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if not isinstance(peer, tuple) or not peer:
        return False
    return _loopback(peer[0])


@lru_cache(maxsize=4096)
def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def came_over_tls(request: web.Request) -> bool:
    """The client's connection is TLS: to this process directly, or to the local proxy in front
    of it, which says so in X-Forwarded-Proto (NGINX sets it to $scheme, overwriting the
    client's)."""
    if request.secure:  # aiohttp read the transport's TLS once, when the request began
        return True
    forwarded = request.headers.get("X-Forwarded-Proto")
    if forwarded is None or forwarded.strip().lower() != "https":
        return False
    return peer_is_local_proxy(request)
