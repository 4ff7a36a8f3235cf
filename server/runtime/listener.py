"""The app's own HTTP listener: aiohttp's server with our error answers and connection limits.

aiohttp's parser answers a request it cannot parse (URL or header too long, a bad method, bad
framing) itself, in plain text, before any middleware runs. `JsonErrorHandler` answers those in
the API's JSON error shape instead — 414 for an over-long request line, 431 for over-long
headers, 400 otherwise — and logs one line instead of a traceback.

Connection hygiene when no NGINX is in front (`serve`, `worker`):
- `keepalive_timeout` closes a connection that has not finished a request within that time of
  being opened or of its last answer — this also ends slow-header (slowloris) connections: aiohttp
  does not push the deadline back while header bytes trickle in;
- at most `per_address` open connections per client address in this process; more are closed at
  once. Loopback peers are exempt by default (a local NGINX or load generator carries many fans).
  Counting in the process is enough: the connections it counts are the ones that cost it memory
  and descriptors, and a client spreading over P processes is held to P times the cap.
Request bodies are read within server.core.bodies.BODY_READ_TIMEOUT_S."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler

from server.core.errors import error_response
from server.runtime import gcpolicy

log = logging.getLogger("boxoffice.listener")

KEEPALIVE_TIMEOUT_S = 20.0
MAX_CONNECTIONS_PER_ADDRESS = 256
# The two limits differ by design: aiohttp's LineTooLong names the limit it hit, which is how
# an over-long URL (414) is told from an over-long header (431).
MAX_LINE_SIZE = 8192  # the URL of the request line
MAX_FIELD_SIZE = 8190  # one header name or value
MAX_HEADERS = 128  # aiohttp's default


def parse_failure(exc: BaseException | None, status: int) -> tuple[int, str, str]:
    """(status, code, detail) for a request aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        if len(exc.args) > 1 and exc.args[1] == MAX_LINE_SIZE:
            return 414, "uri_too_long", f"the URL is longer than {MAX_LINE_SIZE} bytes"
        return 431, "headers_too_large", f"a request header is longer than {MAX_FIELD_SIZE} bytes"
    if isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower():
        return 431, "headers_too_large", f"more than {MAX_HEADERS} request headers"
    if isinstance(exc, BadHttpMethod):
        return 400, "bad_method", "not an HTTP method this service knows"
    if status >= 500:
        return 500, "internal", "internal error; it has been logged"
    return 400, "bad_request", "the request could not be parsed as HTTP"


class JsonErrorHandler(RequestHandler):
    __slots__ = ()  # one per connection: no __dict__ each (RequestHandler has slots)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot answer the error")
        answer_status, code, detail = parse_failure(exc, status)
        if answer_status >= 500:
            log.error("error handling request", exc_info=exc)
        else:
            log.info("unparsable request refused: %s", exc, extra={"status": answer_status})
        response = error_response(answer_status, code, detail)
        response.force_close()
        return response


class ConnectionLimits:
    """Open connections per client address in this process."""

    def __init__(self, per_address: int, exempt: Iterable[str] = ("127.0.0.0/8", "::1/128")):
        self.per_address = per_address
        self.exempt = tuple(ipaddress.ip_network(n) for n in exempt)
        self.open: dict[str, int] = {}

    def _exempt(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in self.exempt)

    def admit(self, address: str | None) -> bool:
        """Count a new connection; False (and not counted) when the address is at its cap."""
        if address is None or self._exempt(address):
            return True
        count = self.open.get(address, 0)
        if count >= self.per_address:
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str | None) -> None:
        if address is None or address not in self.open:
            return
        left = self.open[address] - 1
        if left > 0:
            self.open[address] = left
        else:
            del self.open[address]


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


class Server(web.Server):
    """aiohttp's Server with JsonErrorHandler connections and ConnectionLimits."""

    limits: ConnectionLimits
    counted: dict[RequestHandler, str]  # connections counted by limits, by their handler

    def __call__(self) -> RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        address = _peer(transport)
        if not self.limits.admit(address):
            log.warning("connection refused: too many from one address", extra={"address": address})
            transport.abort()
            return
        if address is not None:
            self.counted[handler] = address  # released once, in connection_lost
        super().connection_made(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.limits.release(self.counted.pop(handler, None))
        super().connection_lost(handler, exc)


class Runner(web.AppRunner):
    """web.AppRunner serving through Server (above)."""

    def __init__(self, app: web.Application, limits: ConnectionLimits, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT_S)
        kwargs.setdefault("max_line_size", MAX_LINE_SIZE)
        kwargs.setdefault("max_field_size", MAX_FIELD_SIZE)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = Server  # same object and state; our handler class and limits
        assert isinstance(server, Server)
        server.limits = self._limits
        server.counted = {}
        return server


# Seconds a stop waits for open requests (websockets are closed at once, on_shutdown).
SHUTDOWN_TIMEOUT_S = 5


def run(
    app: web.Application, host: str, port: int, reuse_port: bool, loop: asyncio.AbstractEventLoop
) -> None:
    """Serve `app` until SIGINT/SIGTERM (web.run_app's job, with our Runner)."""
    asyncio.set_event_loop(loop)
    runner = Runner(
        app,
        ConnectionLimits(MAX_CONNECTIONS_PER_ADDRESS),
        access_log=None,
        handle_signals=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )

    async def start() -> None:
        await runner.setup()
        # A crowd's burst of handshakes overflows the default backlog of 128; NGINX then times
        # out connecting and marks the process down.
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_port=reuse_port)
        await site.start()
        gcpolicy.settle()  # start-up is done: what it built lives as long as the process

    try:
        loop.run_until_complete(start())
        loop.run_forever()
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
