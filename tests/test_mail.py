"""Mail (API.md "Mail"): orders paid through the real app reach a real SMTP server (aiosmtpd,
started here on 127.0.0.1) once each — content, QR images, the PDF, the .ics — under duplicate
stream delivery, several consumers, a restart, and an SMTP server that is down and comes back;
without BOXOFFICE_SMTP_URL (dev) they land as .eml files. Plus the pure rules, table-driven."""

from __future__ import annotations

import asyncio
import contextlib
import email
import io
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from html import escape
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import icalendar
import msgspec
import pypdf
import pytest
from aiohttp import DummyCookieJar
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from redis.asyncio import Redis

from server.booking.ledger import OrderRow, TicketRow
from server.booking.tickets import ticket_png
from server.core.keys import EventKeys
from server.core.metrics import METRICS
from server.core.settings import (
    SETTINGS,
    Settings,
    SettingsError,
    SmtpTarget,
    from_env,
    smtp_target,
)
from server.notify import compose, documents, ledger
from server.notify import transport as transport_module
from server.notify.mailer import MAILER, SEND_CONCURRENCY, Mailer
from server.notify.transport import (
    FolderTransport,
    SmtpTransport,
    is_permanent,
    make_transport,
    retry_delay,
)
from server.notify.views import money, order_link, order_view, place, venue_zone
from server.runtime.app import create_app
from server.runtime.prepare import banner
from server.store import db
from server.waiting.admission import ADMISSION

from .helpers import (
    ADMIN,
    Client,
    admitted_fan,
    checkout,
    create_event,
    eventually,
    need,
    read_qr,
    visitor,
)

BASE = "https://tickets.example.com"
SENDER = "Boxoffice Tickets <tickets@example.com>"


# ---- a real SMTP server ------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler: keeps every message it accepted, with its envelope recipients."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"box", b"p@ss")
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    def of(self, kind: str, ref: str) -> list[EmailMessage]:
        return [m for _, m in self.received if f"<{kind}.{ref}@" in str(m["Message-ID"])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SmtpServer:
    def __init__(self, port: int, inbox: Inbox | None = None, **kwargs: Any) -> None:
        self.inbox = inbox or Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port, **kwargs)

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self.inbox

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def inbox(smtp_port: int) -> Iterator[Inbox]:
    with SmtpServer(smtp_port) as box:
        yield box


@pytest.fixture
def settings(base_settings: Settings, smtp_port: int) -> Settings:
    return msgspec.structs.replace(
        base_settings,
        smtp_url=f"smtp://127.0.0.1:{smtp_port}",
        mail_from=SENDER,
        public_url=BASE + "/",
    )


# ---- paying through the real app -------------------------------------------------------------


async def paid_order(
    client: Client, event_id: str, body: dict[str, Any], email_to: str = "fan@example.com"
) -> dict[str, Any]:
    fan = await admitted_fan(client, event_id)
    status, held = await fan.hold(event_id, body)
    assert status == 201, held
    status, order = await fan.checkout(held["hold_id"], email_to)
    assert status == 201, order
    status, paid = await fan.pay(order["order_id"])
    assert status == 200 and paid["status"] == "paid", paid
    result: dict[str, Any] = paid
    return result


def expected_link(order: dict[str, Any]) -> str:
    """The order's own page with its key once orders carry one; the event page until then."""
    if order.get("order_key"):
        return f"{BASE}/orders/{order['order_id']}?key={order['order_key']}"
    return f"{BASE}/e/{order['event_id']}"


async def mail_row(pg: asyncpg.Pool, order_id: str) -> asyncpg.Record | None:
    return await pg.fetchrow(
        "SELECT state, attempts, last_error, message_id FROM mails"
        " WHERE order_id = $1 AND kind = 'confirmation'",
        order_id,
    )


async def one_mail(inbox: Inbox, order_id: str) -> EmailMessage:
    found = await eventually(
        lambda: asyncio.sleep(0, inbox.of("confirmation", order_id)),
        f"the confirmation of {order_id}",
        within=30,
    )
    assert len(found) == 1, found
    return found[0]


def page_text(page: pypdf.PageObject) -> str:
    return " ".join(page.extract_text().split())


def parts(message: EmailMessage) -> dict[str, Any]:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert isinstance(plain, EmailMessage) and isinstance(html, EmailMessage)
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    attachments = {a.get_content_type(): a for a in message.iter_attachments()}
    return {
        "text": plain.get_content(),
        "html": html.get_content(),
        "images": images,
        "pdf": attachments["application/pdf"].get_content(),
        "ics": attachments["text/calendar"].get_content(),
    }


# ---- content -----------------------------------------------------------------------------------


