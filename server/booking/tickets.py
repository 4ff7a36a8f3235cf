"""A ticket's QR code: SVG for the fan's pages, PNG for the mail and the PDF."""

from __future__ import annotations

from server.core import qr


def ticket_svg(code: str) -> bytes:
    return qr.svg(code).encode()


def ticket_png(code: str, scale: int = 8) -> bytes:
    return qr.png(code, scale)
