"""The published OpenAPI, the readable docs/API.md and the real router list the same routes:
every route of create_app (every role) is in /api/openapi.json with the same path parameters
and named in docs/API.md, and every path of either is served. A route added without its
description (or a description left behind by a route removed) fails here, so neither can drift
silently."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiohttp import web

from server.core.settings import Settings
from server.runtime.app import create_app
from server.runtime.openapi import document

# Routes that are not API and so not in the OpenAPI, each on purpose:
EXEMPT = {
    # the static files (scripts, styles, the vendored widgets): files, not API
    ("GET", "/static/{path}"),
    # the pages that answer HTML (fan pages, the order page, the console, the door)
    ("GET", "/"),
    ("GET", "/admin"),
    ("GET", "/door"),
    ("GET", "/orders/{order_id}"),
    ("GET", "/e/{event_id}"),
    ("GET", "/e/{event_id}/seats"),
}
API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "API.md"
# A route as docs/API.md names it, in backticks: `GET /api/events/{event_id}`, also
# `GET`/`PATCH /path` and a method and path wrapped onto two lines; a query string may follow.
METHODS = "GET|POST|PATCH|DELETE|PUT"
NAMED = re.compile(rf"`((?:{METHODS})(?:`/`(?:{METHODS}))*)\s+(/[^\s`?]*)")

# aiohttp answers HEAD wherever it answers GET (the same handler, no body): not listed apart.
IMPLIED = {"HEAD"}


def _router_routes(app: web.Application) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        if route.method in IMPLIED:
            continue
        info = resource.get_info()
        params = set(info["pattern"].groupindex) if "pattern" in info else set()
        found[(route.method, resource.canonical)] = params
    return found


def _documented(doc: dict[str, object]) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    paths = doc["paths"]
    assert isinstance(paths, dict)
    for path, operations in paths.items():
        for method, op in operations.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path, declared)
            found[(method.upper(), path)] = declared
    return found


def test_every_route_is_documented_and_every_documented_path_is_served(
    base_settings: Settings,
) -> None:
    assert base_settings.role_set >= {"web", "payments"}  # every route is mounted
    served = _router_routes(create_app(base_settings))
    documented = _documented(json.loads(document()))
    assert set(served) >= EXEMPT, EXEMPT - set(served)  # an exemption names a real route
    api = {route: params for route, params in served.items() if route not in EXEMPT}
    undocumented = sorted(set(api) - set(documented))
    assert not undocumented, f"routes missing from server/runtime/openapi.py: {undocumented}"
    unserved = sorted(set(documented) - set(api))
    assert not unserved, f"documented but not served: {unserved}"
    for route, params in api.items():
        assert documented[route] == params, (route, params, documented[route])
    assert len(api) >= 60, len(api)


def _shape(path: str) -> str:
    """The path with its parameters unnamed (the page may call `{number}` `{n}`)."""
    return re.sub(r"\{\w+\}", "{}", path)


def test_api_page_names_every_route_and_only_served_ones(base_settings: Settings) -> None:
    served = {
        (method, _shape(path))
        for method, path in _router_routes(create_app(base_settings))
        if (method, path) not in EXEMPT
    }
    named = {
        (method, _shape(match[2]))
        for match in NAMED.finditer(API_PAGE.read_text(encoding="utf-8"))
        for method in match[1].split("`/`")
    }
    assert not sorted(named - served), f"docs/API.md names routes not served: {named - served}"
    assert not sorted(served - named), f"routes docs/API.md does not name: {served - named}"
