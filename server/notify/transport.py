"""Where a mail goes: an SMTP server through aiosmtplib (plain, STARTTLS or TLS, with AUTH),
or in development without BOXOFFICE_SMTP_URL a folder of .eml files; and the retry rules."""

from __future__ import annotations

import asyncio
import os
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from server.core.settings import Settings, SmtpTarget, smtp_target
from server.notify.compose import InvalidAddress

SEND_TIMEOUT = 60.0  # one whole delivery (connect, TLS, AUTH, DATA); below ledger.LEASE
MAX_RETRY_SECONDS = 300


class Transport(Protocol):
    description: str  # for the banner and logs: never a password

    async def send(self, message: EmailMessage, recipient: str) -> None: ...


class SmtpTransport:
    def __init__(self, target: SmtpTarget, tls_context: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls_context = tls_context  # None: the system's trusted certificates
        self.description = f"SMTP {target.security} {target.host}:{target.port}"

    async def send(self, message: EmailMessage, recipient: str) -> None:
        t = self.target
        async with asyncio.timeout(SEND_TIMEOUT):
            await aiosmtplib.send(
                message,
                recipients=[recipient],
                hostname=t.host,
                port=t.port,
                username=t.username or None,
                password=t.password or None,
                use_tls=t.security == "tls",
                start_tls=t.security == "starttls",
                tls_context=self.tls_context,
                timeout=SEND_TIMEOUT / 2,
            )


class FolderTransport:
    """Development: each mail becomes `<folder>/<Message-ID>.eml`, written whole (temporary
    file, then rename), so a second delivery of the same mail replaces the file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = f"{folder}/ (.eml files; set BOXOFFICE_SMTP_URL to send)"

    async def send(self, message: EmailMessage, recipient: str) -> None:
        await asyncio.to_thread(self._write, message)

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
