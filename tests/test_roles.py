"""Process roles: the parts of the service run as separate processes (web, admission, relay,
notifier, payments) from one codebase. Each role killed mid-sale leaves the others working, and
catches up when it comes back: admission, relay and web in one sale; the notifier with a real
SMTP server (aiosmtpd), mail sent exactly once; payments with Stripe (the real library against
tests/fakestripe.py): confirmations, captures and expiries owed while it was down are done on
its return, no seat sold twice."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from server.core.keys import EventKeys
from server.core.settings import ROLES, Settings
from server.runtime.processes import stop_process, wait_port
from server.runtime.stack import Stack
from server.runtime.up import parse_layout

from .fakestripe import FakeStripe
from .helpers import ADMIN, CARD_OK, event_body, eventually, join_body, visitor
from .test_mail import Inbox, SmtpServer, free_port
from .test_stripe import AUTHORISED, PUBLISHABLE_KEY, SECRET_KEY, WEBHOOK_SECRET

Headers = dict[str, str]


@pytest.mark.parametrize(
    ("text", "layout"),
    [
        ("web,admission,relay,notifier,payments", list(ROLES)),
        ("web:2,admission,relay,notifier,payments", ["web", "web", *ROLES[1:]]),
        ("admission,web:3,payments,notifier,relay", ["admission", "web", "web", "web", "payments", "notifier", "relay"]),
    ],
)  # fmt: skip
def test_layouts(text: str, layout: list[str]) -> None:
    assert parse_layout(text) == layout


@pytest.mark.parametrize(
    "text", ["web", "web,admission,relay,notifier", "web:0,admission,relay,notifier,payments",
             "web:x,admission,relay,notifier,payments", "cache,web,admission,relay,notifier,payments"],
)  # fmt: skip
def test_bad_layouts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_layout(text)


class Roles:
    """One worker process per role (a Stack laid out as ROLES), killed and restarted by name."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        quiet = msgspec.structs.replace(settings, log_level="error")
        self.stack = Stack(quiet, folder, layout=list(ROLES))
        self.index = {role: i for i, role in enumerate(self.stack.layout)}

    def url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.stack.worker_ports[self.index[role]]}"

    def kill(self, role: str) -> None:
        stop_process(self.stack.workers[self.index[role]], signal.SIGKILL, 5)

    def restart(self, role: str) -> None:
        i = self.index[role]
        self.stack.workers[i] = self.stack.start_worker(i)
        wait_port("127.0.0.1", self.stack.worker_ports[i], 30, self.stack.workers[i])


@contextlib.asynccontextmanager
async def running(settings: Settings, folder: Path) -> AsyncIterator[tuple[Roles, Web]]:
    """The roles started (stopped on the way out), and a client of the web role."""
    roles = Roles(settings, folder)
    roles.stack.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield roles, Web(session, roles.url("web"))
    finally:
        roles.stack.stop()


class Web:
    """A client of one role's process, with a fan's journey through the web role's API."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, **kw) as r:
            return r.status, await r.json()

    async def create_event(self, **overrides: Any) -> str:
        status, ev = await self.json(
            "POST", "/api/admin/events", json=event_body(**overrides), headers=ADMIN
        )
        assert status == 201, ev
        return str(ev["id"])

    async def join(self, event_id: str, fan: Headers) -> str:
        body = await join_body(self.session, event_id, fan, self.base)
        status, place = await self.json(
            "POST", f"/api/events/{event_id}/queue", json=body, headers=fan
        )
        assert status == 200, place
        return str(place["queue_id"])

    async def place(self, fan: Headers, queue_id: str) -> dict[str, Any]:
        status, place = await self.json("GET", f"/api/queue/{queue_id}", headers=fan)
        assert status == 200, place
        result: dict[str, Any] = place
        return result

    async def admitted(self, fan: Headers, queue_id: str) -> Headers:
        """The fan's headers with its access token, once it is admitted."""

        async def token() -> str | None:
            place = await self.place(fan, queue_id)
            return str(place["access_token"]) if place["state"] == "admitted" else None

        found = await eventually(token, f"{queue_id} admitted", within=20)
        return {**fan, "Authorization": f"Bearer {found}"}

    async def fan(self, event_id: str) -> Headers:
        """A new visitor, joined and admitted."""
        fan = visitor()
        return await self.admitted(fan, await self.join(event_id, fan))

    async def order(self, event_id: str, fan: Headers, seats: list[str], email: str) -> Any:
        """Hold these seats and check out: the pending order."""
        status, hold = await self.json(
            "POST", f"/api/events/{event_id}/holds", json={"seats": seats}, headers=fan
        )
        assert status == 201, hold
        status, order = await self.json(
            "POST", f"/api/holds/{hold['hold_id']}/checkout", json={"email": email}, headers=fan
        )  # fmt: skip
        assert status == 201 and order["status"] == "pending", order
        return order

    async def buy(self, event_id: str, fan: Headers, seats: list[str], email: str) -> Any:
        """Hold, check out and pay with the dev provider's test card: the paid order."""
        order = await self.order(event_id, fan, seats, email)
        status, paid = await self.json(
            "POST", f"/api/orders/{order['order_id']}/pay", json={"card": CARD_OK}, headers=fan
        )
        assert status == 200 and paid["status"] == "paid", paid
        return paid


