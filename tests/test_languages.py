"""Table tests of the fan's language choice (server/core/languages.py): the picker's cookie,
else Accept-Language by q-value, only among the supported languages, hostile headers bounded."""

from __future__ import annotations

import pytest

from server.core import languages

SUPPORTED = ("en", "de", "fr", "es")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, []),
        ("", []),
        ("de", ["de"]),
        ("de-AT, en;q=0.5", ["de-at", "en"]),
        ("en;q=0.3, fr;q=0.9, de;q=0.6", ["fr", "de", "en"]),
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", ["fr-ch", "fr", "en", "de", "*"]),
        # equal weights keep the header's order; q=1 is the default
        ("es;q=0.8, de;q=0.8, en", ["en", "es", "de"]),
        # refused (q=0) and malformed ranges are left out, the rest kept
        ("de;q=0, fr", ["fr"]),
        ("de;q=1.5, fr;q=0.5", ["fr"]),
        ("de;q=0.1234, fr;q=0.123", ["fr"]),
        ("de;q=abc, es", ["es"]),
        ("de;level=1, es", ["es"]),
        ("d3, es", ["es"]),
        ("toolongtag, es", ["es"]),
        ("en-\x00, es", ["es"]),
        ("<script>, es", ["es"]),
        (";;;, ,,", []),
        ("EN-gb", ["en-gb"]),
        ("zh-Hant-TW;q=0.9", ["zh-hant-tw"]),
        ("  de  ;  q=0.5 ", ["de"]),
    ],
)
def test_parse_accept_language(header: str | None, expected: list[str]) -> None:
    assert languages.parse_accept_language(header) == expected


def test_hostile_headers_are_bounded() -> None:
    # at most MAX_RANGES ranges, from at most MAX_HEADER characters: never an error
    many = ", ".join(["xx"] * 10_000 + ["de"])
    assert languages.parse_accept_language(many) == ["xx"] * languages.MAX_RANGES
    assert languages.choose(None, many, SUPPORTED) == "en"
    long_tail = "x" * 100_000 + ", de"
    assert languages.parse_accept_language(long_tail) == []
    assert languages.choose(None, "de;q=" + "0" * 100_000, SUPPORTED) == "en"


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, None, "en"),
        (None, "", "en"),
        (None, "de-DE,de;q=0.9,en;q=0.8", "de"),
        (None, "fr-CA", "fr"),
        (None, "es-419,es;q=0.9", "es"),
        (None, "ja, es;q=0.5", "es"),  # the first supported one, not the first one
        (None, "ja, ko", "en"),  # nothing supported: the default
        (None, "ja, *;q=0.1", "en"),  # anything: the default
        (None, "de;q=0, fr;q=0.1", "fr"),
        (None, "DE", "de"),
        # the picker's cookie wins when it names a supported language
        ("fr", "de-DE,de;q=0.9", "fr"),
        ("es", None, "es"),
        # else it is ignored: unknown, wrong case, hostile
        ("xx", "de", "de"),
        ("DE", "fr", "fr"),
        ("de\x00", "fr", "fr"),
        ("../../etc/passwd", None, "en"),
        ("", "es", "es"),
    ],
)
def test_choose(cookie: str | None, header: str | None, expected: str) -> None:
    assert languages.choose(cookie, header, SUPPORTED) == expected
