"""The production NGINX configuration, checked with `nginx -t` and exercised for real: NGINX in
front of two app processes (started the way `python -m server up` starts them) on the session's
Redis and PostgreSQL. Traffic goes to 127.0.0.1 only; every loop is bounded."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.core.settings import Settings
from server.runtime import nginx
from server.runtime import stack as stack_mod
from server.runtime.embedded import free_port
from server.runtime.stack import Stack

from .helpers import ADMIN, ADMIN_TOKEN, SECRET, event_body, join, need, visitor

pytestmark = pytest.mark.slow
TIMEOUT = aiohttp.ClientTimeout(total=15)


def nginx_binary() -> str:
    binary = nginx.find_nginx()
    need(binary is not None, "nginx is not installed (apt-get install nginx)")
    assert binary is not None
    return binary


def self_signed(folder: Path) -> tuple[str, str]:
    """A throw-away certificate for localhost (openssl; the venv has no `cryptography`)."""
    need(shutil.which("openssl") is not None, "openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return str(cert), str(key)


def make_folder() -> Path:
    # Under /tmp and world-traversable: NGINX workers run as www-data when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="bo-nginx-", dir="/tmp"))
    folder.chmod(0o755)
    return folder


@pytest.mark.parametrize("tls", [False, True], ids=["http", "tls"])
def test_rendered_config_passes_nginx_t(tls: bool) -> None:
    binary = nginx_binary()
    folder = make_folder()
    try:
        cert, key = self_signed(folder) if tls else (None, None)
        settings = Settings(host="127.0.0.1", port=free_port())
        params = stack_mod.nginx_params(
            settings, settings.port, [free_port(), free_port()], folder / "nginx", cert, key
        )
        conf = nginx.write_config(folder / "nginx", params)
        nginx.check_config(binary, folder / "nginx", conf)
        text = conf.read_text()
        assert "reuseport" in text
        assert "least_conn;" in text
        assert "non_idempotent" not in text.replace("`non_idempotent` is deliberately NOT", "")
        assert ("ssl_protocols TLSv1.3;" in text) is tls
        assert ("Strict-Transport-Security" in text) is tls
        assert "{{" not in text
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_render_refuses_unsafe_values() -> None:
    template = nginx.TEMPLATE.read_text()
    good = nginx.Params(listen_port=8080, upstreams=("127.0.0.1:9000",), prefix="/tmp/x")
    assert "server 127.0.0.1:9000 max_fails=3" in nginx.render(template, good)
    for bad in (
        nginx.Params(listen_port=8080, upstreams=("127.0.0.1:9000;",), prefix="/tmp/x"),
        nginx.Params(listen_port=8080, upstreams=("127.0.0.1:9000",), prefix="/tmp/x; evil"),
        nginx.Params(listen_port=0, upstreams=("127.0.0.1:9000",), prefix="/tmp/x"),
        nginx.Params(listen_port=8080, upstreams=(), prefix="/tmp/x"),
        nginx.Params(
            listen_port=8080, upstreams=("127.0.0.1:9000",), prefix="/tmp/x", tls_cert="/c"
        ),
    ):
        with pytest.raises(ValueError):
            nginx.render(template, bad)


@pytest.fixture(scope="module")
def stack(server_urls: tuple[str, str]) -> Iterator[Stack]:
    binary = nginx_binary()
    folder = make_folder()
    settings = Settings(
        redis_url=server_urls[0],
        database_url=server_urls[1],
        secret=SECRET,
        admin_token=ADMIN_TOKEN,
        data_dir=str(folder),
        tick_ms=50,
        broadcast_ms=100,
        log_format="text",
        log_level="warning",
    )
    running = Stack(settings, folder, binary)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        shutil.rmtree(folder, ignore_errors=True)


def session() -> aiohttp.ClientSession:
    # unsafe=True: keep cookies set by an IP-address host (127.0.0.1).
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=TIMEOUT)


async def create_event(http: aiohttp.ClientSession, base: str, **overrides: Any) -> str:
    event_id = "ng-" + uuid.uuid4().hex[:12]
    body = event_body(id=event_id, **overrides)
    async with http.post(f"{base}/api/admin/events", json=body, headers=ADMIN) as response:
        assert response.status == 201, await response.text()
    return event_id


async def test_events_through_nginx_with_micro_cache(stack: Stack) -> None:
    async with session() as http:
        event_id = await create_event(http, stack.base)
        async with http.get(f"{stack.base}/api/events") as response:
            assert response.status == 200
            assert response.headers["Server"] == "nginx"
            assert response.content_type == "application/json"
            assert event_id in {ev["id"] for ev in await response.json()}
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "js.stripe.com" in response.headers["Content-Security-Policy"]
        # With a cookie: the second read within a second comes from the micro-cache, and a
        # cached answer never carries anyone's Set-Cookie.
        statuses = []
        for _ in range(3):
            async with http.get(f"{stack.base}/api/events/{event_id}") as response:
                assert response.status == 200
                assert (await response.json())["id"] == event_id
                statuses.append(response.headers.get("X-Cache-Status"))
                assert "Set-Cookie" not in response.headers
        assert "HIT" in statuses, statuses
        async with http.get(
            f"{stack.base}/api/events/{event_id}", headers={"Authorization": "Bearer x"}
        ) as response:
            assert response.headers.get("X-Cache-Status") == "BYPASS"
    # Without a cookie: straight to the app, which hands out the visitor cookie.
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=TIMEOUT) as bare,
        bare.get(f"{stack.base}/api/events/{event_id}") as response,
    ):
        assert response.status == 200
        assert response.headers.get("X-Cache-Status") == "BYPASS"
        assert "bo_visitor=" in response.headers.get("Set-Cookie", "")


async def test_websocket_join_and_status_through_nginx(stack: Stack) -> None:
    async with session() as http:
        event_id = await create_event(http, stack.base, rate_per_min=0)
        async with await join(http, event_id, base=stack.base) as response:
            assert response.status == 200, await response.text()
            joined = await response.json()
        ws_url = f"ws://127.0.0.1:{stack.port}/api/queue/{joined['queue_id']}/ws"
        # as a browser on the page NGINX served: its Origin names NGINX's port, not port 80
        origin = f"http://127.0.0.1:{stack.port}"
        async with http.ws_connect(ws_url, origin=origin) as ws:
            first = await ws.receive_json(timeout=10)
            assert first["type"] == "status"
            assert first["state"] == "waiting"
            assert first["position"] == 1
            await ws.send_json({"type": "ping"})
            async with http.patch(
                f"{stack.base}/api/admin/events/{event_id}",
                json={"rate_per_min": 600},
                headers=ADMIN,
            ) as response:
                assert response.status == 200
            seen = []
            for _ in range(200):
                message = await ws.receive_json(timeout=10)
                seen.append(message["type"])
                if message["type"] == "admitted":
                    break
            assert "pong" in seen
            assert seen[-1] == "admitted", seen
            assert message["access_token"]


async def test_join_hammering_gets_json_429_with_retry_after(stack: Stack) -> None:
    async with session() as http:
        event_id = await create_event(http, stack.base)
        statuses: list[int] = []
        refused: dict[str, Any] = {}
        async with await join(http, event_id, base=stack.base) as response:
            statuses.append(response.status)  # a place; rejoining needs no new solution
        for _ in range(40):
            async with http.post(f"{stack.base}/api/events/{event_id}/queue") as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert response.content_type == "application/json"
                    assert int(response.headers["Retry-After"]) >= 1
                    refused = await response.json()
                    break
        assert statuses[0] == 200
        assert statuses[-1] == 429, statuses
        assert refused["error"] == "rate_limited"
        assert "this visitor" in refused["detail"]  # NGINX's answer, not the app's
        # Another visitor is not affected.
        async with session() as other, await join(other, event_id, base=stack.base) as r:
            assert r.status == 200


async def test_duplicate_and_random_cookies_escape_nothing(stack: Stack) -> None:
    async with session() as http:
        event_id = await create_event(http, stack.base)
        async with await join(http, event_id, base=stack.base) as response:
            assert response.status == 200
            queue_id = (await response.json())["queue_id"]
        real = next(c.value for c in http.cookie_jar if c.key == "bo_visitor")
    bare = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=TIMEOUT)
    async with bare:
        # A random cookie in front of the real one: refused by NGINX, whatever the path.
        twice = {"Cookie": f"{visitor()['Cookie']}; bo_visitor={real}"}
        for method, path in (
            ("POST", f"/api/events/{event_id}/queue"),
            ("GET", f"/api/queue/{queue_id}"),
            ("GET", f"/api/queue/{queue_id}/ws"),
            ("GET", f"/e/{event_id}"),
        ):
            async with bare.request(method, f"{stack.base}{path}", headers=twice) as response:
                assert response.status == 400, (path, await response.text())
                assert response.content_type == "application/json"
                assert (await response.json())["error"] == "duplicate_cookie"
        # A fresh well-formed cookie per join (a farm minting visitors): no place without
        # solving, from NGINX (429) or from the app (403 challenge_required).
        statuses = []
        for _ in range(30):
            forged = {"Cookie": visitor()["Cookie"]}
            url = f"{stack.base}/api/events/{event_id}/queue"
            async with bare.post(url, headers=forged) as response:
                statuses.append(response.status)
                if response.status == 403:
                    assert (await response.json())["error"] == "challenge_required"
        assert 200 not in statuses and set(statuses) <= {403, 429}, statuses


async def test_static_files_served_by_nginx_with_cache_control(stack: Stack) -> None:
    async with session() as http:
        async with http.get(f"{stack.base}/static/css/app.css") as response:
            assert response.status == 200
            assert response.content_type == "text/css"
            assert response.headers["Cache-Control"] == "public, max-age=300"
            assert response.headers.get("Content-Encoding") == "gzip"
            assert "--accent" in await response.text()
        async with http.get(f"{stack.base}/static/js/common.js?v=abc123") as response:
            assert response.status == 200
            assert response.content_type == "application/javascript"
            assert "immutable" in response.headers["Cache-Control"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{stack.base}/") as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-cache"


async def raw_get(port: int, path: str, *headers: bytes) -> tuple[int, dict[str, str], bytes]:
    """One GET with exactly these header bytes (no client library re-encodes them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
        writer.write(b"\r\n".join([*head, *headers, b"", b""]))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    found = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:])]
    return int(lines[0].split()[1]), dict(found), body


