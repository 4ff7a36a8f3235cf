"""A ticket's QR code, rendered as SVG for pages and PNG for mail and PDF (segno)."""

from __future__ import annotations

import io

import segno


def ticket_svg(code: str) -> bytes:
    buf = io.BytesIO()
    segno.make(code, error="m").save(buf, kind="svg", scale=4, border=2)
    return buf.getvalue()


def ticket_png(code: str, scale: int = 8) -> bytes:
    buf = io.BytesIO()
    segno.make(code, error="m").save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()
