"""Locust users for an on-sale: fans who queue and buy, and idle crowds who only wait.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 --event demo FanUser
    BOXOFFICE_SHAPE=flash locust -f loadtest/locustfile.py --headless -u 300 --run-time 2m ...

`FanUser` behaves like the fan's browser: solve the event's bot challenge (the `altcha` Python
library, loadtest/solver.py, where the page uses the widget) and join the queue with it (the
`bo_visitor` cookie is kept by the HTTP session and passed to the websocket), wait on the websocket until admitted, fetch the
seat map, hold random free seats (or a standing quantity) with the access token, retrying a
bounded number of times on 409, check out, pay with the dev card, then idle until the run ends
(so a shape's user count is the number of arrivals). `WaiterUser` joins and only keeps its
websocket open, pinging every 20 s; when admitted it leaves, freeing its slot.

Every websocket message is reported as a request of type "WS" named after its type; the
admission is reported as "admitted" with the time since joining as its response time.
`BOXOFFICE_SHAPE` picks a load shape from loadtest/shapes.py (flash, prequeue, trickle).

Each user keeps the waiting page's ETA as the page does (loadtest/eta.py) and, when admitted,
logs the ETA its page showed at half its wait beside the real admission (the report's "ETA
error at half-way")."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import websocket
from locust import HttpUser, between, events, task

try:
    from loadtest import shapes, solver
    from loadtest.eta import Estimate, Predictions
except ImportError:  # run as `locust -f loadtest/locustfile.py` without the repo on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from loadtest import shapes, solver
    from loadtest.eta import Estimate, Predictions

DEV_CARD = "4242424242424242"
PING_EVERY_S = 20.0
POLL_IF_SILENT_S = 30.0
MAX_RECONNECTS = 5
MAX_HOLD_ATTEMPTS = 4
MAX_ATTEMPTS = 8  # page load and join, on 429/503
CHALLENGE_TRIES = 3  # fresh bot challenges per join, as the waiting page
MAX_RETRY_AFTER_S = 5.0
SEATS_PER_ORDER = (1, 4)

_log_lock = threading.Lock()


def _options(parser: Any) -> None:
    group = parser.add_argument_group("Boxoffice")
    group.add_argument(
        "--event",
        default=os.environ.get("BOXOFFICE_EVENT", "demo"),
        help="event id to queue for (env BOXOFFICE_EVENT; default demo)",
    )
    group.add_argument(
        "--max-wait",
        type=float,
        default=float(os.environ.get("BOXOFFICE_MAX_WAIT", "900")),
        help="longest a user waits in the queue, seconds (env BOXOFFICE_MAX_WAIT)",
    )
    group.add_argument(
        "--admissions-log",
        default=os.environ.get("BOXOFFICE_ADMISSIONS_LOG", ""),
        help="append one JSON line per admission here (queue_id, ticket, wait)",
    )


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]

_shape_name = os.environ.get("BOXOFFICE_SHAPE", "").strip().lower()
if _shape_name and _shape_name != "none":
    if _shape_name not in shapes.SHAPES:
        raise SystemExit(f"BOXOFFICE_SHAPE: one of {', '.join(shapes.SHAPES)} or none")
    LoadShape = shapes.SHAPES[_shape_name]


def _ms_since(start: float) -> float:
    return (time.monotonic() - start) * 1000


class Queued:
    """One place in the queue, followed over the websocket (shared by both user kinds)."""

    def __init__(self, user: HttpUser) -> None:
        self.user = user
        opts = user.environment.parsed_options
        self.event_id: str = getattr(opts, "event", None) or "demo"
        self.max_wait: float = float(getattr(opts, "max_wait", None) or 900)
        self.log_path: str = getattr(opts, "admissions_log", None) or ""
        self.queue_id: str | None = None
        self.ticket: int | None = None
        self.access_token: str | None = None
        self.state = "new"
        self.joined_at = 0.0
        self.ws: websocket.WebSocket | None = None
        self.last_tick = 0.0
        self.ping_sent = 0.0
        self.estimate = Estimate()  # what the fan's page would show
        self.predictions = Predictions()

    # ---- reporting ----------------------------------------------------------------------------

    def fire(
        self, name: str, started: float, length: int = 0, exc: Exception | None = None
    ) -> None:
        self.user.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=_ms_since(started),
            response_length=length,
            exception=exc,
            context={"event": self.event_id},
        )

    # ---- joining ------------------------------------------------------------------------------

    def visit(self) -> bool:
        """Load the event page first, like a browser: its answer sets the bo_visitor cookie, so
        the join is limited per visitor and not per address (see nginx/)."""
        client = self.user.client
        for attempt in range(MAX_ATTEMPTS):
            with client.get(
                f"/api/events/{self.event_id}", name="/api/events/[id]", catch_response=True
            ) as r:
                if r.status_code in (429, 503):
                    r.success()  # back-pressure is an answer, not a failure
                    _backoff(r.headers, attempt)
                    continue
                if r.status_code != 200:
                    r.failure(f"event: {r.status_code} {r.text[:200]}")
                    return False
            return True
        return False

    def solution(self) -> str | None:
        """Fetch a bot challenge and solve it with the Python library, as the waiting page's
        widget does before joining; the solve is reported as a request of type "POW" named
        after the challenge's level (its response time is the solver's CPU time)."""
        client = self.user.client
        path = f"/api/events/{self.event_id}/challenge"
        for attempt in range(MAX_ATTEMPTS):
            with client.get(path, name="/api/events/[id]/challenge", catch_response=True) as r:
                if r.status_code in (429, 503):
                    r.success()
                    _backoff(r.headers, attempt)
                    continue
                if r.status_code != 200:
                    r.failure(f"challenge: {r.status_code} {r.text[:200]}")
                    return None
                challenge = r.json()
            solved = solver.solve(challenge)
            self.user.environment.events.request.fire(
                request_type="POW",
                name=f"solve level {solved.level}",
                response_time=solved.cpu_s * 1000,
                response_length=0,
                exception=None,
                context={"event": self.event_id},
            )
            return solved.payload
        return None

    def join(self) -> bool:
        """POST the join with a solved challenge; True when the visitor has a place (waiting,
        prequeue or admitted). A refused solution (expired while backing off) gets a fresh one,
        at most CHALLENGE_TRIES times."""
        if not self.visit():
            return False
        client = self.user.client
        path = f"/api/events/{self.event_id}/queue"
        payload: str | None = None
        solved = 0
        for attempt in range(MAX_ATTEMPTS):
            if payload is None:
                if solved == CHALLENGE_TRIES:
                    break
                payload, solved = self.solution(), solved + 1
                if payload is None:
                    return False
            self.joined_at = time.monotonic()
            with client.post(
                path, json={"altcha": payload}, name="/api/events/[id]/queue", catch_response=True
            ) as r:
                if r.status_code in (429, 503):
                    r.success()
                    _backoff(r.headers, attempt)
                    continue
                if r.status_code == 403 and _error(r) in ("challenge_required", "challenge_failed"):
                    r.success()  # answered as the page does: a fresh challenge
                    payload = None
                    continue
                if r.status_code != 200:
                    r.failure(f"join: {r.status_code} {r.text[:200]}")
                    return False
                body = r.json()
            self.queue_id = body.get("queue_id")
            self.state = str(body.get("state"))
            self.ticket = body.get("ticket")
            self.shown(body, None)
            if self.state == "admitted":
                self.access_token = body.get("access_token")
                self._admitted(self.joined_at)
            return self.queue_id is not None
        self.user.environment.events.request.fire(
            request_type="POST",
            name="/api/events/[id]/queue",
            response_time=0,
            response_length=0,
            exception=RuntimeError(
                f"join refused after {MAX_ATTEMPTS} tries and {solved} solved challenges"
            ),
            context={},
        )
        return False

    def ws_url(self) -> str:
        base = self.user.host or ""
        scheme = "wss" if base.startswith("https") else "ws"
        return f"{scheme}{base[base.index(':') :]}/api/queue/{self.queue_id}/ws"

    def connect(self) -> bool:
        cookie = self.user.client.cookies.get("bo_visitor")
        started = time.monotonic()
        try:
            ws = websocket.create_connection(
                self.ws_url(), timeout=10, cookie=f"bo_visitor={cookie}" if cookie else None
            )
        except Exception as exc:
            self.fire("connect", started, exc=exc)
            return False
        ws.settimeout(1.0)
        self.ws = ws
        self.fire("connect", started)
        return True

    def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close(timeout=1)
            self.ws = None

    def leave(self) -> None:
        if self.queue_id is not None:
            self.user.client.delete(f"/api/queue/{self.queue_id}", name="/api/queue/[id]")

    # ---- waiting ------------------------------------------------------------------------------

    def wait(self, until_admitted: bool = True) -> str:
        """Follow the websocket until admitted, closed or `max_wait`; the final state."""
        deadline = self.joined_at + self.max_wait
        reconnects = 0
        last_ping = last_msg = time.monotonic()
        while self.state not in ("admitted", "closed", "sold_out", "expired", "failed"):
            now = time.monotonic()
            if now >= deadline:
                self.state = "gave_up"
                break
            if self.ws is None:
                if reconnects > MAX_RECONNECTS:
                    self.state = "failed"
                    break
                if reconnects:
                    time.sleep(min(10.0, 0.5 * 2**reconnects) * random.uniform(0.5, 1.0))
                reconnects += 1
                if not self.connect():
                    continue
                last_ping = last_msg = time.monotonic()
            assert self.ws is not None
            if now - last_ping >= PING_EVERY_S:
                last_ping = self.ping_sent = now
                try:
                    self.ws.send('{"type":"ping"}')
                except Exception:
                    self.close()
                    continue
            if now - last_msg >= POLL_IF_SILENT_S:
                last_msg = now
                self.poll()
                continue
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                self.close()
                continue
            if not raw:  # closed by the server
                self.close()
                continue
            last_msg = time.monotonic()
            self.on_message(raw)
        self.close()
        return self.state

    def on_message(self, raw: str | bytes) -> None:
        """Report one message. Response times: "admitted" and "closed:*" since joining, "tick"
        since the previous tick (the broadcast cadence), "pong" since the ping; others 0."""
        now = time.monotonic()
        try:
            msg = json.loads(raw)
            kind = str(msg.get("type"))
        except (ValueError, AttributeError) as exc:
            self.fire("bad_frame", now, len(raw), exc)
            return
        if kind == "admitted":
            self.access_token = msg.get("access_token")
            self.state = "admitted"
            self._admitted(self.joined_at)
        elif kind == "tick":
            self.fire("tick", self.last_tick or now, len(raw))
            self.last_tick = now
            self.estimate.tick(
                int(msg.get("admitted_total") or 0),
                msg.get("rate_per_min"),
                bool(msg.get("paused")),
            )
            self.predictions.add(now - self.joined_at, self.estimate.eta_s())
            if self.state == "prequeue" and msg.get("state") == "on_sale":
                self.poll()  # the page asks for its place when the sale opens
        elif kind == "pong":
            self.fire("pong", self.ping_sent or now, len(raw))
        elif kind == "status":
            self.state = str(msg.get("state") or self.state)
            if msg.get("ticket") is not None:
                self.ticket = int(msg["ticket"])
            self.shown(msg, int(msg.get("admitted_total") or 0))
            self.fire("status", now, len(raw))
        elif kind == "closed":
            self.state = "closed"
            self.fire(f"closed:{msg.get('reason')}", self.joined_at, len(raw))
        elif kind == "error":
            self.fire("error", now, len(raw), RuntimeError(str(msg.get("detail"))))
        else:
            self.fire(kind, now, len(raw))

    def poll(self) -> None:
        """The polling fallback, used when the socket has been silent for a while."""
        if self.queue_id is None:
            return
        r = self.user.client.get(f"/api/queue/{self.queue_id}", name="/api/queue/[id]")
        if r.status_code != 200:
            return
        body = r.json()
        if body.get("state") in ("prequeue", "waiting"):
            self.state = str(body["state"])
            self.shown(body, None)
        if body.get("state") == "admitted" and self.state != "admitted":
            self.access_token = body.get("access_token")
            self.state = "admitted"
            self._admitted(self.joined_at)
        elif body.get("state") in ("closed", "sold_out", "expired"):
            self.state = str(body["state"])

    def shown(self, status: dict[str, Any], admitted_total: int | None) -> None:
        """An exact status (join, poll or websocket): the page redraws its estimate."""
        paused = status.get("paused")
        self.estimate.status(
            str(status.get("state")),
            status.get("position"),
            admitted_total,
            status.get("rate_per_min"),
            paused if isinstance(paused, bool) else None,
        )
        self.predictions.add(time.monotonic() - self.joined_at, self.estimate.eta_s())

    def _admitted(self, since: float) -> None:
        self.fire("admitted", since)
        if self.log_path:
            record: dict[str, Any] = {
                "queue_id": self.queue_id,
                "ticket": self.ticket,
                "wait_ms": round(_ms_since(since)),
                "at": time.time(),
                "user": type(self.user).__name__,
            }
            admitted_at = time.monotonic() - self.joined_at
            half = self.predictions.at_half_way(admitted_at)
            if half is not None:  # the ETA the page showed at half its wait in line
                record.update(
                    line_from_s=round(self.predictions.said[0][0], 3),
                    half_at_s=round(half[0], 3),
                    half_eta_s=half[1],
                    admitted_at_s=round(admitted_at, 3),
                )
            line = json.dumps(record)
            with _log_lock, open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def _error(response: Any) -> str:
    """The `error` code of a JSON error answer, or ""."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