async def test_non_ascii_visitor_cookie_through_nginx_is_a_new_visitor(stack: Stack) -> None:
    async with session() as http:
        event_id = await create_event(http, stack.base)
    minted = 0
    for cookie in (
        b"bo_visitor=" + b"A" * 22 + b".\xc3\xa9",
        b"bo_visitor=" + b"A" * 22 + b".\xff",
    ):
        for path in ("/healthz", f"/api/events/{event_id}", "/api/events"):
            status, headers, body = await raw_get(stack.port, path, b"Cookie: " + cookie)
            assert status == 200, (path, body[:300])
            # A fresh visitor, unless NGINX answered from its micro-cache (which never stores
            # or replays a Set-Cookie).
            if headers.get("x-cache-status") != "HIT":
                assert headers["set-cookie"].startswith("bo_visitor="), (path, headers)
                minted += 1
    assert minted >= 2  # /healthz is never cached: the app saw each bad cookie


async def test_admin_throttle_through_nginx_counts_each_client_address(stack: Stack) -> None:
    """NGINX reports the client in X-Forwarded-For: 127.0.0.3 is throttled, 127.0.0.1 is not."""
    from server.ops.admin_guard import FAILURES_PER_WINDOW

    url = f"{stack.base}/api/admin/events"
    wrong = {"Authorization": "Bearer " + "w" * 40}
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as guesser:
        statuses = []
        for _ in range(FAILURES_PER_WINDOW + 1):
            async with guesser.get(url, headers=wrong) as response:
                statuses.append(response.status)
                last = await response.json()
        assert statuses == [401] * FAILURES_PER_WINDOW + [429], statuses
        assert last["error"] == "rate_limited" and "sign-ins" in last["detail"]
        async with guesser.get(url, headers=ADMIN) as response:
            assert response.status == 429
    async with session() as http, http.get(url, headers=ADMIN) as response:
        assert response.status == 200


