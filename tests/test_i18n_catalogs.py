"""The fan pages' message catalogs and markup (static/i18n/, static/js/i18n.js,
server/runtime/translations.py), without a browser: every catalog has exactly the keys of
English with the same placeholders; every text a fan page shows comes from a catalog (each
text node of its HTML carries a data-i18n key, each labelling attribute a data-i18n-<attribute>
key, and its scripts show no English literal); every key used exists; a page renders in each
language with `lang` set and the catalog's texts in place."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from server import assets
from server.runtime import translations
from server.store import catalogs

LANGUAGES = ("en", "de", "fr", "es")
# Every page a fan (or the door staff) opens; each declares the catalog scopes it uses.
FAN_PAGES = ("index.html", "busy.html", "order.html", "waiting.html", "seats.html")
LABEL_ATTRIBUTES = ("aria-label", "placeholder", "alt", "title")
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# t("key", …) with a literal key; keys built at run time ("index.state." + state) are checked
# by the browser tests instead
USED_KEY = re.compile(r"""\bt\(\s*"([a-z0-9_.]+)"\s*[,)]""")
SHADOWED_T = re.compile(r"\bvar t\b|function\s*\(\s*t\s*[,)]")
LITERAL = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""")
# a string literal with two or more words of letters: a sentence someone would read
WORDS = re.compile(r"[A-Za-z]{2,} [A-Za-z]{2,}")
# a lettered literal (not a catalog key) written straight into what a page shows
SHOWN = re.compile(
    r"""(textContent|innerText|\.alt|\.title|\.placeholder)\s*=\s*([^;"]*\?\s*)?"""
    r""""(?![a-z0-9_]+\.[a-z0-9_.]+")[A-Za-z]"""
)
# lines no fan reads: class names, logs, errors thrown, comments, the console's own English
# (common.js), challenge.js's reasons for a problem (waiting.js shows waiting.blocked.<kind>)
NOT_SHOWN = re.compile(
    r"className|problem\(|fail\(|console\.|new Error\(|^\s*(/?\*|//)|\"use strict\"|// console: English$"
)


def catalog(lang: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((assets.STATIC / "i18n" / f"{lang}.json").read_text())
    return data


def forms(message: object) -> list[str]:
    if isinstance(message, dict):
        return [str(v) for v in message.values()]
    return [str(message)]


def placeholders(message: object) -> set[str]:
    return {name for text in forms(message) for name in PLACEHOLDER.findall(text)}


def test_the_supported_languages_are_the_catalogs() -> None:
    listed = json.loads((assets.STATIC / "i18n" / "languages.json").read_text())
    assert set(LANGUAGES) <= set(listed)
    assert catalogs.supported() == listed
    files = {p.stem for p in (assets.STATIC / "i18n").glob("*.json")} - {"languages"}
    assert files == set(listed)


@pytest.mark.parametrize("lang", LANGUAGES[1:])
def test_every_catalog_has_exactly_the_keys_of_english(lang: str) -> None:
    english, other = catalog("en"), catalog(lang)
    assert sorted(other) == sorted(english), (
        f"missing: {sorted(set(english) - set(other))}, extra: {sorted(set(other) - set(english))}"
    )
    for key, message in english.items():
        translated = other[key]
        assert placeholders(translated) == placeholders(message), key
        assert isinstance(translated, dict) == isinstance(message, dict), key
        if isinstance(translated, dict):
            assert "other" in translated and set(translated) <= {
                "zero", "one", "two", "few", "many", "other"
            }, key  # fmt: skip
        assert all(text.strip() for text in forms(translated)), key


class Page(HTMLParser):
    """Where a page's texts come from: each text node's element, each labelling attribute."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.problems: list[str] = []
        self.keys: set[str] = set()
        self.scopes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.scopes = (a.get("data-i18n-scopes") or "").split()
        if self.stack and self.stack[-1][1].get("data-i18n"):
            self.problems.append(f"<{tag}> inside data-i18n={self.stack[-1][1]['data-i18n']}")
        for name in LABEL_ATTRIBUTES:
            if name in a and tag != "html":
                key = a.get(f"data-i18n-{name}")
                if not key:
                    self.problems.append(f"<{tag} {name}={a[name]!r}> without data-i18n-{name}")
        for name, value in a.items():
            if name == "data-i18n" or (
                name.startswith("data-i18n-") and name != "data-i18n-scopes"
            ):
                self.keys.add(str(value))
        if tag not in ("meta", "link", "input", "br", "img"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if not data.strip() or not self.stack:
            return
        tag, attrs = self.stack[-1]
        if tag in ("script", "style") or any(a.get("aria-hidden") == "true" for _, a in self.stack):
            return
        if not re.search(r"[^\W\d_]", data):
            return  # no letters: "--:--", a dash
        if not attrs.get("data-i18n"):
            self.problems.append(f"untranslated text in <{tag}>: {data.strip()[:60]!r}")


def shows_prose(line: str) -> bool:
    line = re.sub(r"\s//\s.*$", "", line)  # a comment after the code
    literals = [m.group(0) for m in LITERAL.finditer(line)]
    return any(WORDS.search(text) for text in literals) or SHOWN.search(line) is not None


def scripts(html: str) -> list[Path]:
    return [
        assets.STATIC / "js" / name
        for name in re.findall(r'src="/static/js/([a-z_-]+\.js)"', html)
        if name != "i18n.js"
    ]


@pytest.mark.parametrize("name", FAN_PAGES)
def test_every_text_of_a_fan_page_comes_from_the_catalog(name: str) -> None:
    html = (assets.STATIC / name).read_text()
    page = Page()
    page.feed(html)
    assert page.problems == []
    assert "common" in page.scopes
    english = catalog("en")
    assert sorted(page.keys - set(english)) == []
    assert '<script src="/static/js/i18n.js" defer></script>' in html
    assert 'id="lang-picker"' in html
    for script in scripts(html):
        source = script.read_text()
        used = set(USED_KEY.findall(source))
        assert sorted(used - set(english)) == [], script.name
        if script.name != "common.js":
            outside = {k for k in used if k.split(".")[0] not in page.scopes}
            assert outside == set(), (script.name, "keys outside the page's scopes")
        # one `t` per script, the translator: a local `t` would hide it where it is called
        assert len(SHADOWED_T.findall(source)) <= 1, (script.name, "a second t")
        prose = [
            line.strip()
            for line in source.splitlines()
            if shows_prose(line) and not NOT_SHOWN.search(line)
        ]
        assert prose == [], script.name


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", FAN_PAGES)
def test_a_page_renders_in_each_language(name: str, lang: str) -> None:
    source = (assets.STATIC / name).read_text()
    out = translations.render(source, lang).decode()
    assert out.startswith(f'<!doctype html>\n<html lang="{lang}"')
    messages = catalog(lang)
    for key in re.findall(r'data-i18n="([a-z0-9_.-]+)"', source):
        text = str(messages[key]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert f'data-i18n="{key}">{text}<' in out or f'data-i18n="{key}"' in out.split(">")[0]
    inline = re.search(r'<script type="application/json" id="bo-i18n">(.*?)</script>', out)
    assert inline is not None
    data = json.loads(inline.group(1))
    assert data["lang"] == lang and data["languages"]["de"] == "Deutsch"
    assert data["messages"]["common.language"] == messages["common.language"]
