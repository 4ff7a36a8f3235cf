"""The attachments of a confirmation: the tickets as a PDF (fpdf2, one page per ticket) and
the event as an iCalendar entry (icalendar, RFC 5545) in the venue's time zone."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import icalendar
from fpdf import FPDF
from fpdf.enums import Align

from server.booking.tickets import ticket_png
from server.notify.views import OrderView

# Text that Latin-1 holds prints in the PDF core font Helvetica (~13 ms for a two-ticket PDF
# here). Other text needs a Unicode TrueType font, embedded and subset (~145 ms): DejaVu Sans
# where the system has it; without one (a minimal container) such characters print as "?" in
# the PDF (the mail's text and HTML parts still carry them).
FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/local/share/fonts",
)


def _font_files() -> tuple[Path, Path] | None:
    for folder in FONT_DIRS:
        regular, bold = Path(folder, "DejaVuSans.ttf"), Path(folder, "DejaVuSans-Bold.ttf")
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


FONTS = _font_files()


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class _Tickets(FPDF):
    def __init__(self, unicode: bool) -> None:
        super().__init__(unit="mm", format=(105, 200))  # a tall ticket, prints on A4 or A5
        self.set_auto_page_break(False)
        self.set_margins(10, 10, 10)
        self.unicode = unicode and FONTS is not None
        if self.unicode and FONTS is not None:
            self.add_font("Ticket", "", str(FONTS[0]))
            self.add_font("Ticket", "B", str(FONTS[1]))
            self.face = "Ticket"
        else:
            self.face = "Helvetica"

    def text_of(self, value: str) -> str:
        if self.unicode:
            return value
        return value.encode("latin-1", "replace").decode("latin-1")

    def say(
        self,
        value: str,
        size: float,
        bold: bool = False,
        height: float = 7,
        face: str | None = None,
        align: Align = Align.L,
    ) -> None:
        """One line of text, or as many as it needs, in `face` (the document's by default). A
        line that fits is a cell: fpdf2's line breaking measures character by character (2.5
        of a two-ticket PDF's 7 ms here)."""
        self.set_font(face or self.face, "B" if bold else "", size)
        line = self.text_of(value)
        if self.get_string_width(line) <= self.epw:
            self.cell(0, height, line, align=align, new_x="LMARGIN", new_y="NEXT")
        else:
            self.multi_cell(0, height, line, align=align, new_x="LMARGIN", new_y="NEXT")


def tickets_pdf(view: OrderView, qr: dict[int, bytes] | None = None) -> bytes:
    """One page per ticket: event, venue, date in the venue's zone, place, QR code, code.
    `qr`: each ticket's QR PNG by number, when the caller has them already (else made here)."""
    texts = [view.event_name, view.venue, view.when, *(t.place for t in view.tickets)]
    pdf = _Tickets(unicode=not all(_latin1(t) for t in texts))
    pdf.set_title(pdf.text_of(f"Tickets - {view.event_name}"))
    pdf.set_author("Boxoffice")
    count = len(view.tickets)
    for ticket in view.tickets:
        pdf.add_page()
        pdf.say(view.event_name, 18, bold=True, height=8)
        pdf.ln(2)
        pdf.say(view.venue, 12)
        pdf.say(view.when, 11)
        pdf.ln(4)
        pdf.say(ticket.place, 14, bold=True)
        pdf.say(f"Ticket {ticket.number} of {count}", 10)
        pdf.ln(4)
        png = qr[ticket.number] if qr is not None else ticket_png(ticket.code)
        pdf.image(io.BytesIO(png), x=17.5, w=70)
        pdf.ln(4)
        pdf.say(ticket.code, 9, height=5, face="Courier", align=Align.C)
        pdf.ln(2)
        pdf.say(f"Order {view.order_id}", 8, height=5)
        pdf.say("Show this code at the door. Each ticket admits one person once.", 8, height=5)
    return bytes(pdf.output())


def calendar(view: OrderView, uid_domain: str, now: datetime | None = None) -> bytes:
    """A VCALENDAR with one VEVENT starting at the event's time in the venue's zone (with its
    VTIMEZONE). Events have no end time, so the entry has none (RFC 5545 3.6.1)."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Boxoffice//Tickets//EN")
    cal.add("version", "2.0")
    cal.add("method", "PUBLISH")
    event = icalendar.Event()
    event.add("uid", f"order-{view.order_id}@{uid_domain}")
    event.add("dtstamp", now or datetime.now(UTC))
    event.add("dtstart", view.starts_at)
    event.add("summary", view.event_name)
    event.add("location", view.venue)
    event.add("url", view.link)
    event.add("description", f"{len(view.tickets)} ticket(s), order {view.order_id}: {view.link}")
    cal.add_component(event)
    year = view.starts_at.year
    cal.add_missing_timezones(first_date=date(year - 1, 1, 1), last_date=date(year + 2, 1, 1))
    return bytes(cal.to_ical())