async def test_busy_page_and_json_503_when_every_upstream_is_down(stack: Stack) -> None:
    async with session() as http:
        event_id = await create_event(http, stack.base)
        async with http.get(f"{stack.base}/e/{event_id}") as response:
            assert response.status == 200
        stack.kill_workers()
        await asyncio.sleep(2.1)  # micro-cache entries: 1 s, counted in whole seconds (< 2 s)
        try:
            async with http.get(f"{stack.base}/e/{event_id}") as response:
                assert response.status == 503
                assert response.content_type == "text/html"
                assert int(response.headers["Retry-After"]) >= 1
                page = await response.text()
                assert "your place is safe" in page.lower()
                assert "/static/js/busy.js" in page
            for url in (f"{stack.base}/api/events", f"{stack.base}/api/events/{event_id}"):
                async with http.get(url) as response:
                    assert response.status == 503
                    assert response.content_type == "application/json"
                    assert int(response.headers["Retry-After"]) >= 1
                    body = await response.json()
                    assert body["error"] == "unavailable"
                    assert body["detail"]
            async with http.post(f"{stack.base}/api/events/{event_id}/queue") as response:
                assert response.status == 503
                assert (await response.json())["error"] == "unavailable"
        finally:
            stack.start_workers()
        # Back: NGINX uses the processes again (failures rest them for at most fail_timeout).
        for _ in range(120):
            async with http.get(f"{stack.base}/api/events/{event_id}") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.25)
        assert response.status == 200


