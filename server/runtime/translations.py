"""Fan pages in the fan's language. The message catalogs are static/i18n/<lang>.json (one per
language, the same keys in each; static/i18n/languages.json lists them with their own names;
server.store.catalogs reads them).
A page is served rendered: `<html lang>` set to the language chosen for the request
(server.core.languages), the text of every element marked `data-i18n="key"` and every attribute
marked `data-i18n-<attribute>="key"` replaced from the catalog, and the catalog's part the page
names in `data-i18n-scopes` inlined as JSON for static/js/i18n.js (its `t(key, params)`)."""

from __future__ import annotations

import html
import re

import msgspec
from aiohttp import web

from server import assets
from server.core import languages
from server.store.catalogs import Catalog, catalog, language_of, supported

_HTML_LANG = re.compile(r'<html lang="[^"]*"')
_SCOPES = re.compile(r'<html\b[^>]*\bdata-i18n-scopes="([a-z ]+)"')
# An element whose whole content is one text: the convention of the fan pages, checked by
# tests/test_i18n_catalogs.py.
_ELEMENT = re.compile(r'(<([a-z0-9]+)\b[^<>]*?\sdata-i18n="([a-z0-9_.-]+)"[^<>]*>)([^<]*)(</\2>)')
_TAG = re.compile(r"<[a-z0-9]+\b[^<>]*\sdata-i18n-(?!scopes)[a-z-]+=[^<>]*>")
_ATTRIBUTE_KEY = re.compile(r'\sdata-i18n-([a-z-]+)="([a-z0-9_.-]+)"')


def _attributes(tag: str, messages: Catalog) -> str:
    """One tag with each data-i18n-<attribute> key's attribute written from the catalog."""
    for attribute, key in _ATTRIBUTE_KEY.findall(tag):
        start = re.search(rf'\s{attribute}="[^"]*"', tag)
        if start is not None:
            value = f' {attribute}="{html.escape(str(messages[key]))}"'
            tag = tag[: start.start()] + value + tag[start.end() :]
    return tag


def render(source: str, lang: str) -> bytes:
    """A page's HTML in `lang` (see the module docstring)."""
    messages = catalog(lang)
    out = _HTML_LANG.sub(f'<html lang="{lang}"', source, count=1)
    out = _ELEMENT.sub(
        lambda m: m.group(1) + html.escape(str(messages[m.group(3)]), quote=False) + m.group(5),
        out,
    )
    out = _TAG.sub(lambda m: _attributes(m.group(0), messages), out)
    scopes = _SCOPES.search(source)
    prefixes = tuple(f"{scope}." for scope in (scopes.group(1).split() if scopes else ["common"]))
    inline = {
        "lang": lang,
        "languages": supported(),
        "messages": {k: v for k, v in messages.items() if k.startswith(prefixes)},
    }
    data = msgspec.json.encode(inline).replace(b"</", b"<\\/").decode()
    block = f'<script type="application/json" id="bo-i18n">{data}</script>\n</head>'
    return out.replace("</head>", block, 1).encode()


_rendered: dict[tuple[str, str], tuple[int, bytes, str, str]] = {}


def _cached(page: str, lang: str) -> tuple[bytes, str, str]:
    """The rendered page, its ETag and its language (the default for a page without
    `data-i18n-scopes`: one not translated); rendered again when the file changes."""
    path = assets.STATIC / page
    mtime = path.stat().st_mtime_ns
    hit = _rendered.get((page, lang))
    if hit is None or hit[0] != mtime:
        source = path.read_text()
        shown = lang if _SCOPES.search(source) else languages.DEFAULT
        hit = (mtime, render(source, shown), f'"{shown}-{mtime:x}"', shown)
        _rendered[(page, lang)] = hit
    return hit[1], hit[2], hit[3]


def page_response(request: web.Request, page: str) -> web.Response:
    """A fan page (a file under static/) in the request's language. The answer varies with the
    cookie and Accept-Language; it is revalidated on every load (a deploy shows at once)."""
    body, etag, lang = _cached(page, language_of(request))
    headers = {
        "Cache-Control": "no-cache",
        "Vary": "Cookie, Accept-Language",
        "Content-Language": lang,
        "ETag": etag,
    }
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)
