"""A ticket's QR code (segno), rendered as SVG for pages and as PNG for mail and PDF."""

from __future__ import annotations

import io

import segno
from PIL import Image

BORDER = 2  # the quiet zone, in modules


def ticket_svg(code: str) -> bytes:
    buf = io.BytesIO()
    segno.make(code, error="m").save(buf, kind="svg", scale=4, border=BORDER)
    return buf.getvalue()


def ticket_png(code: str, scale: int = 8) -> bytes:
    """A 1-bit PNG, `scale` pixels a module. Pillow draws it: one pixel a module, enlarged
    without smoothing, encoded in C — the same pixels as segno's own PNG writer, which is pure
    Python (2.4 ms an image here against 0.7; the QR code itself takes ~4.5 ms)."""
    qr = segno.make(code, error="m")
    size = len(qr.matrix) + 2 * BORDER
    image = Image.new("1", (size, size))
    image.putdata([0 if dark else 255 for row in qr.matrix_iter(border=BORDER) for dark in row])
    image = image.resize((size * scale, size * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
