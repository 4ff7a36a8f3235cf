"""Helpers shared by the test files (conftest.py keeps the fixtures): the admin token and secret
of the test app, a door (`checkin`) token, event bodies, visitors and their admission, bounded polling, and a fan's journey
(hold, check out, pay) as plain calls or as a `Fan` bound to one app client."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import msgspec
import pytest
import zxingcpp
from aiohttp.test_utils import TestClient
from PIL import Image
from playwright.async_api import Browser, async_playwright

from server.store import db

Client = TestClient[Any, Any]
Headers = dict[str, str]
T = TypeVar("T")

ADMIN_TOKEN = "test-admin-token-" + "x" * 32
SECRET = "test-secret-" + "y" * 32
REQUIRE_ALL = os.environ.get("BOXOFFICE_REQUIRE_ALL") == "1"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CARD_OK = "4242424242424242"
# The real headless Chromium of the browser tests (conftest's `browser` fixture).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def need(condition: bool, reason: str) -> None:
    """Skip when a binary is absent on a laptop; fail when BOXOFFICE_REQUIRE_ALL=1 (CI)."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (BOXOFFICE_REQUIRE_ALL=1)")
    pytest.skip(reason)


async def launch(chromium_path: str, *extra: str) -> AsyncIterator[Browser]:
    """Headless Chromium with the tests' flags (and `extra` ones), closed after use."""
    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=chromium_path, args=[*CHROMIUM_ARGS, *extra]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def eventually(
    check: Callable[[], Awaitable[T]],
    what: str = "condition",
    within: float = 10.0,
    every: float = 0.05,
) -> T:
    """Poll `check` every `every` s until it returns something true, and return that; fail
    naming `what` once `within` s have passed."""
    deadline = time.monotonic() + within
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(every)
    return value


