"""Errors on pages: outside the API, a person's browser is asking, so an error is a small HTML
page in the fan's language (server.runtime.translations: `lang`, a heading, a sentence, a way
home) instead of JSON or an empty body — e.g. an unknown event, or a missing static file, whose
404 from aiohttp's static route has no body at all. The API and the operational endpoints keep
the JSON error shape."""

from __future__ import annotations

import html

from aiohttp import hdrs, web

from server.core.errors import Handler
from server.store.catalogs import language_of, text

JSON_PATHS = ("/healthz", "/readyz", "/metrics")
KEPT_HEADERS = ("Allow", "Retry-After")

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark"><link rel="icon" href="data:,">
<title>{title} · Boxoffice</title>
<link rel="stylesheet" href="/static/css/app.css"></head>
<body><header class="topbar"><a class="brand" href="/">Boxoffice</a></header>
<main id="main" class="wrap"><section class="card"><span class="badge" data-tone="bad">{status}</span>
<h1>{title}</h1><p>{detail}</p><p><a class="button" href="/">{home}</a></p></section></main>
</body></html>
"""


def wants_page(path: str) -> bool:
    """Errors on this path are HTML pages (True) or the API's JSON (False)."""
    return not path.startswith("/api/") and path not in JSON_PATHS


def _words(status: int) -> tuple[str, str]:
    """The catalog keys of the page's heading and sentence for this status."""
    if status == 404:
        return "error.not_found", "error.not_found_text"
    if status in (429, 503):
        return "error.busy", "error.busy_text"
    return "error.other", "error.other_text"


def error_page(status: int, lang: str) -> web.Response:
    title, detail = _words(status)
    body = _PAGE.format(
        lang=lang,
        status=status,
        title=html.escape(text(lang, title)),
        detail=html.escape(text(lang, detail, status=str(status))),
        home=html.escape(text(lang, "error.home")),
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Content-Language": lang},
    )


@web.middleware
async def page_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.status < 400 or response.prepared or not wants_page(request.path):
        return response
    page = error_page(response.status, language_of(request))
    for name in KEPT_HEADERS:
        if name in response.headers:
            page.headers[name] = response.headers[name]
    for name, morsel in response.cookies.items():
        page.cookies[name] = morsel
    for value in response.headers.getall(hdrs.SET_COOKIE, ()):  # cookies set as text
        page.headers.add(hdrs.SET_COOKIE, value)
    return page
