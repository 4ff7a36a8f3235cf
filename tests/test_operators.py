"""Operators by name: the permission table against every admin route, role and token scope;
sign-in (one answer for every wrong part, throttled per account and per address), CSRF,
step-up codes, recovery codes, disabling (sessions and live sockets end), scoped tokens,
sign-out everywhere, timeouts, the CLI's first owner — and the rules as plain tables."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pyotp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from server.core.messages import EventPatch
from server.core.settings import Settings
from server.ops import accounts
from server.ops.accounts import keeps_an_owner, normalise_email, password_problem, recovery_digest
from server.ops.admin_guard import ACCOUNT_FAILURES_PER_WINDOW, FAILURES_PER_WINDOW
from server.ops.permissions import (
    SCOPES,
    TABLE,
    Principal,
    admit_is_high_risk,
    patch_is_high_risk,
    rule_for,
    verdict,
)
from server.ops.sessions import SESSION_COOKIE
from server.runtime.app import create_app
from server.runtime.openapi import document

from .helpers import ADMIN, create_event

Client = TestClient[Any, Any]
NEW_PASSWORD = "a fresh passphrase 42"


def code(secret: str, ahead: int = 0) -> str:
    """The TOTP code of `secret` `ahead` steps from now (a step may be used once per account)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


@dataclass
class Operator:
    email: str
    role: str
    password: str
    secret: str
    http: aiohttp.ClientSession
    csrf: str = ""
    used_otp: str = ""  # the last code this operator signed in with (spent)
    recovery: list[str] | None = None

    def headers(self, otp: str | None = None) -> dict[str, str]:
        h = {"X-CSRF-Token": self.csrf}
        if otp is not None:
            h["X-Boxoffice-OTP"] = otp
        return h

    async def call(
        self, method: str, path: str, body: Any = None, otp: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": {**self.headers(otp), **kw.pop("headers", {})}}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, path, **kwargs, **kw) as r:
            text = await r.text()
            return r.status, msgspec.json.decode(text) if text else None

    async def sign_in(self, otp: str | None = None, password: str | None = None) -> int:
        body = {"email": self.email, "password": password or self.password}
        body["otp"] = code(self.secret) if otp is None else otp
        async with self.http.post("/api/admin/session", json=body) as r:
            if r.status == 200:
                self.csrf = (await r.json())["csrf_token"]
                self.used_otp = body["otp"]
            return r.status


async def invite(client: Client, email: str, role: str, by: dict[str, str] = ADMIN) -> Any:
    response = await client.post(
        "/api/admin/operators", json={"email": email, "role": role}, headers=by
    )
    assert response.status == 201, await response.text()
    return await response.json()


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    """The app behind a proxy on loopback (as under `up`): X-Forwarded-For names the client."""
    return msgspec.structs.replace(base_settings, trusted_proxies="127.0.0.1")


@pytest.fixture
async def sessions_of(client: Client) -> AsyncIterator[list[aiohttp.ClientSession]]:
    made: list[aiohttp.ClientSession] = []
    yield made
    for s in made:
        await s.close()


async def operator(
    client: Client, made: list[aiohttp.ClientSession], email: str, role: str, ready: bool = True
) -> Operator:
    """An invited operator with its own cookie jar; with ready, signed in, password changed."""
    issued = await invite(client, email, role)
    http = aiohttp.ClientSession(
        str(client.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    made.append(http)
    op = Operator(email, role, issued["password"], issued["totp_secret"], http)
    if ready:
        assert await op.sign_in() == 200
        status, _ = await op.call(
            "POST",
            "/api/admin/account/password",
            {"password": op.password, "new_password": NEW_PASSWORD},
        )
        assert status == 204
        op.password = NEW_PASSWORD
    return op


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code of the close frame the server sends (samples may come first)."""
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type == WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR):
            return None


# ---- the rules, as tables -----------------------------------------------------------------------


EMAILS = [
    ("Alice@Example.COM", "alice@example.com"),
    ("  bob.smith+ops@box-office.example.org ", "bob.smith+ops@box-office.example.org"),
    ("alice@example.com\n", "alice@example.com"),  # trimmed, then matched whole
    ("alice@example.com\nbob@example.com", None),
    ("alice@exa\x00mple.com", None),
    ("alice\x00@example.com", None),
    ("alice@example", None),
    ("@example.com", None),
    ("alice@@example.com", None),
    ("al ice@example.com", None),
    ("álice@example.com", None),
    (".alice@example.com", None),
    ("a" * 250 + "@example.com", None),
    ("", None),
    ("\u212aate@example.com", None),  # the Kelvin sign: lower-cased it would be a "k"
    ("ops@example.c0m", None),
]


@pytest.mark.parametrize(("raw", "expected"), EMAILS)
def test_email_rule(raw: str, expected: str | None) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), EMAILS)
def test_the_published_invite_schema_says_the_email_rule(raw: str, expected: str | None) -> None:
    """OperatorCreate.email in /api/openapi.json accepts exactly the addresses the invite takes
    (as sent: the console trims them before it sends)."""
    email = json.loads(document())["components"]["schemas"]["OperatorCreate"]["properties"]["email"]
    sent = raw.strip()
    fits = len(sent) <= email["maxLength"] and re.search(email["pattern"], sent) is not None
    assert fits == (expected is not None), email


async def test_an_invite_for_a_bad_email_is_refused_by_the_email_field(client: Client) -> None:
    for bad in ("alice@example", "ops@exa\x00mple.com", "\u212aate@example.com", "a@b.c\nd@e.fg"):
        response = await client.post(
            "/api/admin/operators", json={"email": bad, "role": "viewer"}, headers=ADMIN
        )
        assert response.status == 422, bad
        body = await response.json()
        assert body["fields"] == [
            {
                "path": "email",
                "message": "Email must be one email address, such as name@example.com",
            }
        ], body
    assert (await client.get("/api/admin/operators", headers=ADMIN)).status == 200
    assert await (await client.get("/api/admin/operators", headers=ADMIN)).json() == []


@pytest.mark.parametrize(
    ("password", "fine"),
    [
        ("a fresh passphrase 42", True),
        ("short", False),
        ("aaaaaaaaaaaaaaaa", False),
        ("abcabcabcabcabc", False),
        ("x" * 257, False),
        ("alice-loves-tickets", False),  # holds the email's name
        ("with a NUL \x00 inside", False),
        ("lone surrogate \ud800 here", False),
    ],
)
def test_password_rule(password: str, fine: bool) -> None:
    assert (password_problem(password, "alice@example.com") is None) is fine


def test_totp_steps_and_replay() -> None:
    secret = accounts.new_totp_secret()
    now = 1_900_000_000.0
    totp = pyotp.TOTP(secret)
    step = int(now // 30)
    for offset, accepted in [(-2, False), (-1, True), (0, True), (1, True), (2, False)]:
        got = accounts.totp_step(secret, totp.at(now + 30 * offset), now)
        assert (got == step + offset) is accepted, offset
    for garbage in ("", "12345", "1234567", "12345a", "١٢٣٤٥٦", " 123456"):
        assert accounts.totp_step(secret, garbage, now) is None
    current = totp.at(now)
    assert accounts.fresh_totp_step(secret, current, now, last_step=step - 1) == step
    assert accounts.fresh_totp_step(secret, current, now, last_step=step) is None  # replayed


def test_recovery_codes_are_random_and_typed_loosely() -> None:
    codes = accounts.new_recovery_codes()
    assert len(codes) == len(set(codes)) == accounts.RECOVERY_CODES
    first = codes[0]
    digest = recovery_digest(first)
    assert digest is not None
    assert recovery_digest(first.upper().replace("-", " ")) == digest
    for bad in ("", "abcd-efgh", first + "x", first.replace(first[0], "0"), "123456"):
        assert recovery_digest(bad) is None or bad == first


@pytest.mark.parametrize(
    ("owners", "was", "now", "ok"),
    [
        (1, True, False, False),
        (2, True, False, True),
        (1, False, False, True),
        (0, False, True, True),
    ],
)
def test_an_owner_always_remains(owners: int, was: bool, now: bool, ok: bool) -> None:
    assert keeps_an_owner(owners, was, now) is ok


@pytest.mark.parametrize(
    ("rate", "closed", "patch", "risky"),
    [
        (600, False, EventPatch(closed=True), True),  # close
        (600, True, EventPatch(closed=False), True),  # reopen
        (600, True, EventPatch(closed=True), False),  # already closed: nothing changes
        (600, False, EventPatch(rate_per_min=1200), False),  # exactly 2x
        (600, False, EventPatch(rate_per_min=1201), True),
        (600, False, EventPatch(rate_per_min=10), False),  # lowering
        (0, False, EventPatch(rate_per_min=1), True),  # any raise from 0
        (0, False, EventPatch(rate_per_min=0), False),
        (600, False, EventPatch(paused=True, max_active=5, hold_minutes=3), False),
        (600, False, EventPatch(paused=False, rate_per_min=5000), True),
    ],
)
def test_which_patch_is_high_risk(rate: int, closed: bool, patch: EventPatch, risky: bool) -> None:
    assert patch_is_high_risk(rate, closed, patch) is risky


@pytest.mark.parametrize(
    ("count", "risky"), [(1, False), (100, False), (101, True), (10_000, True)]
)
def test_which_admit_is_high_risk(count: int, risky: bool) -> None:
    assert admit_is_high_risk(count) is risky


def principals() -> dict[str, Principal]:
    found: dict[str, Principal] = {
        r: Principal("session", f"{r}@example.com", role=r) for r in accounts.ROLES
    }
    found.update({s: Principal("token", f"token:{s}", scopes=frozenset({s})) for s in SCOPES})
    found["admin"] = Principal("admin", "admin")
    return found


# Written by hand, apart from the table, for the decisions that matter most.
@pytest.mark.parametrize(
    ("method", "path", "who", "answer"),
    [
        ("PATCH", "/api/admin/events/{event_id}", "viewer", "forbidden"),
        ("PATCH", "/api/admin/events/{event_id}", "door", "forbidden"),
        ("PATCH", "/api/admin/events/{event_id}", "operator", "allowed"),
        ("PATCH", "/api/admin/events/{event_id}", "events:read", "forbidden"),
        ("PATCH", "/api/admin/events/{event_id}", "events:write", "allowed"),
        ("GET", "/api/admin/events/{event_id}/stats", "viewer", "allowed"),
        ("GET", "/api/admin/events/{event_id}/stats", "door", "forbidden"),
        ("GET", "/api/admin/events/{event_id}/stats", "checkin", "forbidden"),
        ("POST", "/api/admin/operators", "operator", "forbidden"),
        ("POST", "/api/admin/operators", "owner", "allowed"),
        ("POST", "/api/admin/operators", "admin", "allowed"),  # bootstrap
        ("POST", "/api/admin/operators", "events:write", "forbidden"),
        ("POST", "/api/admin/tokens", "operator", "forbidden"),
        ("DELETE", "/api/admin/sessions", "admin", "forbidden"),
        ("DELETE", "/api/admin/sessions", "door", "allowed"),
        ("POST", "/api/events/{event_id}/checkins", "door", "allowed"),
        ("POST", "/api/events/{event_id}/checkins", "viewer", "forbidden"),
        ("POST", "/api/events/{event_id}/checkins", "checkin", "allowed"),
        ("POST", "/api/events/{event_id}/checkins", "events:write", "forbidden"),
        ("GET", "/api/admin/door/events", "checkin", "allowed"),
        ("GET", "/api/admin/door/events", "door", "allowed"),
        ("GET", "/api/admin/door/events", "viewer", "forbidden"),
        ("GET", "/api/admin/door/events", "events:read", "forbidden"),
        ("GET", "/api/events/{event_id}/checkins", "checkin", "allowed"),
        ("GET", "/api/events/{event_id}/checkins", "orders:read", "forbidden"),
        ("GET", "/api/admin/events", "checkin", "forbidden"),
        ("GET", "/api/admin/events/{event_id}", "checkin", "forbidden"),
        ("GET", "/api/admin/orders", "viewer", "forbidden"),
        ("POST", "/api/admin/orders/{order_id}/refund", "orders:read", "forbidden"),
        ("POST", "/api/admin/orders/{order_id}/refund", "orders:write", "allowed"),
    ],
)
def test_key_decisions(method: str, path: str, who: str, answer: str) -> None:
    rule = rule_for(method, path)
    assert rule is not None
    assert verdict(rule, principals()[who]) == answer


# What the door may reach, written by hand: its events to pick from, its counter, a scan.
DOOR_ROUTES = {
    ("GET", "/api/admin/door/events"),
    ("GET", "/api/events/{event_id}/checkins"),
    ("POST", "/api/events/{event_id}/checkins"),
}


@pytest.mark.parametrize(("method", "path"), sorted(TABLE))
def test_a_checkin_token_reaches_the_door_and_nothing_else(method: str, path: str) -> None:
    """Least privilege, against every entry of the table: a `checkin` token (what door staff
    are given) may call the door's routes and no other (public ones aside: signing in); the
    door role signed in, the same and its own account."""
    rule = TABLE[(method, path)]
    door = (method, path) in DOOR_ROUTES or rule.public
    assert verdict(rule, principals()["checkin"]) == ("allowed" if door else "forbidden")
    own = door or rule.self_service
    assert verdict(rule, principals()["door"]) == ("allowed" if own else "forbidden")


def test_risky_entries() -> None:
    always = {k for k, r in TABLE.items() if r.risk == "always"}
    assert ("POST", "/api/admin/events/{event_id}/rebuild-inventory") in always
    assert ("POST", "/api/admin/operators") in always
    assert ("PATCH", "/api/admin/operators/{email}") in always
    assert ("POST", "/api/admin/orders/{order_id}/refund") in always
    assert rule_for("PATCH", "/api/admin/events/{event_id}").risk == "depends"  # type: ignore[union-attr]
    assert rule_for("HEAD", "/api/admin/events") == rule_for("GET", "/api/admin/events")


# ---- every route, every role, every scope ---------------------------------------------------------


def all_routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for resource in app.router.resources():
        for route in resource:
            if route.method not in ("HEAD", "*"):
                found.add((route.method, resource.canonical))
    return found


def admin_routes(app: web.Application) -> set[tuple[str, str]]:
    """Every route under /api/admin/, and the others the table governs (check-in)."""
    return {
        (m, path)
        for m, path in all_routes(app)
        if path.startswith("/api/admin/") or (m, path) in TABLE
    }


def test_every_admin_route_has_a_permission_entry(settings: Settings) -> None:
    app = create_app(settings)
    missing = admin_routes(app) - set(TABLE)
    assert not missing, f"admin routes without an entry in server/ops/permissions.py: {missing}"
    stale = set(TABLE) - all_routes(app)
    assert not stale, f"entries in server/ops/permissions.py without a route: {stale}"
    assert ("POST", "/api/events/{event_id}/checkins") in admin_routes(app)


def concrete(path: str, event_id: str) -> str:
    return path.format(
        event_id=event_id, email="nobody@example.com", name="no-such-token", order_id="no-order"
    )


# routes whose success would end the caller's own session: checked last, once per session
ENDS_SESSION = {("DELETE", "/api/admin/session"), ("DELETE", "/api/admin/sessions")}


async def test_every_route_against_every_role_and_scope(
    client: Client, sessions_of: list[aiohttp.ClientSession]
) -> None:
    ev = await create_event(client, rate_per_min=0)
    routes = sorted(admin_routes(client.app))
    who: dict[str, tuple[Principal, dict[str, str], Operator | None]] = {}
    for role in accounts.ROLES:
        new = await operator(client, sessions_of, f"{role}@example.com", role)
        # A step-up now, for the actions that always ask one; the recovery codes sign in again.
        status, body = await new.call(
            "POST", "/api/admin/account/recovery-codes", otp=code(new.secret, 1)
        )
        assert status == 200, body
        new.recovery = body["recovery_codes"]
        who[role] = (Principal("session", new.email, role=role), {}, new)
    for scope in SCOPES:
        response = await client.post(
            "/api/admin/tokens",
            json={"name": f"t-{scope.replace(':', '-')}", "scopes": [scope]},
            headers=ADMIN,
        )
        assert response.status == 201, await response.text()
        token = (await response.json())["token"]
        who[scope] = (
            Principal("token", scope, scopes=frozenset({scope})),
            {"Authorization": f"Bearer {token}"},
            None,
        )
    who["admin"] = (Principal("admin", "admin"), ADMIN, None)
    checked = 0
    for name, (p, headers, op) in who.items():
        order = [r for r in routes if r not in ENDS_SESSION] + sorted(ENDS_SESSION)
        for method, path in order:
            rule = rule_for(method, path)
            assert rule is not None
            url = concrete(path, ev["id"])
            if op is not None and (method, path) == ("DELETE", "/api/admin/sessions"):
                assert op.recovery is not None
                assert await op.sign_in(otp=op.recovery.pop()) == 200  # signed out just before
            if op is not None:
                status, body = await op.call(method, url)
            else:
                response = await client.request(method, url, headers=headers)
                status = response.status
                text = await response.text()
                body = msgspec.json.decode(text) if text else None
            if op is not None and path.endswith("/recovery-codes") and status == 200:
                op.recovery = body["recovery_codes"]  # the earlier ones ended
            expected = verdict(rule, p)
            where = (name, method, path, status, body)
            assert status != 500, where
            if expected == "forbidden":
                assert status == 403 and body["error"] == "forbidden", where
            else:
                assert status not in (401, 403), where
            checked += 1
    assert checked == len(routes) * len(who)


# ---- signing in -----------------------------------------------------------------------------------


def session_cookie(response: aiohttp.ClientResponse) -> str | None:
    """The console session's Set-Cookie header, whatever other cookies the answer sets."""
    for header in response.headers.getall("Set-Cookie", ()):
        if header.startswith(f"{SESSION_COOKIE}="):
            return header
    return None


async def test_bootstrap_sign_in_and_one_answer_for_every_wrong_part(
    client: Client, sessions_of: list[aiohttp.ClientSession], pg: asyncpg.Pool
) -> None:
    options = await (await client.get("/api/admin/sign-in-options")).json()
    assert options == {"shared_token": True}
    op = await operator(client, sessions_of, "Owner@Example.com", "owner", ready=False)
    assert op.email == "Owner@Example.com"
    op.email = "owner@example.com"  # stored normalised
    row = await pg.fetchrow("SELECT password_hash, totp_secret FROM operators")
    assert row is not None
    assert row["password_hash"].startswith("$argon2id$") and op.password not in row["password_hash"]
    assert len(op.secret) == 32
    wrong = [
        {"email": "nobody@example.com", "password": op.password, "otp": code(op.secret)},
        {"email": op.email, "password": op.password + "x", "otp": code(op.secret)},
        {
            "email": op.email,
            "password": op.password,
            "otp": "000000" if code(op.secret) != "000000" else "111111",
        },
        {"email": op.email, "password": op.password, "otp": ""},
        {"email": "not an email\x00", "password": op.password, "otp": code(op.secret)},
    ]
    answers = []
    for body in wrong:
        async with op.http.post(
            "/api/admin/session", json=body, headers={"X-Forwarded-For": "198.51.100.1"}
        ) as r:
            answers.append((r.status, await r.json(), session_cookie(r) is not None))
    assert all(a == answers[0] for a in answers), answers
    assert answers[0][0] == 401 and answers[0][1]["error"] == "sign_in_failed" and not answers[0][2]

    body_code = code(op.secret)
    async with op.http.post(
        "/api/admin/session",
        json={"email": "  OWNER@example.com", "password": op.password, "otp": body_code},
    ) as r:
        assert r.status == 200, await r.text()
        session = await r.json()
        cookie = session_cookie(r)
        assert cookie is not None
    assert session["email"] == "owner@example.com" and session["role"] == "owner"
    assert session["must_change_password"] is True
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/api;" in cookie
    stored = await pg.fetchval("SELECT id_hash FROM operator_sessions")
    assert cookie.split("=", 1)[1].split(";")[0] != stored  # only a digest is kept
    op.csrf = session["csrf_token"]
    # The same code again is a replay.
    assert await op.sign_in(otp=body_code) == 401
    # A temporary password: nothing but one's own account until it is changed.
    status, body = await op.call("GET", "/api/admin/events")
    assert (status, body["error"]) == (403, "forbidden")
    status, body = await op.call(
        "POST", "/api/admin/account/password", {"password": op.password, "new_password": "short"}
    )
    assert (status, body["error"]) == (422, "weak_password")
    status, _ = await op.call(
        "POST",
        "/api/admin/account/password",
        {"password": op.password, "new_password": NEW_PASSWORD},
    )
    assert status == 204
    status, me = await op.call("GET", "/api/admin/session")
    assert (status, me["must_change_password"], me["csrf_token"]) == (200, False, op.csrf)
    # Now a named owner: the audit names the person who invited (the shared token: "admin").
    status, rows = await op.call("GET", "/api/admin/audit")
    assert status == 200
    assert [(r["who"], r["action"], r["field"]) for r in rows] == [
        ("admin", "operator_create", "owner@example.com")
    ]
    # Sign out: the cookie no longer works.
    status, _ = await op.call("DELETE", "/api/admin/session")
    assert status == 204
    status, body = await op.call("GET", "/api/admin/session")
    assert status == 401


async def test_sign_in_throttled_per_account_and_per_address(
    client: Client, sessions_of: list[aiohttp.ClientSession]
) -> None:
    op = await operator(client, sessions_of, "target@example.com", "operator")
    # Per account: failures from many addresses add up; then even the right answer waits.
    statuses = []
    for i in range(ACCOUNT_FAILURES_PER_WINDOW + 1):
        r = await client.post(
            "/api/admin/session",
            json={"email": op.email, "password": f"guess-{i}", "otp": "123456"},
            headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
        )
        statuses.append(r.status)
    assert statuses == [401] * ACCOUNT_FAILURES_PER_WINDOW + [429]
    r = await client.post(
        "/api/admin/session",
        json={"email": op.email, "password": op.password, "otp": code(op.secret, 1)},
        headers={"X-Forwarded-For": "198.51.100.200"},
    )
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    assert (await r.json())["error"] == "rate_limited"
    # An unknown account is throttled the same way (nothing tells it apart).
    statuses = []
    for i in range(ACCOUNT_FAILURES_PER_WINDOW + 1):
        r = await client.post(
            "/api/admin/session",
            json={"email": "ghost@example.com", "password": "x", "otp": ""},
            headers={"X-Forwarded-For": f"198.51.100.{50 + i}"},
        )
        statuses.append(r.status)
    assert statuses == [401] * ACCOUNT_FAILURES_PER_WINDOW + [429]
    # Per address: many accounts from one address.
    statuses = []
    for i in range(FAILURES_PER_WINDOW + 1):
        r = await client.post(
            "/api/admin/session",
            json={"email": f"spray{i}@example.com", "password": "x", "otp": ""},
            headers={"X-Forwarded-For": "203.0.113.77"},
        )
        statuses.append(r.status)
    assert statuses == [401] * FAILURES_PER_WINDOW + [429]
    # That address is throttled on the whole admin API, even with the shared token.
    r = await client.get("/api/admin/events", headers={**ADMIN, "X-Forwarded-For": "203.0.113.77"})
    assert r.status == 429


# ---- CSRF and step-up ---------------------------------------------------------------------------


async def test_csrf_refused_without_the_token(
    client: Client, sessions_of: list[aiohttp.ClientSession]
) -> None:
    ev = await create_event(client)
    op = await operator(client, sessions_of, "ops@example.com", "operator")
    url = f"/api/admin/events/{ev['id']}"
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": "é" * 10}):
        async with op.http.patch(url, json={"rate_per_min": 500}, headers=headers) as r:
            assert r.status == 403 and (await r.json())["error"] == "csrf_failed", headers
    status, event = await op.call("GET", url)  # safe methods need none
    assert status == 200 and event["settings"]["rate_per_min"] == 600
    status, event = await op.call("PATCH", url, {"rate_per_min": 500})
    assert status == 200 and event["settings"]["rate_per_min"] == 500


async def test_step_up_required_then_accepted_and_audited(
    client: Client, sessions_of: list[aiohttp.ClientSession]
) -> None:
    ev = await create_event(client, rate_per_min=600)
    op = await operator(client, sessions_of, "ops@example.com", "operator")
    url = f"/api/admin/events/{ev['id']}"
    status, _ = await op.call("PATCH", url, {"rate_per_min": 1200})  # 2x: no code needed
    assert status == 200
    wrong = "000000" if code(op.secret, 1) != "000000" else "111111"
    for otp in (None, "", wrong, op.used_otp):  # the last: the sign-in's code, replayed
        status, body = await op.call("PATCH", url, {"rate_per_min": 5000}, otp=otp)
        assert (status, body["error"]) == (403, "step_up_required"), otp
    status, body = await op.call("POST", f"{url}/admit", {"count": 500})
    assert (status, body["error"]) == (403, "step_up_required")
    status, event = await op.call("PATCH", url, {"rate_per_min": 5000}, otp=code(op.secret, 1))
    assert status == 200 and event["settings"]["rate_per_min"] == 5000
    # The step-up lasts a few minutes: closing needs no second code.
    status, event = await op.call("PATCH", url, {"closed": True})
    assert status == 200 and event["settings"]["closed"] is True
    rows = await (await client.get(f"{url}/audit", headers=ADMIN)).json()
    summary = [(r["who"], r["field"], r["new"], r["step_up"]) for r in rows]
    assert summary[:3] == [
        ("ops@example.com", "closed", True, True),
        ("ops@example.com", "rate_per_min", 5000, True),
        ("ops@example.com", "rate_per_min", 1200, False),
    ]
    # A token is its own credential: no step-up.
    r = await client.patch(url, json={"closed": False}, headers=ADMIN)
    assert r.status == 200


# ---- recovery codes, disabling, tokens, sign-out everywhere ---------------------------------------


async def test_enrolment_and_recovery_codes_are_single_use(
    client: Client, sessions_of: list[aiohttp.ClientSession]
) -> None:
    op = await operator(client, sessions_of, "ops@example.com", "operator")
    status, enrol = await op.call("POST", "/api/admin/account/totp")
    assert status == 200 and enrol["qr_svg"].startswith("<svg")
    assert enrol["otpauth_uri"].startswith("otpauth://totp/Boxoffice:ops%40example.com?secret=")
    status, body = await op.call(
        "POST", "/api/admin/account/totp/confirm", {"otp": code(op.secret, 1)}
    )
    assert (status, body["error"]) == (422, "wrong_code")  # the old secret's code
    status, body = await op.call(
        "POST", "/api/admin/account/totp/confirm", {"otp": code(enrol["totp_secret"])}
    )
    assert status == 200
    codes = body["recovery_codes"]
    assert len(codes) == 10
    op.secret = enrol["totp_secret"]
    assert await op.sign_in(otp=codes[0]) == 200
    assert await op.sign_in(otp=codes[0]) == 401  # spent
    assert await op.sign_in(otp=codes[1].upper()) == 200
    assert await op.sign_in(otp=code(op.secret, 1)) == 200  # the new secret signs in


async def test_disabled_operator_refused_and_live_socket_closed(
    client: Client, sessions_of: list[aiohttp.ClientSession]
) -> None:
    ev = await create_event(client, rate_per_min=0)
    owner = await operator(client, sessions_of, "owner@example.com", "owner")
    ops = await operator(client, sessions_of, "ops@example.com", "operator")
    ws = await ops.http.ws_connect(f"/api/admin/events/{ev['id']}/live")
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    # Changing operators always asks the owner for a fresh code.
    status, body = await owner.call(
        "PATCH", "/api/admin/operators/ops@example.com", {"disabled": True}
    )
    assert (status, body["error"]) == (403, "step_up_required")
    status, body = await owner.call(
        "PATCH",
        "/api/admin/operators/ops@example.com",
        {"disabled": True},
        otp=code(owner.secret, 1),
    )
    assert status == 200 and body["disabled"] is True and body["sessions"] == 0
    assert await closed_with(ws) == 4401
    status, _ = await ops.call("GET", "/api/admin/events")
    assert status == 401
    assert await ops.sign_in(otp=code(ops.secret, 1)) == 401  # a disabled account cannot sign in
    # The last owner cannot be disabled.
    status, body = await owner.call(
        "PATCH", "/api/admin/operators/owner@example.com", {"disabled": True}
    )
    assert (status, body["error"]) == (409, "last_owner")
    rows = await (await client.get("/api/admin/audit", headers=ADMIN)).json()
    assert ("owner@example.com", "operator_update", "ops@example.com.disabled", True) in [
        (r["who"], r["action"], r["field"], r["step_up"]) for r in rows
    ]


async def test_live_socket_of_another_process_closes_on_recheck(
    client: Client, sessions_of: list[aiohttp.ClientSession], pg: asyncpg.Pool
) -> None:
    """A session ended elsewhere (here: straight in PostgreSQL) closes the socket on recheck."""
    ev = await create_event(client, rate_per_min=0)
    viewer = await operator(client, sessions_of, "viewer@example.com", "viewer")
    ws = await viewer.http.ws_connect(f"/api/admin/events/{ev['id']}/live")
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    await pg.execute("DELETE FROM operator_sessions")
    assert await closed_with(ws) == 4401


async def test_idle_and_absolute_timeouts(
    client: Client, sessions_of: list[aiohttp.ClientSession], pg: asyncpg.Pool
) -> None:
    viewer = await operator(client, sessions_of, "viewer@example.com", "viewer")
    assert (await viewer.call("GET", "/api/admin/events"))[0] == 200
    await pg.execute("UPDATE operator_sessions SET last_seen_at = now() - interval '31 minutes'")
    assert (await viewer.call("GET", "/api/admin/events"))[0] == 401
    assert await viewer.sign_in(otp="") == 200
    await pg.execute("UPDATE operator_sessions SET created_at = now() - interval '13 hours'")
    assert (await viewer.call("GET", "/api/admin/events"))[0] == 401


async def test_scoped_tokens(client: Client, sessions_of: list[aiohttp.ClientSession]) -> None:
    ev = await create_event(client, rate_per_min=0)
    owner = await operator(client, sessions_of, "owner@example.com", "owner")
    for body, field in (
        ({"name": "Bad Name", "scopes": ["events:read"]}, "name"),
        ({"name": "", "scopes": ["events:read"]}, "name"),
        ({"name": "x", "scopes": ["root"]}, "scopes[0]"),
        ({"name": "x", "scopes": []}, "scopes"),
    ):
        status, answer = await owner.call(
            "POST", "/api/admin/tokens", body, otp=code(owner.secret, 1)
        )
        assert status == 422, answer
        assert [f["path"] for f in answer["fields"]] == [field], answer
    status, made = await owner.call(
        "POST", "/api/admin/tokens", {"name": "dash", "scopes": ["events:read"]}
    )
    assert status == 201 and made["token"].startswith("bo_")
    reader = {"Authorization": f"Bearer {made['token']}", "X-Forwarded-For": "192.0.2.44"}
    r = await client.get(f"/api/admin/events/{ev['id']}/stats", headers=reader)
    assert r.status == 200
    r = await client.patch(
        f"/api/admin/events/{ev['id']}", json={"rate_per_min": 1}, headers=reader
    )
    assert r.status == 403 and (await r.json())["error"] == "forbidden"
    status, listed = await owner.call("GET", "/api/admin/tokens")
    assert [(t["name"], t["scopes"], t["last_used_address"], t["revoked"]) for t in listed] == [
        ("dash", ["events:read"], "192.0.2.44", False)
    ]
    assert "token" not in listed[0] and listed[0]["last_used_at"] is not None
    ws = await client.ws_connect(
        f"/api/admin/events/{ev['id']}/live",
        protocols=("boxoffice.admin", f"bearer.{made['token']}"),
    )
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    status, _ = await owner.call("DELETE", "/api/admin/tokens/dash")
    assert status == 204
    assert await closed_with(ws) == 4401
    r = await client.get(f"/api/admin/events/{ev['id']}/stats", headers=reader)
    assert r.status == 401
    writer = await owner.call(
        "POST", "/api/admin/tokens", {"name": "bot", "scopes": ["events:write"]}
    )
    w = {"Authorization": f"Bearer {writer[1]['token']}"}
    r = await client.patch(f"/api/admin/events/{ev['id']}", json={"rate_per_min": 9000}, headers=w)
    assert r.status == 200  # no step-up for a token
    rows = await (await client.get(f"/api/admin/events/{ev['id']}/audit", headers=ADMIN)).json()
    assert (rows[0]["who"], rows[0]["new"], rows[0]["step_up"]) == ("token:bot", 9000, False)


async def test_sign_out_everywhere(
    client: Client, sessions_of: list[aiohttp.ClientSession]
) -> None:
    first = await operator(client, sessions_of, "viewer@example.com", "viewer")
    second_http = aiohttp.ClientSession(
        str(client.make_url("")), cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    sessions_of.append(second_http)
    second = Operator(first.email, "viewer", first.password, first.secret, second_http)
    assert await second.sign_in(otp="") == 200
    assert (await second.call("GET", "/api/admin/events"))[0] == 200
    status, body = await first.call("DELETE", "/api/admin/sessions")
    assert status == 200 and body == {"ended": 2}
    assert (await first.call("GET", "/api/admin/events"))[0] == 401
    assert (await second.call("GET", "/api/admin/events"))[0] == 401


async def test_without_the_shared_token_only_named_credentials_work(
    aiohttp_client: Any, settings: Settings, redis: Any, pg: asyncpg.Pool
) -> None:
    app = create_app(msgspec.structs.replace(settings, admin_token=""))
    c: Client = await aiohttp_client(app)
    assert await (await c.get("/api/admin/sign-in-options")).json() == {"shared_token": False}
    r = await c.get("/api/admin/events", headers=ADMIN)
    assert r.status == 401
    r = await c.post(
        "/api/admin/operators", json={"email": "a@example.com", "role": "owner"}, headers=ADMIN
    )
    assert r.status == 401
    r = await c.get("/api/admin/events", headers={"Authorization": "Bearer "})
    assert r.status == 401


def test_cli_creates_the_first_owner(settings: Settings, pg: asyncpg.Pool) -> None:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    env = {
        k: v
        for k, v in env.items()
        if not k.startswith("BOXOFFICE_") or k == "BOXOFFICE_REQUIRE_ALL"
    }
    done = subprocess.run(
        [sys.executable, "-m", "server", "operator", "create", "First@Example.com", "--role", "owner"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "operator first@example.com (owner) created" in done.stdout
    password = done.stdout.split("temporary password: ")[1].split()[0]
    secret = done.stdout.split("TOTP secret:")[1].split()[0]
    assert len(password) == 20 and len(secret) == 32
    again = subprocess.run(
        [sys.executable, "-m", "server", "operator", "create", "first@example.com", "--role", "viewer"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "exists" in again.stderr