def _backoff(headers: Any, attempt: int) -> None:
    """Sleep as Retry-After says (NGINX's 429 says nothing: back off exponentially), with
    jitter, at most MAX_RETRY_AFTER_S."""
    try:
        wait = float(headers.get("Retry-After", ""))
    except ValueError:
        wait = 0.5 * 2**attempt
    time.sleep(min(MAX_RETRY_AFTER_S, max(0.2, wait)) * random.uniform(0.7, 1.3))


class QueuedUser(HttpUser):
    """A visitor with one place in the queue, who goes through it once."""

    abstract = True
    wait_time = between(1, 2)

    def on_start(self) -> None:
        self.place = Queued(self)
        self.done = False

    def on_stop(self) -> None:
        self.place.close()

    def once(self) -> bool:
        """True the first time; after that, idle a while (until the run ends) and say False."""
        if self.done:
            time.sleep(5)  # arrived, bought or gave up: idle until the run ends
            return False
        self.done = True
        return True


class FanUser(QueuedUser):
    """A fan's browser: queue, wait, hold seats, check out, pay; then idle."""

    weight = 4

    @task
    def journey(self) -> None:
        if not self.once():
            return
        place = self.place
        if not place.join():
            return
        if place.state != "admitted" and place.wait() != "admitted":
            return
        if place.access_token:
            self.buy(place)

    def buy(self, place: Queued) -> None:
        event_id = place.event_id
        auth = {"Authorization": f"Bearer {place.access_token}"}
        avoid: set[str] = set()
        hold: dict[str, Any] | None = None
        for attempt in range(MAX_HOLD_ATTEMPTS):
            seat_map = self.client.get(
                f"/api/events/{event_id}/seats", name="/api/events/[id]/seats"
            )
            if seat_map.status_code != 200:
                return
            request = pick(seat_map.json(), avoid)
            if request is None:
                return  # nothing left to pick
            with self.client.post(
                f"/api/events/{event_id}/holds",
                json=request,
                headers=auth,
                name="/api/events/[id]/holds",
                catch_response=True,
            ) as r:
                if r.status_code == 201:
                    hold = r.json()
                    break
                if r.status_code == 409:
                    r.success()  # lost a race for a seat: an expected answer under load
                    avoid.update(r.json().get("seats") or request.get("seats") or [])
                    continue
                if r.status_code in (429, 503):
                    r.success()
                    _backoff(r.headers, attempt)
                    continue
                r.failure(f"hold: {r.status_code} {r.text[:200]}")
                return
        if hold is None:
            return
        with self.client.post(
            f"/api/holds/{hold['hold_id']}/checkout",
            json={"email": f"fan-{random.getrandbits(40):x}@example.com"},
            name="/api/holds/[id]/checkout",
            catch_response=True,
        ) as r:
            if r.status_code != 201:
                r.failure(f"checkout: {r.status_code} {r.text[:200]}")
                return
            order = r.json()
        with self.client.post(
            f"/api/orders/{order['order_id']}/pay",
            json={"card": DEV_CARD},
            name="/api/orders/[id]/pay",
            catch_response=True,
        ) as r:
            if r.status_code != 200 or r.json().get("status") != "paid":
                r.failure(f"pay: {r.status_code} {r.text[:200]}")