async def raw_request(base: str, data: bytes) -> tuple[int, str, str]:
    """Send bytes as they are (no client library fixing them up): (status, content type, body)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    answer = b""
    try:
        writer.write(data)
        await writer.drain()
        # NGINX may reset a connection it refused once the answer is out (unread request bytes
        # left behind): keep what arrived before the reset.
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            answer += chunk
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    content_type = headers.get("Content-Type", "").split(";")[0]
    return int(lines[0].split()[1]), content_type, body.decode("utf-8", "replace")


async def test_nginx_errors_are_json_on_the_api_and_pages_elsewhere(stack: Stack) -> None:
    long_path = "x" * 10_000
    big_header = "X-Filler: " + "y" * 9_000 + "\r\n"
    cases = [
        # (request bytes, status, JSON error code for /api/ or None for an HTML page)
        (f"GET /api/{long_path} HTTP/1.1\r\nHost: a\r\n\r\n", 414, "uri_too_long"),
        (f"GET /{long_path} HTTP/1.1\r\nHost: a\r\n\r\n", 414, None),
        (f"GET /api/events HTTP/1.1\r\nHost: a\r\n{big_header}\r\n", 431, "headers_too_large"),
        (f"GET /e/x HTTP/1.1\r\nHost: a\r\n{big_header}\r\n", 431, None),
        ("GET /api/events HTTP/1.1\r\n\r\n", 400, "bad_request"),  # HTTP/1.1 without Host
        ("GET /static/css/app.css HTTP/1.1\r\n\r\n", 400, None),
        ("GET /static/nope.css HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 404, None),
        (
            "POST /api/admin/events HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            f"Content-Length: {2 * 1024 * 1024}\r\nConnection: close\r\n\r\n",
            413,
            "body_too_large",
        ),
    ]
    for request, status, code in cases:
        got, content_type, body = await raw_request(stack.base, request.encode())
        assert got == status, (request[:60], got, body[:200])
        if code is None:
            assert content_type == "text/html", (request[:60], content_type)
            assert body.startswith("<!doctype html>") and "<h1>" in body, body[:200]
        else:
            assert content_type == "application/json", (request[:60], content_type)
            assert json.loads(body) == {"error": code, "detail": json.loads(body)["detail"]}