async def test_a_paid_order_is_mailed_with_its_link_codes_qr_images_pdf_and_calendar(
    client: Client, inbox: Inbox
) -> None:
    event = await create_event(client, name="Rock & <Roll> Night", venue='Hall "B"')
    order = await paid_order(client, event["id"], {"seats": ["A-1-1", "A-2-5"]}, "Fan@Example.com")
    codes = [t["code"] for t in order["tickets"]]
    assert len(codes) == 2

    message = await one_mail(inbox, order["order_id"])
    recipients = next(r for r, m in inbox.received if m is message)
    assert recipients == ["Fan@Example.com"]
    assert message["To"] == "Fan@Example.com" and message["From"] == SENDER
    assert message["Subject"] == "Your tickets: Rock & <Roll> Night"
    got = parts(message)

    text = got["text"]
    assert expected_link(order) in text
    for code in codes:
        assert code in text
    assert "Floor, row 1, seat 1" in text and "Floor, row 2, seat 5" in text
    assert "100.00 EUR" in text  # two seats at 5000 cents

    html = got["html"]
    assert "Rock &amp; &lt;Roll&gt; Night" in html and "<Roll>" not in html
    assert "Hall &quot;B&quot;" in html
    assert f'href="{expected_link(order)}"' in html
    for code in codes:
        assert code in html
    # One inline QR image per ticket, each the image of its code, each shown by the HTML.
    assert sorted(p.get_content() for p in got["images"]) == sorted(ticket_png(c) for c in codes)
    for image in got["images"]:
        assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html

    pdf = got["pdf"]
    assert pdf.startswith(b"%PDF")
    pages = pypdf.PdfReader(io.BytesIO(pdf)).pages
    assert len(pages) == len(codes)
    for page, code, seat in zip(pages, codes, ("row 1, seat 1", "row 2, seat 5"), strict=True):
        words = page_text(page)
        assert code in words and seat in words
        assert "Rock & <Roll> Night" in words and "(UTC)" in words
        [qr] = page.images  # the page's QR code, as the PDF holds it, reads as its code
        assert qr.image is not None and read_qr(qr.image) == (code, "M")

    cal = icalendar.Calendar.from_ical(got["ics"])
    [vevent] = cal.walk("VEVENT")
    starts = datetime.fromisoformat(event["starts_at"])
    assert vevent.decoded("dtstart") == starts.replace(microsecond=0)
    assert str(vevent["summary"]) == "Rock & <Roll> Night"
    assert str(vevent["location"]) == 'Hall "B"'


async def test_standing_tickets_say_general_admission(client: Client, inbox: Inbox) -> None:
    event = await create_event(client)
    order = await paid_order(client, event["id"], {"section": "GA", "quantity": 3})
    got = parts(await one_mail(inbox, order["order_id"]))
    assert got["text"].count("Standing (general admission)") == 3
    assert len(pypdf.PdfReader(io.BytesIO(got["pdf"])).pages) == 3
    assert len(got["images"]) == 3


@pytest.mark.parametrize(
    ("prefers", "lang", "subject", "sentence", "order_line"),
    [
        ({"Cookie": "bo_lang=de"}, "de", "Ihre Tickets: Tour", "Vielen Dank für Ihre Bestellung.",
         "2 Tickets, 100.00 EUR"),
        ({"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.8"}, "fr", "Vos billets : Tour",
         "Merci pour votre commande.", "2 billets, 100.00 EUR"),
        ({"Cookie": "bo_lang=xx", "Accept-Language": "es"}, "es", "Tus entradas: Tour",
         "Gracias por tu pedido.", "2 entradas, 100.00 EUR"),
        ({"Accept-Language": "ja, *;q=0.1"}, "en", "Your tickets: Tour",
         "Thank you for your order.", "2 tickets, 100.00 EUR"),
    ],
)  # fmt: skip
async def test_the_confirmation_is_in_the_language_the_fan_checked_out_in(
    client: Client,
    inbox: Inbox,
    pg: asyncpg.Pool,
    prefers: dict[str, str],
    lang: str,
    subject: str,
    sentence: str,
    order_line: str,
) -> None:
    """The picker's cookie, else Accept-Language, at checkout is recorded on the order; the
    mail is written in it (paying sends no preference)."""
    event = await create_event(client, name="Tour")
    fan = await admitted_fan(client, event["id"])
    status, held = await fan.hold(event["id"], {"seats": ["A-1-1", "A-1-2"]})
    assert status == 201, held
    headers = {**fan.headers, **prefers}
    if "Cookie" in prefers:
        headers["Cookie"] = f"{fan.headers['Cookie']}; {prefers['Cookie']}"
    status, order = await checkout(client, held["hold_id"], headers)
    assert status == 201, order
    assert await pg.fetchval("SELECT lang FROM orders WHERE id = $1", order["order_id"]) == lang
    status, paid = await fan.pay(order["order_id"])
    assert status == 200 and paid["status"] == "paid", paid

    message = await one_mail(inbox, order["order_id"])
    assert message["Subject"] == subject
    assert message["Content-Language"] == lang
    got = parts(message)
    assert sentence in got["text"] and order_line in got["text"]
    assert f'<html lang="{lang}">' in got["html"]
    assert escape(sentence) in got["html"] and escape(order_line) in got["html"]


