"""The message catalogs shipped in static/i18n/: <lang>.json (one per language, the same keys in
each) and languages.json (each language's name in itself). The fan pages read them
(server.runtime.translations) and so do the mails written in the fan's language
(server.notify.compose)."""

from __future__ import annotations

import functools

import msgspec
from aiohttp import web

from server import assets
from server.core import languages

FOLDER = assets.STATIC / "i18n"
Message = str | dict[str, str]  # a text, or its plural forms by Intl.PluralRules category
Catalog = dict[str, Message]


@functools.cache
def supported() -> dict[str, str]:
    """The languages there are catalogs for: code → its name in itself ("de" → "Deutsch")."""
    names = msgspec.json.decode((FOLDER / "languages.json").read_bytes(), type=dict[str, str])
    return {code: name for code, name in names.items() if (FOLDER / f"{code}.json").is_file()}


@functools.cache
def catalog(lang: str) -> Catalog:
    return msgspec.json.decode((FOLDER / f"{lang}.json").read_bytes(), type=Catalog)


def language_of(request: web.Request) -> str:
    """The fan's language for this request (pages, and the mails of an order checked out in
    it): the picker's cookie, else Accept-Language (server.core.languages)."""
    return languages.choose(
        request.cookies.get(languages.COOKIE),
        request.headers.get("Accept-Language"),
        supported(),
    )


def known(lang: str | None) -> str:
    """`lang` if there is a catalog for it, else the default language (a recorded language
    whose catalog was since removed, or none recorded)."""
    return lang if lang is not None and lang in supported() else languages.DEFAULT


def text(lang: str, key: str, **params: str | int) -> str:
    """One message, its {placeholders} filled; a message with plural forms takes the form of
    `count` ("one" for 1 in every catalog language, else "other")."""
    message = catalog(lang)[key]
    if isinstance(message, dict):
        message = message["one" if params.get("count") == 1 else "other"]
    for name, value in params.items():
        message = message.replace("{" + name + "}", str(value))
    return message