def read_qr(image: Image.Image) -> tuple[str, str]:
    """What a QR decoder (zxing-cpp's reader) reads in the image: its text and error
    correction level."""
    found = zxingcpp.read_barcode(
        image.convert("L"), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    assert found is not None, "no QR code found"
    return found.text, found.ec_level


# ---- the database -----------------------------------------------------------------------------


async def wipe_database(pool: Any) -> None:
    """Every test starts from no events, orders or accounts. Mails and payment follow-ups are
    named too: since migration 014 no foreign key cascades to them from orders. Then the
    partitions of the deleted events go (each test's events bring their own)."""
    await pool.execute(
        "TRUNCATE events, outbox, mails, payment_actions, stripe_events, audit_log, operators,"
        " api_tokens CASCADE"
    )
    await db.drop_orphan_partitions(pool)


# ---- events ----------------------------------------------------------------------------------


def event_body(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "name": "Spring Tour",
        "venue": "Arena",
        "starts_at": (now + timedelta(days=30)).isoformat(),
        "sale_starts_at": (now - timedelta(seconds=1)).isoformat(),
        "currency": "EUR",
        "sections": [
            {"id": "A", "name": "Floor", "price": 5000, "rows": 5, "seats_per_row": 10},
            {"id": "GA", "name": "Standing", "price": 3500, "capacity": 100},
        ],
        "rate_per_min": 600,
        "max_active": 1000,
    }
    body.update(overrides)
    return body


async def create_event(client: TestClient[Any, Any], **overrides: Any) -> dict[str, Any]:
    response = await client.post("/api/admin/events", json=event_body(**overrides), headers=ADMIN)
    assert response.status == 201, await response.text()
    data: dict[str, Any] = await response.json()
    return data


async def checkin_token(client: Client | aiohttp.ClientSession, name: str) -> str:
    """A new API token with the `checkin` scope alone: what the README gives door staff."""
    response = await client.post(
        "/api/admin/tokens", json={"name": name, "scopes": ["checkin"]}, headers=ADMIN
    )
    assert response.status == 201, await response.text()
    token: str = (await response.json())["token"]
    return token


def decode(data: bytes | str, kind: type[Any]) -> Any:
    return msgspec.json.decode(data, type=kind)


# ---- visitors --------------------------------------------------------------------------------


def visitor(visitor_id: str | None = None) -> dict[str, str]:
    """Request headers that make a client act as one distinct visitor (a signed cookie)."""
    from server.core.tokens import Signer, new_id

    return {"Cookie": f"bo_visitor={Signer(SECRET).visitor_cookie(visitor_id or new_id())}"}


def solve(challenge: dict[str, Any]) -> str:
    """Solve a bot challenge the way a scripted client does: the altcha library, in Python."""
    from loadtest.solver import solve as solve_timed

    return solve_timed(challenge).payload


async def join_body(
    session: Any, event_id: str, headers: dict[str, str] | None = None, base: str = ""
) -> dict[str, str]:
    """The body of a join that carries a freshly solved challenge. `session` is a TestClient
    (paths) or an aiohttp.ClientSession (then `base` is the server's URL)."""
    async with session.get(f"{base}/api/events/{event_id}/challenge", headers=headers) as r:
        assert r.status == 200, await r.text()
        challenge = await r.json()
    # Solved off the event loop, as a browser solves in its own worker: the app under test
    # shares this loop, and hundreds of solves run back to back would stall it for seconds.
    return {"altcha": await asyncio.to_thread(solve, challenge)}


async def join(
    session: Any, event_id: str, headers: dict[str, str] | None = None, base: str = ""
) -> Any:
    """POST …/queue with a solved challenge, as the waiting page does; the response."""
    body = await join_body(session, event_id, headers, base)
    return await session.post(f"{base}/api/events/{event_id}/queue", json=body, headers=headers)


async def admitted(
    client: TestClient[Any, Any], event_id: str, headers: dict[str, str], tries: int = 400
) -> tuple[str, str]:
    """Join as this visitor and wait (bounded) until admitted: (queue_id, access_token)."""
    joined = await (await join(client, event_id, headers)).json()
    queue_id = joined["queue_id"]
    for _ in range(tries):
        status = await (await client.get(f"/api/queue/{queue_id}", headers=headers)).json()
        if status["state"] == "admitted":
            return queue_id, status["access_token"]
        await asyncio.sleep(0.025)
    raise AssertionError(f"not admitted: {status}")


def bearer(headers: dict[str, str], token: str) -> dict[str, str]:
    return {**headers, "Authorization": f"Bearer {token}"}


async def admitted_headers(client: Client, event_id: str) -> Headers:
    """A new visitor, admitted: its cookie and bearer token headers."""
    headers = visitor()
    _, token = await admitted(client, event_id, headers)
    return bearer(headers, token)


# ---- a fan's journey -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fan:
    """One visitor of one app: its id and its headers (cookie, and bearer once admitted)."""

    client: Client
    visitor_id: str
    headers: Headers

    async def call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        return await call(self.client, method, url, self.headers, body)

    async def hold(self, event_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await hold(self.client, event_id, self.headers, body)

    async def checkout(self, hold_id: str, email: str | None = None) -> tuple[int, Any]:
        return await checkout(self.client, hold_id, self.headers, email)

    async def pay(self, order_id: str, card: str = CARD_OK) -> tuple[int, Any]:
        return await pay(self.client, order_id, self.headers, card)

    async def buy(self, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Hold, check out and pay; the paid order."""
        status, h = await self.hold(event_id, body)
        assert status == 201, h
        status, order = await self.checkout(h["hold_id"])
        assert status == 201, order
        status, paid = await self.pay(order["order_id"])
        assert status == 200 and paid["status"] == "paid", paid
        result: dict[str, Any] = paid
        return result


async def admitted_fan(client: Client, event_id: str) -> Fan:
    """A new visitor of `client`, joined and admitted to the event."""
    from server.core.tokens import new_id

    vid = new_id()
    headers = visitor(vid)
    _, token = await admitted(client, event_id, headers)
    return Fan(client, vid, bearer(headers, token))


async def crowd(client: Client, event_id: str, n: int) -> list[Fan]:
    return list(await asyncio.gather(*(admitted_fan(client, event_id) for _ in range(n))))


async def call(
    client: Client, method: str, url: str, headers: Headers | Fan, body: Any = None
) -> tuple[int, Any]:
    """One request as this visitor: (status, decoded JSON body or None)."""
    kwargs: dict[str, Any] = {"headers": headers.headers if isinstance(headers, Fan) else headers}
    if body is not None:
        kwargs["json"] = body
    response = await client.request(method, url, **kwargs)
    text = await response.text()
    return response.status, json.loads(text) if text else None


async def hold(
    client: Client, event_id: str, headers: Headers, body: dict[str, Any]
) -> tuple[int, Any]:
    return await call(client, "POST", f"/api/events/{event_id}/holds", headers, body)


def fan_email(headers: Headers) -> str:
    """A visitor's own email (one buyer per visitor), so the per-buyer limit stays out of the
    way of tests about other things."""
    import hashlib

    digest = hashlib.sha256(headers.get("Cookie", "").encode()).hexdigest()[:16]
    return f"fan-{digest}@example.com"


async def checkout(
    client: Client, hold_id: str, headers: Headers, email: str | None = None
) -> tuple[int, Any]:
    body = {"email": email or fan_email(headers)}
    return await call(client, "POST", f"/api/holds/{hold_id}/checkout", headers, body)


async def pay(
    client: Client, order_id: str, headers: Headers, card: str = CARD_OK
) -> tuple[int, Any]:
    return await call(client, "POST", f"/api/orders/{order_id}/pay", headers, {"card": card})


def created(answer: tuple[int, Any], status: int = 201) -> dict[str, Any]:
    """The body of an answer that must have `status`."""
    assert answer[0] == status, answer
    data: dict[str, Any] = answer[1]
    return data