async def outbox_published(pg: asyncpg.Pool) -> bool:
    left = await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return bool(left == 0)


async def stream_read_by(redis: Any, event_id: str, groups: set[str]) -> bool:
    """Every one of these consumer groups has been handed the last entry of the event's
    reservations stream (a process of that role reads the live events' streams)."""
    stream = EventKeys(event_id).reservations
    last = await redis.xrevrange(stream, count=1)
    if not last:
        return False
    info = {g["name"]: g["last-delivered-id"] for g in await redis.xinfo_groups(stream)}
    return all(info.get(group.encode()) == last[0][0] for group in groups)


async def sold_seats(pg: asyncpg.Pool, event_id: str) -> dict[str, str]:
    rows = await pg.fetch("SELECT seat_id, order_id FROM sold_seats WHERE event_id = $1", event_id)
    return {r["seat_id"]: r["order_id"] for r in rows}


@pytest.mark.slow
async def test_each_role_killed_mid_sale(
    settings: Settings, redis: Any, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    async with running(settings, tmp_path) as (roles, web):
        for role in ROLES:  # every role answers its health checks
            async with web.session.get(f"{roles.url(role)}/readyz") as r:
                assert r.status == 200, role
            async with web.session.get(f"{roles.url(role)}/metrics") as r:
                assert f'boxoffice_process_roles{{role="{role}"}} 1.0' in await r.text()
        event_id = await web.create_event()

        # Admission killed: the web still takes joins; nobody is admitted until it is back.
        roles.kill("admission")
        fan = visitor()
        queue_id = await web.join(event_id, fan)
        assert (await web.place(fan, queue_id))["state"] == "waiting"
        roles.restart("admission")
        auth = await web.admitted(fan, queue_id)

        # Relay killed: a sale still completes (PostgreSQL decides in the request); the
        # outbox waits, and the relay publishes it when it is back.
        roles.kill("relay")
        await web.buy(event_id, auth, ["A-1-1"], "fan@example.com")
        waiting = await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        assert waiting == 1
        roles.restart("relay")
        await eventually(
            lambda: outbox_published(pg), "the outbox published once the relay is back", within=20
        )

        # Web killed: the other roles keep running (their health says so); back, it serves.
        roles.kill("web")
        for role in ("admission", "relay", "payments", "notifier"):
            async with web.session.get(f"{roles.url(role)}/readyz") as r:
                assert r.status == 200, role
        roles.restart("web")
        status, seats = await web.json("GET", f"/api/events/{event_id}/seats")
        assert status == 200
        sold = [s for sec in seats["sections"] for row in sec.get("rows") or [] for s in row["seats"] if s["status"] == "sold"]  # fmt: skip
        assert [s["id"] for s in sold] == ["A-1-1"]


# ---- notifier ---------------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    """A real SMTP server (aiosmtpd, in its own thread) and its URL."""
    port = free_port()
    with SmtpServer(port) as inbox:
        yield inbox, f"smtp://127.0.0.1:{port}"


async def mails_sent(pg: asyncpg.Pool, order_ids: list[str]) -> list[asyncpg.Record] | None:
    """The confirmation rows of these orders once every one is sent, else None."""
    rows = await pg.fetch(
        "SELECT order_id, state, attempts FROM mails WHERE kind = 'confirmation'"
        " AND order_id = ANY($1::text[])",
        order_ids,
    )
    done = len(rows) == len(order_ids) and all(r["state"] == "sent" for r in rows)
    return list(rows) if done else None


@pytest.mark.slow
async def test_notifier_killed_mid_sale_mails_each_order_once_when_back(
    settings: Settings,
    redis: Any,
    pg: asyncpg.Pool,
    tmp_path: Path,
    smtp: tuple[Inbox, str],
) -> None:
    """One order is mailed while the notifier runs; it is killed and two more sell (the web,
    admission and relay roles go on: paid, published); back, it mails those two — and none of
    the three twice."""
    inbox, smtp_url = smtp
    mailing = msgspec.structs.replace(settings, smtp_url=smtp_url)
    async with running(mailing, tmp_path) as (roles, web):
        event_id = await web.create_event()
        first = await web.buy(event_id, await web.fan(event_id), ["A-1-1"], "one@example.com")
        await eventually(
            lambda: mails_sent(pg, [first["order_id"]]), "the first mail sent", within=30
        )
        # The relay and the notifier, each a process of that role alone, read the sale from the
        # stream (not only through the sweeps): each knows the live events without an
        # admission step of its own.
        await eventually(
            lambda: stream_read_by(redis, event_id, {"seat-sync", "notify"}),
            "the sale read from the stream by the relay and the notifier",
            within=20,
        )

        roles.kill("notifier")
        later = [
            await web.buy(event_id, await web.fan(event_id), [seat], f"fan{n}@example.com")
            for n, seat in enumerate(["A-2-1", "A-2-2"])
        ]
        await eventually(lambda: outbox_published(pg), "the sales published", within=20)
        assert [m["To"] for _, m in inbox.received] == ["one@example.com"]

        roles.restart("notifier")
        order_ids = [first["order_id"], *(o["order_id"] for o in later)]
        rows = await eventually(
            lambda: mails_sent(pg, order_ids), "every mail sent after the restart", within=60
        )
        assert rows is not None and {r["attempts"] for r in rows} == {1}
        for order in [first, *later]:
            assert len(inbox.of("confirmation", order["order_id"])) == 1, order["order_id"]
        assert sorted(m["To"] for _, m in inbox.received) == [
            "fan0@example.com",
            "fan1@example.com",
            "one@example.com",
        ]


# ---- payments ---------------------------------------------------------------------------------


@pytest.fixture
async def stripe_api() -> AsyncIterator[FakeStripe]:
    fake = FakeStripe(SECRET_KEY)
    await fake.start()
    yield fake
    await fake.close()


async def report(fake: FakeStripe, to: Web, intent_id: str) -> str:
    """Stripe delivering a signed report that the intent is authorised to one role's process:
    what was done."""
    payload = fake.event(AUTHORISED, intent_id)
    headers = {
        "Stripe-Signature": fake.sign(payload, WEBHOOK_SECRET),
        "Content-Type": "application/json",
    }
    status, body = await to.json("POST", "/api/webhooks/stripe", data=payload, headers=headers)
    assert status == 200, body
    return str(body["result"])


async def orders_of(pg: asyncpg.Pool, event_id: str) -> dict[str, tuple[str, list[str], int]]:
    """order id -> (status, its seats, its tickets)."""
    rows = await pg.fetch(
        "SELECT o.id, o.status, array(SELECT l.seat_id FROM order_lines l WHERE l.order_id = o.id"
        " ORDER BY l.seat_id) AS seats,"
        " (SELECT count(*) FROM tickets t WHERE t.order_id = o.id) AS tickets"
        " FROM orders o WHERE o.event_id = $1",
        event_id,
    )
    return {r["id"]: (r["status"], list(r["seats"]), r["tickets"]) for r in rows}


@pytest.mark.slow
async def test_payments_killed_mid_sale_catches_up_when_back(
    settings: Settings,
    redis: Any,
    pg: asyncpg.Pool,
    tmp_path: Path,
    stripe_api: FakeStripe,
) -> None:
    """While the payments role is down, fans still join, are admitted, hold and check out, and
    a Stripe report reaching a web process is confirmed there; what only the payments role does
    waits: (a) Stripe's report to the payments endpoint (it retries), (b) the expiry of an order
    whose payment window passed, (c) a capture Stripe refused once. Back, it does each: (a) is
    paid and captured, (b) expired and its intent cancelled, (c) captured — and the seat of
    the expired order, held and paid for by another fan meanwhile, is sold once."""
    fake = stripe_api
    paying = msgspec.structs.replace(
        settings,
        stripe_secret_key=SECRET_KEY,
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_publishable_key=PUBLISHABLE_KEY,
        stripe_api_base=fake.url,
    )
    async with running(paying, tmp_path) as (roles, web):
        event_id = await web.create_event()
        roles.kill("payments")

        # (a) Fan A pays; Stripe cannot reach the payments endpoint.
        a = await web.order(event_id, await web.fan(event_id), ["A-1-1"], "a@example.com")
        intent_a = fake.intent_for_order(a["order_id"])["id"]
        fake.authorize(intent_a, "4242424242424242")
        payments = Web(web.session, roles.url("payments"))
        with pytest.raises(aiohttp.ClientConnectionError):
            await report(fake, payments, intent_a)

        # (b) Fan B checks out and never pays; its hold and payment window pass.
        b = await web.order(event_id, await web.fan(event_id), ["A-1-2"], "b@example.com")
        intent_b = fake.intent_for_order(b["order_id"])["id"]
        past = int(time.time() * 1000) - 60_000
        expired = await redis.zadd(
            EventKeys(event_id).holdexp, {b["hold_id"]: past}, xx=True, ch=True
        )
        assert expired == 1
        await pg.execute(
            "UPDATE orders SET expires_at = now() - interval '1 hour' WHERE id = $1", b["order_id"]
        )

        # (c) Fan C holds B's seat (free again in Redis), pays; the report reaches a web
        # process, which confirms the sale; Stripe refuses the capture that follows.
        c = await web.order(event_id, await web.fan(event_id), ["A-1-2"], "c@example.com")
        intent_c = fake.intent_for_order(c["order_id"])["id"]
        fake.authorize(intent_c, "5555555555554444")
        fake.outage["capture"] = 500
        assert await report(fake, web, intent_c) == "paid"
        assert fake.captures(intent_c) and fake.intents[intent_c]["status"] == "requires_capture"
        orders = await orders_of(pg, event_id)
        assert orders[a["order_id"]][0] == "pending" and orders[b["order_id"]][0] == "pending"
        assert orders[c["order_id"]] == ("paid", ["A-1-2"], 1)
        fake.outage.clear()

        roles.restart("payments")
        # (a) Stripe's next attempt reaches the payments role.
        assert await report(fake, payments, intent_a) == "paid"

        async def caught_up() -> bool:
            statuses = {i: fake.intents[i]["status"] for i in (intent_a, intent_b, intent_c)}
            return statuses == {
                intent_a: "succeeded",
                intent_b: "canceled",
                intent_c: "succeeded",
            }

        await eventually(caught_up, "captures and the expiry done by the payments role", 40)
        orders = await orders_of(pg, event_id)
        assert orders == {
            a["order_id"]: ("paid", ["A-1-1"], 1),
            b["order_id"]: ("expired", ["A-1-2"], 0),
            c["order_id"]: ("paid", ["A-1-2"], 1),
        }
        # Every paid order has its seats, and no seat is sold twice.
        assert await sold_seats(pg, event_id) == {
            "A-1-1": a["order_id"],
            "A-1-2": c["order_id"],
        }
        assert {r.idempotency_key for r in fake.cancels()} == {f"boxoffice-void-{b['order_id']}"}
        status, seats = await web.json("GET", f"/api/events/{event_id}/seats")
        assert status == 200
        states = {s["id"]: s["status"] for sec in seats["sections"] for row in sec.get("rows") or [] for s in row["seats"]}  # fmt: skip
        assert (states["A-1-1"], states["A-1-2"]) == ("sold", "sold")