class ZonedEvent(db.EventRow, frozen=True):
    """An event row with the contract's `timezone` (Events: default UTC)."""

    timezone: str = "UTC"


def an_order(event_id: str, codes: list[str], key: str | None = None) -> OrderRow:
    now = datetime.now(UTC)
    order = OrderRow(
        id="ord1", event_id=event_id, hold_id="h", visitor_id="v", queue_id="q",
        email="fan@example.com", status="paid", amount=5000, currency="EUR", provider="dev",
        payment_id=None, client_secret=None, expires_at=now, status_reason=None,
        created_at=now, paid_at=now,
        tickets=[TicketRow(c, "A", f"A-1-{n}", n) for n, c in enumerate(codes, start=1)],
    )  # fmt: skip
    return order if key is None else msgspec.structs.replace(order, order_key=key)


def zoned_event(zone: str) -> ZonedEvent:
    starts = datetime(2027, 7, 1, 18, 30, tzinfo=UTC)
    return ZonedEvent(
        id="ev", name="Sommer \u2013 Konzert 🎶", venue="Waldbühne", starts_at=starts,
        sale_starts_at=starts, prequeue_opens_at=starts, currency="EUR", rate_per_min=1,
        max_active=1, session_minutes=1, hold_minutes=1, max_seats_per_order=1, paused=False,
        closed=False, sold_out=False,
        sections=[db.SectionRow("A", 0, "Parkett", 5000, 10, 1, 10)], timezone=zone,
    )  # fmt: skip


