"""The published schema tells the truth: schemathesis, every check, against the live app.

The app runs on a real socket (its own event loop in a thread, on the session's real Redis and
PostgreSQL); schemathesis loads /api/openapi.json from it and sends generated requests to
every operation, derandomized (the same examples every run) and a small number of examples each, and runs all its
checks on each answer (no 5xx, status codes and bodies as documented, schema-valid data
accepted, schema-invalid data refused, auth enforced as declared)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from redis.asyncio import Redis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode

from server.core import keys
from server.core.settings import Settings
from server.ops.accounts import account_digest
from server.ops.sessions import SESSION_COOKIE
from server.runtime.app import create_app
from server.store import db

from .helpers import ADMIN, wipe_database

EXAMPLES = 12  # per operation and phase: the whole run stays well under a minute on 2 cores

# Operations left out, each because OpenAPI cannot describe what it needs:
EXCLUDED = [
    # Signed by Stripe over the raw body with a shared secret: every generated body is
    # (rightly) refused, so no check could tell a truthful schema from a wrong one.
    "/api/webhooks/stripe",
    # Websockets: the handshake (Upgrade, Sec-WebSocket-Key) is outside OpenAPI. The schema
    # marks them (x-websocket) and documents the 400 a plain GET gets; test_api_queue and
    # test_console drive them.
    "/api/queue/{queue_id}/ws",
    "/api/admin/events/{event_id}/live",
]

# Schema-valid data the app may still refuse with 422, by a cross-field rule OpenAPI cannot
# state: an event's sale_starts_at before starts_at and its seat total under the cap (create),
# the same against the stored event (change). Everywhere else schemathesis's default stands.
# Likewise a password change needs the account's current password, and confirming a new
# authenticator the current code of its secret (422 wrong_password, wrong_code).
CROSS_FIELD = [
    ("POST", "/api/admin/events"),
    ("PATCH", "/api/admin/events/{event_id}"),
    ("POST", "/api/admin/account/password"),
    ("POST", "/api/admin/account/totp/confirm"),
]
# The operator whose session the self-service routes (security: session only) are called with:
# a viewer, signed in with its temporary password (what those routes allow).
OPERATOR = "schema-viewer@example.com"
POSITIVE_DEFAULT = ["2xx", "3xx", "401", "403", "404", "409", "429"]

CONFIG: dict[str, Any] = {
    "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_DEFAULT}},
    "operations": [
        {
            # One filter, the operation's label: schemathesis ORs separate include-* keys, so
            # include-method with include-path would pick every operation of that method.
            "include-name": f"{method} {path}",
            "checks": {
                "positive_data_acceptance": {"expected-statuses": [*POSITIVE_DEFAULT, "422"]}
            },
        }
        for method, path in CROSS_FIELD
    ],
}


class LiveApp:
    """create_app(settings) served on 127.0.0.1 by its own loop in a thread."""

    def __init__(self, app_settings: Settings) -> None:
        self.settings = app_settings
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.password = ""

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    async def _wipe(self) -> None:
        client = Redis.from_url(self.settings.redis_url)
        await client.flushall()
        await client.aclose()
        pool: asyncpg.Pool = await db.create_pool(self.settings.database_url, 2)
        await db.migrate(pool)
        await wipe_database(pool)
        await pool.close()

    async def _start(self) -> None:
        await self._wipe()
        self.runner = web.AppRunner(create_app(self.settings))
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _forgive(self) -> None:
        client = Redis.from_url(self.settings.redis_url)
        await client.delete(keys.admin_failures("127.0.0.1"))
        await client.delete(keys.account_failures(account_digest(OPERATOR)))
        await client.aclose()

    async def _sign_in(self) -> dict[str, str]:
        async with aiohttp.ClientSession(self.url) as http:
            if not self.password:
                body = {"email": OPERATOR, "role": "viewer"}
                async with http.post("/api/admin/operators", json=body, headers=ADMIN) as made:
                    assert made.status == 201, await made.text()
                    self.password = (await made.json())["password"]
            body = {"email": OPERATOR, "password": self.password}
            async with http.post("/api/admin/session", json=body) as answer:
                assert answer.status == 200, await answer.text()
                csrf = (await answer.json())["csrf_token"]
                sid = answer.cookies[SESSION_COOKIE].value
        return {"Cookie": f"{SESSION_COOKIE}={sid}", "X-CSRF-Token": csrf}

    def session(self) -> dict[str, str]:
        """A fresh session of OPERATOR (the routes under test may sign it out)."""
        headers: dict[str, str] = self.run(self._sign_in())
        return headers

    def forgive(self) -> None:
        """Forget this address's failed admin credentials (and OPERATOR's): schemathesis probes
        each operation with wrong tokens (and passwords), and past ten (five for one account)
        the guard (rightly) answers 429 to everything."""
        self.run(self._forgive())

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def __enter__(self) -> LiveApp:
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def live(base_settings: Settings) -> Iterator[LiveApp]:
    with LiveApp(base_settings) as app:
        yield app


@pytest.fixture(scope="module")
def api_schema(live: LiveApp) -> Any:
    config = SchemathesisConfig.from_dict(CONFIG)
    loaded = schemathesis.openapi.from_url(f"{live.url}/api/openapi.json", config=config)
    return loaded.exclude(path=EXCLUDED)


def _exercise(
    operation: Any, mode: GenerationMode, live: LiveApp, statuses: Counter[tuple[str, int]]
) -> list[str]:
    """Up to EXAMPLES generated requests to one operation; its first failed check, as text."""
    failures: list[str] = []
    security = operation.definition.raw.get("security") or []
    headers = None
    if security == [{"session": []}]:  # a signed-in operator's own routes: no token will do
        # Negative data there is the session cookie itself (missing or malformed), so only
        # positive data is sent with a real one.
        headers = live.session() if mode is GenerationMode.POSITIVE else None
    elif security:
        headers = ADMIN

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
        phases=[Phase.generate],
    )
    def run(case: Any) -> None:
        live.forgive()
        try:
            response = case.call_and_validate(base_url=live.url, headers=headers)
            statuses[(f"{operation.label} [{mode}]", response.status_code)] += 1
        except (AssertionError, FailureGroup) as exc:  # a check failed: collect, keep going
            if not failures:  # the first (shrunk-free) failure of this operation and mode
                failures.append(f"{operation.label} [{mode}]: {exc}")

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): only positive data exists.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


def test_only_the_cross_field_operations_may_refuse_valid_data(api_schema: Any) -> None:
    """The 422 allowance reaches exactly the CROSS_FIELD operations, so positive_data_acceptance
    judges every other one (a schema looser than its handler fails the test below)."""
    allowed = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        config = api_schema.config.checks_config_for(operation=operation, phase="fuzzing")
        if "422" in config.positive_data_acceptance.expected_statuses:
            allowed.append((operation.method.upper(), operation.path))
    assert sorted(allowed) == sorted(CROSS_FIELD)


def test_api_conforms_to_its_schema(api_schema: Any, live: LiveApp) -> None:
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures.extend(_exercise(operation, mode, live, statuses))
    assert operations >= 30, operations
    print(sorted(statuses.items()))
    assert sum(statuses.values()) >= 300, statuses  # a few hundred requests really went out
    assert not failures, "\n\n".join(failures[:40])
