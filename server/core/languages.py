"""The fan's language: the picker's cookie if it names a supported language, else the best
supported match of the browser's Accept-Language (RFC 9110 §12.5.4, q-values), else the
default. Pure functions; table-tested in tests/test_languages.py. The supported set is the
catalogs shipped in static/i18n/ (server.runtime.translations reads them)."""

from __future__ import annotations

import re
from collections.abc import Collection

DEFAULT = "en"
COOKIE = "bo_lang"  # set by the page's picker (static/js/i18n.js); read by the server
# Hostile input is bounded before any parsing: a real header is a few dozen bytes.
MAX_HEADER = 512
MAX_RANGES = 16
_RANGE = re.compile(r"([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)")
_WEIGHT = re.compile(r"[qQ]=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


def _weight(params: list[str]) -> float | None:
    """The range's q (1 without one); None for a malformed parameter list."""
    q = 1.0
    for param in params:
        match = _WEIGHT.fullmatch(param.strip())
        if match is None:
            return None
        q = float(match.group(1))
    return q


def parse_accept_language(header: str | None) -> list[str]:
    """The header's language ranges, lower case, best first (q descending, then in the order
    given), without those refused (q=0) or malformed. At most MAX_RANGES from the first
    MAX_HEADER characters: a longer header is cut, never an error."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for i, part in enumerate(header[:MAX_HEADER].split(",")[:MAX_RANGES]):
        tag, *params = part.split(";")
        if _RANGE.fullmatch(tag.strip()) is None:
            continue
        q = _weight(params)
        if q is not None and q > 0:
            weighted.append((-q, i, tag.strip().lower()))
    return [tag for _, _, tag in sorted(weighted)]


def choose(cookie: str | None, accept_language: str | None, supported: Collection[str]) -> str:
    """The page's language among `supported` (lower-case primary tags such as "de")."""
    if cookie is not None and cookie in supported:
        return cookie
    for tag in parse_accept_language(accept_language):
        primary = tag.split("-", 1)[0]
        if primary in supported:
            return primary
        if primary == "*":
            return DEFAULT
    return DEFAULT
