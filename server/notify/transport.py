"""Where a mail goes: an SMTP server through aiosmtplib (plain, STARTTLS or TLS, with AUTH) over
connections kept open between mails, or in development without BOXOFFICE_SMTP_URL a folder of
.eml files; and the retry rules."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from server.core.settings import Settings, SmtpTarget, smtp_target
from server.notify.compose import InvalidAddress

SEND_TIMEOUT = 60.0  # one whole delivery (connect, TLS, AUTH, DATA); below ledger.LEASE
MAX_RETRY_SECONDS = 300
# An open connection unused this long is closed rather than reused: below the idle timeouts of
# common servers (Postfix 300 s, Exim 5 min, hosted relays 30-60 s), so a reused one is alive.
IDLE_SECONDS = 20.0
CLOSING = 421  # "service not available, closing transmission channel" (RFC 5321 3.8)


class Transport(Protocol):
    description: str  # for the banner and logs: never a password

    async def send(self, message: EmailMessage, recipient: str) -> None: ...

    async def close(self) -> None: ...


class SmtpTransport:
    """Each send takes an open connection that is idle (or opens one: connect, EHLO, TLS, AUTH)
    and gives it back after the server's answer, so a sale's mails do not each pay the
    handshakes; as many connections are open as sends are in flight. A reused connection that
    the server has closed meanwhile (its idle timeout, its limit of messages per connection:
    a drop or a 421) fails that send, which is made again once on a new connection. Should the
    drop have come after the server took the message, that is a second copy with the same
    Message-ID: the at-least-once edge the mailer already has (mailer.py)."""

    def __init__(self, target: SmtpTarget, tls_context: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls_context = tls_context  # None: the system's trusted certificates
        self.description = f"SMTP {target.security} {target.host}:{target.port}"
        self.opened = 0  # connections opened since start (the tests and the bench read it)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # open, unused since (monotonic)

    async def send(self, message: EmailMessage, recipient: str) -> None:
        async with asyncio.timeout(SEND_TIMEOUT):
            reused = self._take()
            if reused is not None:
                try:
                    await self._send_on(reused, message, recipient)
                    return
                except aiosmtplib.SMTPServerDisconnected:
                    pass
                except aiosmtplib.SMTPResponseException as exc:
                    if exc.code != CLOSING:
                        raise
            await self._send_on(await self._open(), message, recipient)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp, _ in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smtp.quit(), 2.0)
            smtp.close()

    async def _send_on(self, smtp: aiosmtplib.SMTP, message: EmailMessage, recipient: str) -> None:
        try:
            await smtp.send_message(message, recipients=[recipient])
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            # A refusal: aiosmtplib has reset the envelope and the connection serves on, unless
            # the server said it is closing it.
            if getattr(exc, "code", None) == CLOSING:
                smtp.close()
            else:
                self._give_back(smtp)
            raise
        except BaseException:
            smtp.close()  # the connection's state is unknown (timeout, cancelled, dropped)
            raise
        self._give_back(smtp)

    def _take(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and now - since < IDLE_SECONDS:
                return smtp
            smtp.close()
        return None

    def _give_back(self, smtp: aiosmtplib.SMTP) -> None:
        if smtp.is_connected:
            self._idle.append((smtp, time.monotonic()))

    async def _open(self) -> aiosmtplib.SMTP:
        t = self.target
        smtp = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            username=t.username or None,
            password=t.password or None,
            use_tls=t.security == "tls",
            start_tls=t.security == "starttls",
            tls_context=self.tls_context,
            timeout=SEND_TIMEOUT / 2,
        )
        try:
            await smtp.connect()
        except BaseException:
            smtp.close()
            raise
        self.opened += 1
        return smtp


class FolderTransport:
    """Development: each mail becomes `<folder>/<Message-ID>.eml`, written whole (temporary
    file, then rename), so a second delivery of the same mail replaces the file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"{folder}/ (.eml files; set BOXOFFICE_SMTP_URL to send)"

    async def send(self, message: EmailMessage, recipient: str) -> None:
        await asyncio.to_thread(self._write, message)

    async def close(self) -> None:
        pass

    def _write(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in message["Message-ID"])
        path = self.folder / f"{name.strip('_')}.eml"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(message.as_bytes())
        tmp.replace(path)


def make_transport(settings: Settings) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(smtp_target(settings.smtp_url))
    if settings.mode != "dev":
        raise RuntimeError("production mode needs BOXOFFICE_SMTP_URL (paid orders are mailed)")
    return FolderTransport(Path(settings.data_dir).resolve() / "mail")


def retry_delay(attempts: int) -> int:
    """Seconds before the next try after `attempts` failed ones: 2, 4, 8, … capped at 5 min.
    Transient failures are retried for as long as the mail is wanted."""
    return int(min(2 ** max(attempts, 1), MAX_RETRY_SECONDS))


def is_permanent(exc: BaseException) -> bool:
    """A failure that another try cannot fix: the recipient or the message itself refused with
    a 5xx, or an address that is no address. Everything else — the server unreachable, a 4xx,
    a timeout, our own credentials or sender refused (configuration, fixed by ops) — is retried."""
    if isinstance(exc, InvalidAddress):
        return True
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return exc.code >= 500
    return False
