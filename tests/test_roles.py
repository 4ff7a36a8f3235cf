"""Process roles: the parts of the service run as separate processes (web, admission, relay,
notifier, payments) from one codebase. A role killed mid-sale leaves the others working, and
it catches up when it comes back."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest

from server.core.settings import ROLES, Settings
from server.runtime.processes import stop_process, wait_port
from server.runtime.stack import Stack
from server.runtime.up import parse_layout

from .helpers import ADMIN, event_body, eventually, join_body, visitor

CARD_OK = "4242424242424242"


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


class Web:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, **kw) as r:
            return r.status, await r.json()


@pytest.mark.slow
async def test_each_role_killed_mid_sale(
    settings: Settings, redis: Any, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    stack = Stack(
        msgspec.structs.replace(settings, log_level="error"), tmp_path, layout=list(ROLES)
    )
    index = {role: i for i, role in enumerate(stack.layout)}

    def restart(role: str) -> None:
        i = index[role]
        stack.workers[i] = stack.start_worker(i)
        wait_port("127.0.0.1", stack.worker_ports[i], 30, stack.workers[i])

    stack.start()
    try:
        async with aiohttp.ClientSession() as session:
            web = Web(session, f"http://127.0.0.1:{stack.worker_ports[index['web']]}")
            for i, port in enumerate(stack.worker_ports):  # every role answers its health checks
                async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                    assert r.status == 200, stack.layout[i]
                async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert (
                        f'boxoffice_process_roles{{role="{stack.layout[i]}"}} 1.0' in await r.text()
                    )
            status, ev = await web.json(
                "POST", "/api/admin/events", json=event_body(), headers=ADMIN
            )
            assert status == 201, ev
            event_id = ev["id"]

            async def join(fan: dict[str, str]) -> str:
                body = await join_body(session, event_id, fan, web.base)
                status, place = await web.json(
                    "POST", f"/api/events/{event_id}/queue", json=body, headers=fan
                )
                assert status == 200, place
                return str(place["queue_id"])

            async def state(fan: dict[str, str], queue_id: str) -> str:
                _, place = await web.json("GET", f"/api/queue/{queue_id}", headers=fan)
                return str(place["state"])

            # Admission killed: the web still takes joins; nobody is admitted until it is back.
            stop_process(stack.workers[index["admission"]], signal.SIGKILL, 5)
            fan = visitor()
            queue_id = await join(fan)
            assert await state(fan, queue_id) == "waiting"
            restart("admission")

            async def admitted() -> bool:
                return await state(fan, queue_id) == "admitted"

            await eventually(admitted, "admitted once the admission role is back", within=20)

            # Relay killed: a sale still completes (PostgreSQL decides in the request); the
            # outbox waits, and the relay publishes it when it is back.
            stop_process(stack.workers[index["relay"]], signal.SIGKILL, 5)
            _, place = await web.json("GET", f"/api/queue/{queue_id}", headers=fan)
            auth = {**fan, "Authorization": f"Bearer {place['access_token']}"}
            status, hold = await web.json(
                "POST", f"/api/events/{event_id}/holds", json={"seats": ["A-1-1"]}, headers=auth
            )
            assert status == 201, hold
            status, order = await web.json(
                "POST", f"/api/holds/{hold['hold_id']}/checkout",
                json={"email": "fan@example.com"}, headers=fan,
            )  # fmt: skip
            assert status == 201, order
            status, paid = await web.json(
                "POST", f"/api/orders/{order['order_id']}/pay", json={"card": CARD_OK}, headers=fan
            )
            assert status == 200 and paid["status"] == "paid", paid
            waiting = await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            assert waiting == 1
            restart("relay")

            async def published() -> bool:
                left = await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                return bool(left == 0)

            await eventually(published, "the outbox published once the relay is back", within=20)

            # Web killed: the other roles keep running (their health says so); back, it serves.
            stop_process(stack.workers[index["web"]], signal.SIGKILL, 5)
            for role in ("admission", "relay", "payments", "notifier"):
                port = stack.worker_ports[index[role]]
                async with session.get(f"http://127.0.0.1:{port}/readyz") as r:
                    assert r.status == 200, role
            restart("web")
            status, seats = await web.json("GET", f"/api/events/{event_id}/seats")
            assert status == 200
            sold = [s for sec in seats["sections"] for row in sec.get("rows") or [] for s in row["seats"] if s["status"] == "sold"]  # fmt: skip
            assert [s["id"] for s in sold] == ["A-1-1"]
    finally:
        stack.stop()
