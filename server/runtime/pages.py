"""Errors on pages: outside the API, a person's browser is asking, so an error is a small HTML
page (status, title, the sentence of the JSON error) instead of JSON or an empty body — e.g. a
missing static file, whose 404 from aiohttp's static route has no body at all. The API and the
operational endpoints keep the JSON error shape."""

from __future__ import annotations

import html
from http import HTTPStatus

import msgspec
from aiohttp import hdrs, web

from server.core.errors import Handler

JSON_PATHS = ("/healthz", "/readyz", "/metrics")
KEPT_HEADERS = ("Allow", "Retry-After")

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{status} {title} · Boxoffice</title>
<link rel="stylesheet" href="/static/css/app.css"></head>
<body><main class="wrap"><h1>{title}</h1><p>{detail}</p><p><a href="/">Boxoffice home</a></p>
</main></body></html>
"""


def wants_page(path: str) -> bool:
    """Errors on this path are HTML pages (True) or the API's JSON (False)."""
    return not path.startswith("/api/") and path not in JSON_PATHS


def error_page(status: int, detail: str) -> web.Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = _PAGE.format(status=status, title=html.escape(title), detail=html.escape(detail))
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def _detail(response: web.StreamResponse) -> str:
    body = response.body if isinstance(response, web.Response) else None
    if isinstance(body, bytes) and body:
        try:
            answer = msgspec.json.decode(body)
        except msgspec.DecodeError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("detail"), str):
            return str(answer["detail"])
    if response.status == 404:
        return "There is nothing at this address."
    return "This request could not be answered."


@web.middleware
async def page_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if response.status < 400 or response.prepared or not wants_page(request.path):
        return response
    page = error_page(response.status, _detail(response))
    for name in KEPT_HEADERS:
        if name in response.headers:
            page.headers[name] = response.headers[name]
    for name, morsel in response.cookies.items():
        page.cookies[name] = morsel
    for value in response.headers.getall(hdrs.SET_COOKIE, ()):  # cookies set as text
        page.headers.add(hdrs.SET_COOKIE, value)
    return page