def test_the_calendar_entry_and_the_pdf_are_in_the_venues_time_zone() -> None:
    view = order_view(an_order("ev", ["ord1-1-abc"]), zoned_event("Europe/Berlin"), BASE)
    assert view.zone == "Europe/Berlin" and view.starts_at.hour == 20  # 18:30 UTC is 20:30 CEST
    ics = documents.calendar(view, "example.com").decode()
    assert "DTSTART;TZID=Europe/Berlin:20270701T203000" in ics
    cal = icalendar.Calendar.from_ical(ics)
    assert [str(tz["tzid"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    [vevent] = cal.walk("VEVENT")
    assert vevent.decoded("dtstart") == datetime(2027, 7, 1, 18, 30, tzinfo=UTC)
    assert str(vevent["uid"]) == "order-ord1@example.com"
    words = page_text(pypdf.PdfReader(io.BytesIO(documents.tickets_pdf(view))).pages[0])
    assert "20:30 (Europe/Berlin)" in words and "Parkett, row 1, seat 1" in words
    assert "Waldbühne" in words  # Latin-1: the core font holds it
    need(documents.FONTS is not None, "DejaVu Sans (fonts-dejavu-core) prints any name")
    assert (
        "Sommer \u2013 Konzert" in words
    )  # not Latin-1: printed in DejaVu (no glyph for the emoji)


# ---- exactly once --------------------------------------------------------------------------------


async def test_duplicate_stream_delivery_two_consumers_and_a_restart_send_one_mail(
    client: Client,
    aiohttp_client: Any,
    inbox: Inbox,
    settings: Settings,
    redis: Redis,
    pg: asyncpg.Pool,
) -> None:
    event = await create_event(client)
    stream = EventKeys(event["id"]).reservations
    order = await paid_order(client, event["id"], {"seats": ["A-1-1"]})
    # Two more consumers of the `notify` group race the app's own for the same entry.
    others = [
        Mailer(settings, redis, pg, lambda: [], SmtpTransport(smtp_target(settings.smtp_url)))
        for _ in range(2)
    ]
    for n, other in enumerate(others):
        other.consumer = f"other-{n}"
    await asyncio.gather(*(m.consume([event["id"]], block_ms=200) for m in others))
    await asyncio.gather(*(m.send_due() for m in others))
    await one_mail(inbox, order["order_id"])
    row = await eventually(lambda: _sent(pg, order["order_id"]), "the mail marked sent", within=30)
    assert row["attempts"] == 1

    # The same entry delivered again (as a relay that published twice would), read by every
    # consumer, swept, and a restarted process: still one mail.
    entries: Any = await redis.xrange(stream)
    paid = [fields for _, fields in entries if fields[b"kind"] == b"order_paid"]
    assert len(paid) == 1
    await redis.xadd(stream, paid[0])
    await redis.xadd(stream, {"kind": "order_paid", "payload": "not json"})  # acked, skipped
    await redis.xadd(stream, paid[0])
    for other in others:
        await other.consume([event["id"]], block_ms=200)
        assert await ledger.sweep(pg, ledger.CATCH_UP) == 0
        assert await other.send_due() == 0
    restarted = await aiohttp_client(create_app(settings))
    mailer = restarted.app[MAILER]
    await mailer.sweep_step()  # the full sweep a starting process runs
    await mailer.consume([event["id"]], block_ms=200)
    assert await mailer.send_due() == 0
    assert len(inbox.of("confirmation", order["order_id"])) == 1
    assert (await _sent(pg, order["order_id"]))["attempts"] == 1
    pending: Any = await redis.xpending(stream, "notify")
    assert pending["pending"] == 0  # every entry acknowledged, the malformed one too
    for other in others:
        await other.close()


async def _sent(pg: asyncpg.Pool, order_id: str) -> Any:  # the row once sent, else None
    row = await mail_row(pg, order_id)
    return row if row is not None and row["state"] == "sent" else None


async def test_smtp_down_then_back_delivers_later_once(
    client: Client, smtp_port: int, pg: asyncpg.Pool
) -> None:
    event = await create_event(client)
    order = await paid_order(client, event["id"], {"seats": ["A-1-1", "A-1-2"]})
    # Nothing listens on the SMTP port: the first attempt fails and is scheduled again.
    failed = await eventually(
        lambda: _failed_once(pg, order["order_id"]), "a failed attempt recorded", within=30
    )
    assert failed["state"] == "due" and failed["last_error"]
    mailer = client.app[MAILER]
    # /metrics: the failure counted, the mail owed (the sweep's count of what is owed).
    await mailer.sweep_step()
    assert mail_metric(client, "boxoffice_mails_total", kind="confirmation", outcome="retry") >= 1
    assert mail_metric(client, "boxoffice_mail_backlog") == 1
    assert mail_metric(client, "boxoffice_mail_oldest_owed_seconds") > 0
    with SmtpServer(smtp_port) as inbox:
        message = await one_mail(inbox, order["order_id"])
        row = await eventually(lambda: _sent(pg, order["order_id"]), "marked sent", within=30)
        assert row["attempts"] >= 2
        assert all(t["code"] in parts(message)["text"] for t in order["tickets"])
        # Nothing is owed any more: another round of every path sends nothing.
        await mailer.sweep_step()
        assert await mailer.send_due() == 0
        assert len(inbox.received) == 1
    assert mail_metric(client, "boxoffice_mails_total", kind="confirmation", outcome="sent") == 1
    # Owed -> sent: at least the 2 s the first retry waited.
    assert mail_metric(client, "boxoffice_mail_delivery_seconds_count", kind="confirmation") == 1
    assert mail_metric(client, "boxoffice_mail_delivery_seconds_sum", kind="confirmation") >= 2
    assert mail_metric(client, "boxoffice_mail_backlog") == 0
    assert mail_metric(client, "boxoffice_mail_oldest_owed_seconds") == 0


def mail_metric(client: Client, name: str, **labels: str) -> float:
    """A figure of the app's /metrics registry, 0.0 if never set."""
    return client.app[METRICS].registry.get_sample_value(name, labels) or 0.0


async def _failed_once(pg: asyncpg.Pool, order_id: str) -> Any:  # the row after a failure
    row = await mail_row(pg, order_id)
    return row if row is not None and row["last_error"] and row["state"] == "due" else None


async def test_a_closed_event_still_gets_its_mail(client: Client, inbox: Inbox) -> None:
    """An order paid once the event is no longer live (closed): no process reads that event's
    stream any more, and the sweep over PostgreSQL finds the order."""
    event = await create_event(client)
    fan = await admitted_fan(client, event["id"])
    status, held = await fan.hold(event["id"], {"seats": ["A-1-1"]})
    assert status == 201, held
    status, order = await fan.checkout(held["hold_id"])
    assert status == 201, order
    closed = await client.patch(
        f"/api/admin/events/{event['id']}", json={"closed": True}, headers=ADMIN
    )
    assert closed.status == 200, await closed.text()
    admission = client.app[ADMISSION]

    async def not_live() -> bool:
        return event["id"] not in [ev.id for ev in admission.live]

    await eventually(not_live, "the event no longer live", within=30)
    status, paid = await fan.pay(order["order_id"])
    assert status == 200 and paid["status"] == "paid", paid
    message = await one_mail(inbox, order["order_id"])
    assert paid["tickets"][0]["code"] in parts(message)["text"]


# ---- resend --------------------------------------------------------------------------------------


async def test_a_resend_request_mails_the_list_of_paid_orders_once(
    client: Client, inbox: Inbox, pg: asyncpg.Pool
) -> None:
    event = await create_event(client)
    first = await paid_order(client, event["id"], {"seats": ["A-1-1"]}, "twice@example.com")
    second = await paid_order(client, event["id"], {"seats": ["A-1-2"]}, "TWICE@example.com")
    await paid_order(client, event["id"], {"seats": ["A-1-3"]}, "someone@example.com")
    mailer = client.app[MAILER]
    assert await mailer.send_resend("nobody@example.com") is False
    # The hook: POST /api/orders/resend records an outbox row; the relay publishes it.
    outbox_id = await pg.fetchval(
        "INSERT INTO outbox (event_id, kind, payload) VALUES ($1, 'resend', $2::jsonb)"
        " RETURNING id",
        event["id"],
        '{"email": "twice@example.com"}',
    )
    found = await eventually(
        lambda: asyncio.sleep(0, inbox.of("resend", str(outbox_id))), "the resend", within=30
    )
    assert len(found) == 1 and found[0]["To"] == "twice@example.com"
    text = parts_text(found[0])
    assert text.count(expected_link(first)) == (1 if first.get("order_key") else 2)
    assert expected_link(second) in text and "someone" not in text
    await mailer.sweep_step()
    assert await mailer.send_due() == 0
    assert len(inbox.of("resend", str(outbox_id))) == 1


async def test_resend_my_tickets_through_the_api_reaches_the_inbox_once(
    client: Client, inbox: Inbox, pg: asyncpg.Pool
) -> None:
    """The whole path: POST /api/orders/resend (any visitor, no cookie of the buyer) records a
    request, the relay publishes it, the mailer sends the buyer one list of their orders."""
    event = await create_event(client)
    order = await paid_order(client, event["id"], {"seats": ["A-2-1"]}, "again@example.com")
    await one_mail(inbox, order["order_id"])  # the confirmation
    answer = await client.post(
        "/api/orders/resend", json={"email": "Again@Example.com"}, headers=visitor()
    )
    assert answer.status == 202
    outbox_id = await eventually(
        lambda: pg.fetchval("SELECT id FROM outbox WHERE kind = 'resend'"), "the request", within=10
    )
    found = await eventually(
        lambda: asyncio.sleep(0, inbox.of("resend", str(outbox_id))), "the resend", within=30
    )
    assert len(found) == 1 and found[0]["To"] == "again@example.com"
    assert expected_link(order) in parts_text(found[0])
    await asyncio.sleep(1.0)  # a second sweep/consumer turn sends nothing more
    assert len(inbox.of("resend", str(outbox_id))) == 1


def parts_text(message: EmailMessage) -> str:
    plain = message.get_body(("plain",))
    assert isinstance(plain, EmailMessage)
    text: str = plain.get_content()
    return text


# ---- dev mode: .eml files --------------------------------------------------------------------


@pytest.fixture
async def dev_client(
    aiohttp_client: Any, base_settings: Settings, tmp_path: Path, redis: Redis, pg: asyncpg.Pool
) -> AsyncIterator[Client]:
    dev = msgspec.structs.replace(base_settings, data_dir=str(tmp_path))
    yield await aiohttp_client(create_app(dev))


async def test_without_smtp_dev_mode_writes_eml_files_and_the_banner_says_where(
    dev_client: Client, tmp_path: Path
) -> None:
    event = await create_event(dev_client)
    order = await paid_order(dev_client, event["id"], {"seats": ["A-1-1"]})
    folder = tmp_path / "mail"

    async def files() -> list[Path]:
        return sorted(folder.glob("*.eml")) if folder.exists() else []

    [path] = await eventually(files, "an .eml file", within=30)
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert order["order_id"] in str(message["Message-ID"])
    assert all(t["code"] in parts(message)["text"] for t in order["tickets"])
    assert f"{folder}/" in banner(dev_client.app[SETTINGS], False, frozenset())


# ---- STARTTLS, TLS and AUTH against the real server -------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    need(shutil.which("openssl") is not None, "openssl makes the test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def sample_message(to: str) -> EmailMessage:
    view = order_view(an_order("ev", ["ord1-1-abc"]), zoned_event("UTC"), BASE)
    return compose.confirmation(
        msgspec.structs.replace(view, email=to), SENDER, "<t.1@example.com>"
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # smtps: it is TLS
@pytest.mark.filterwarnings("ignore:Session.login_data is deprecated")  # aiosmtpd's own use
@pytest.mark.parametrize("scheme", ["smtp+starttls", "smtps"])
async def test_starttls_and_tls_with_auth(scheme: str, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    port, inbox = free_port(), Inbox()
    kwargs: dict[str, Any] = {"authenticator": inbox.authenticate, "auth_required": True}
    # smtps is TLS from the first byte (aiosmtpd's auth_require_tls only sees STARTTLS).
    if scheme == "smtps":
        kwargs.update(ssl_context=server_tls, auth_require_tls=False)
    else:  # the server offers AUTH only after STARTTLS
        kwargs.update(tls_context=server_tls, require_starttls=True, auth_require_tls=True)
    target = smtp_target(f"{scheme}://box:p%40ss@127.0.0.1:{port}")
    with SmtpServer(port, inbox, **kwargs):
        await SmtpTransport(target, client_tls).send(sample_message("a@b.example"), "a@b.example")
        assert inbox.logins == ["box"] and len(inbox.received) == 1
        wrong = msgspec.structs.replace(target, password="nope")
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            await SmtpTransport(wrong, client_tls).send(sample_message("a@b.example"), "a@b.c")
        assert not is_permanent(refused.value)  # our credentials: ops fix them, mail waits
        assert len(inbox.received) == 1


# ---- many mails: side by side, over connections kept open ------------------------------------


class Sessions(Inbox):
    """Also says which SMTP session (connection) carried each message; with `per_connection`
    it answers 421 to MAIL once a connection has carried that many, as relays with a message
    limit per connection do."""

    def __init__(self, per_connection: int = 0) -> None:
        super().__init__()
        self.per_connection = per_connection
        self.carried: dict[int, int] = {}  # id(session) -> messages accepted on it

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.per_connection and self.carried.get(id(session), 0) >= self.per_connection:
            return "421 Too many messages on this connection, closing"
        envelope.mail_from, envelope.mail_options = address, options
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.carried[id(session)] = self.carried.get(id(session), 0) + 1
        return await super().handle_DATA(server, session, envelope)


class Gate(Inbox):
    """Holds each message in DATA until `width` messages are inside at once (or 20 s passed),
    and notes the most that were: a sender that sends one at a time never fills it."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width, self.inside, self.most = width, 0, 0
        self.full: asyncio.Event | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.full = self.full or asyncio.Event()  # the server's own loop (its thread)
        self.inside += 1
        self.most = max(self.most, self.inside)
        if self.inside >= self.width:
            self.full.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.full.wait(), 20)
        self.inside -= 1
        return await super().handle_DATA(server, session, envelope)


async def test_sends_share_open_connections_side_by_side(
    smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = SmtpTransport(smtp_target(f"smtp://127.0.0.1:{smtp_port}"))

    async def send(n: int) -> None:
        await transport.send(sample_message(f"fan{n}@b.example"), f"fan{n}@b.example")

    try:
        with SmtpServer(smtp_port, Sessions()) as inbox:
            assert isinstance(inbox, Sessions)
            await asyncio.gather(*(send(n) for n in range(5)))  # five at once: five connections
            assert transport.opened == 5
            for n in range(5, 25):  # then one after another, each on one of them
                await send(n)
            assert transport.opened == 5 and len(inbox.received) == 25
            assert len(inbox.carried) == 5 and sum(inbox.carried.values()) == 25
            monkeypatch.setattr(transport_module, "IDLE_SECONDS", 0.0)  # every one idle too long
            await send(25)
            assert transport.opened == 6 and len(inbox.carried) == 6
    finally:
        await transport.close()


async def test_a_server_that_closes_connections_costs_no_mail(smtp_port: int) -> None:
    """A relay allowing one message per connection (421 on the next), and a server restarted
    between two mails (every open connection dropped): each mail still goes out on the first
    try, on a new connection."""
    transport = SmtpTransport(smtp_target(f"smtp://127.0.0.1:{smtp_port}"))
    message = sample_message("a@b.example")
    try:
        with SmtpServer(smtp_port, Sessions(per_connection=1)) as inbox:
            for _ in range(4):
                await transport.send(message, "a@b.example")
            assert len(inbox.received) == 4 and transport.opened == 4
        with SmtpServer(smtp_port) as inbox:
            await transport.send(message, "a@b.example")
        with SmtpServer(smtp_port) as inbox:  # a restart: the connection above is gone
            await transport.send(message, "a@b.example")
            assert len(inbox.received) == 1 and transport.opened == 6
    finally:
        await transport.close()


async def test_the_mailer_sends_side_by_side_over_few_connections(
    aiohttp_client: Any, settings: Settings, smtp_port: int, redis: Redis, pg: asyncpg.Pool
) -> None:
    """Orders paid while no process mails, then one mailer: its mails are in the SMTP server
    at the same time (the gate opens only once three are), each order gets one, every row is
    sent on its first try, and no more connections are opened than mails are in flight."""
    quiet = msgspec.structs.replace(settings, roles="web,admission,relay,payments")
    client = await aiohttp_client(create_app(quiet), cookie_jar=DummyCookieJar())  # a fan each
    event = await create_event(client)
    orders = [
        await paid_order(
            client, event["id"], {"seats": [f"A-{1 + n // 10}-{1 + n % 10}"]}, f"fan{n}@example.com"
        )
        for n in range(12)
    ]
    transport = SmtpTransport(smtp_target(settings.smtp_url))
    mailer = Mailer(settings, redis, pg, lambda: [], transport)
    try:
        with SmtpServer(smtp_port, Gate(3)) as inbox:
            assert isinstance(inbox, Gate)
            assert await ledger.sweep(pg, ledger.RECENT) == len(orders)
            while await mailer.send_due():
                pass
            assert inbox.most >= 3
            for order in orders:
                assert len(inbox.of("confirmation", order["order_id"])) == 1
                row = await mail_row(pg, order["order_id"])
                assert row is not None and (row["state"], row["attempts"]) == ("sent", 1)
            assert len(inbox.received) == len(orders)
            assert transport.opened <= SEND_CONCURRENCY < len(orders)
    finally:
        await mailer.close()


# ---- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail:2525", SmtpTarget("mail", 2525, "none")),
        ("smtp://127.0.0.1", SmtpTarget("127.0.0.1", 25, "none")),
        ("smtp+starttls://u:pw-1@smtp.example.com:587", SmtpTarget("smtp.example.com", 587, "starttls", "u", "pw-1")),
        ("smtp+starttls://u:pw-2@smtp.example.com", SmtpTarget("smtp.example.com", 587, "starttls", "u", "pw-2")),
        ("smtps://me%40example.com:s%3Acret@mx.example.com:465", SmtpTarget("mx.example.com", 465, "tls", "me@example.com", "s:cret")),
        ("smtps://u:pw-3@[::1]", SmtpTarget("::1", 465, "tls", "u", "pw-3")),
    ],
)  # fmt: skip
def test_smtp_urls(url: str, expected: SmtpTarget) -> None:
    assert smtp_target(url) == expected
    assert expected.password == "" or expected.password not in repr(smtp_target(url))


@pytest.mark.parametrize(
    "url",
    ["http://u:hunter2@mail:25", "smtp://", "smtp://u:hunter2@mail:99999", "smtp://mail/x",
     "smtps://u:hunter2@mail?x=1", "mail:25", "smtp://u:hunter2@mail:port"],
)  # fmt: skip
def test_malformed_smtp_urls_stop_start_up_without_repeating_the_password(url: str) -> None:
    with pytest.raises(SettingsError, match="BOXOFFICE_SMTP_URL") as refused:
        from_env({"BOXOFFICE_SMTP_URL": url})
    assert "hunter2" not in str(refused.value)


PRODUCTION = {
    "BOXOFFICE_MODE": "production",
    "BOXOFFICE_SECRET": "Zq8-" + "k3Jd9fLw2Xv7RtY1pQ0mNb6HcE4sUa5G",
    "BOXOFFICE_ADMIN_TOKEN": "Tn2_" + "Wq7Ze1Rb8Yc3Vd6Xf0Ug4Sh9Ki5Lj2Mo",
    "REDIS_URL": "redis://10.0.0.5:6379/0",
    "DATABASE_URL": "postgresql://bo@db/boxoffice",
    "STRIPE_SECRET_KEY": "sk_live_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "BOXOFFICE_SMTP_URL": "smtp+starttls://box:pw@smtp.example.com:587",
    "BOXOFFICE_MAIL_FROM": "Tickets <tickets@example.com>",
    "BOXOFFICE_PUBLIC_URL": "https://tickets.example.com",
}


def test_production_with_mail_settings_starts() -> None:
    settings = from_env(PRODUCTION)
    assert make_transport(settings).description == "SMTP starttls smtp.example.com:587"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BOXOFFICE_SMTP_URL": None}, "BOXOFFICE_SMTP_URL"),
        ({"BOXOFFICE_MAIL_FROM": None}, "BOXOFFICE_MAIL_FROM"),
        ({"BOXOFFICE_PUBLIC_URL": None}, "BOXOFFICE_PUBLIC_URL"),
        ({"BOXOFFICE_PUBLIC_URL": "http://tickets.example.com"}, "BOXOFFICE_PUBLIC_URL"),
        ({"BOXOFFICE_SMTP_URL": "smtp://box:pw@smtp.example.com"}, "without TLS"),
        ({"BOXOFFICE_MAIL_FROM": "a@b.example, c@d.example"}, "one address"),
        ({"BOXOFFICE_MAIL_FROM": "nobody"}, "one address"),
    ],
)
def test_production_refuses_to_start_without_working_mail(
    change: dict[str, str | None], message: str
) -> None:
    env = {k: v for k, v in {**PRODUCTION, **change}.items() if v is not None}
    with pytest.raises(SettingsError, match=message):
        from_env(env)
    with pytest.raises(RuntimeError, match="BOXOFFICE_SMTP_URL"):
        make_transport(Settings(mode="production"))


# ---- rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "seconds"), [(0, 2), (1, 2), (2, 4), (3, 8), (8, 256), (9, 300), (40, 300)]
)
def test_retry_delay_grows_and_is_capped(attempts: int, seconds: int) -> None:
    assert retry_delay(attempts) == seconds


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (aiosmtplib.SMTPConnectError("refused"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (aiosmtplib.SMTPReadTimeoutError("slow"), False),
        (aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@b"), True),
        (aiosmtplib.SMTPRecipientRefused(451, "try later", "a@b"), False),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "x", "a")]), True),
        (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(452, "x", "a")]), False),
        (aiosmtplib.SMTPDataError(554, "spam"), True),
        (aiosmtplib.SMTPDataError(451, "later"), False),
        (aiosmtplib.SMTPSenderRefused(550, "not you", "t@e"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad"), False),
        (compose.InvalidAddress("x"), True),
        (OSError("network"), False),
    ],
)
def test_which_failures_are_final(exc: Exception, permanent: bool) -> None:
    assert is_permanent(exc) is permanent


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(5000, "EUR", "50.00 EUR"), (5, "USD", "0.05 USD"), (0, "EUR", "0.00 EUR"),
     (1500, "JPY", "1500 JPY"), (12345, "KWD", "12.345 KWD")],
)  # fmt: skip
def test_money(amount: int, currency: str, text: str) -> None:
    assert money(amount, currency) == text


@pytest.mark.parametrize(
    ("section", "seat", "text"),
    [("A", "A-3-17", "Parkett, row 3, seat 17"), ("A", None, "Parkett (general admission)"),
     ("Z", "Z-1-1", "Z, row 1, seat 1"), ("A", "odd", "Parkett, seat odd")],
)  # fmt: skip
def test_place(section: str, seat: str | None, text: str) -> None:
    assert place(zoned_event("UTC"), section, seat) == text


def test_order_link_uses_the_key_when_the_order_has_one() -> None:
    assert order_link(BASE, an_order("ev", [])) == f"{BASE}/e/ev"
    assert order_link(BASE, an_order("ev", [], key="k/y")) == f"{BASE}/orders/ord1?key=k%2Fy"


@pytest.mark.parametrize(
    ("zone", "name"), [("Europe/Berlin", "Europe/Berlin"), ("", "UTC"), ("Mars/Olympus", "UTC")]
)
def test_venue_zone(zone: str, name: str) -> None:
    assert venue_zone(zoned_event(zone)).key == name
    assert venue_zone(db_event()).key == "UTC"  # a row without the field


def db_event() -> db.EventRow:
    e = zoned_event("UTC")
    return db.EventRow(**{f: getattr(e, f) for f in db.EventRow.__struct_fields__})


@pytest.mark.parametrize("address", ["a,b@x.example", "a<b>@x.example", "nobody", "@x.example"])
def test_addresses_that_are_no_address_are_refused_for_good(address: str) -> None:
    with pytest.raises(compose.InvalidAddress):
        compose.recipient(address)


def test_header_values_stay_on_one_line() -> None:
    view = order_view(an_order("ev", ["c-1-x"]), zoned_event("UTC"), BASE)
    evil = msgspec.structs.replace(view, event_name="Show\r\nBcc: victim@example.com")
    message = compose.confirmation(evil, SENDER, "<t@example.com>")
    assert message["Subject"] == "Your tickets: Show Bcc: victim@example.com"
    assert message["Bcc"] is None


def test_folder_transport_replaces_a_second_delivery(tmp_path: Path) -> None:
    transport = FolderTransport(tmp_path)
    message = sample_message("a@b.example")
    for _ in range(2):
        asyncio.run(transport.send(message, "a@b.example"))
    assert [p.name for p in tmp_path.iterdir()] == ["t.1@example.com.eml"]