def pick(seat_map: dict[str, Any], avoid: set[str]) -> dict[str, Any] | None:
    """A hold request for random free seats of one section, or a standing quantity."""
    want = random.randint(*SEATS_PER_ORDER)
    options: list[dict[str, Any]] = []
    for section in seat_map.get("sections") or []:
        if section.get("kind") == "standing":
            if int(section.get("available") or 0) > 0:
                options.append(section)
        elif any(
            s.get("status") == "free" and s.get("id") not in avoid
            for row in section.get("rows") or []
            for s in row.get("seats") or []
        ):
            options.append(section)
    if not options:
        return None
    section = random.choice(options)
    if section.get("kind") == "standing":
        return {"section": section["id"], "quantity": min(want, int(section["available"]))}
    free = [
        s["id"]
        for row in section.get("rows") or []
        for s in row.get("seats") or []
        if s.get("status") == "free" and s.get("id") not in avoid
    ]
    return {"seats": random.sample(free, min(want, len(free)))}


class WaiterUser(QueuedUser):
    """An idle member of a large crowd: join, hold the websocket open, ping every 20 s."""

    weight = 1

    @task
    def wait_in_line(self) -> None:
        if not self.once():
            return
        if not self.place.join():
            return
        if self.place.state == "admitted" or self.place.wait() == "admitted":
            self.place.leave()  # not here to buy: give the slot back
