"""The fan pages in the fan's language, in a real headless Chromium at phone size: each of the
four languages chosen from Accept-Language (the `lang` the server writes, the texts, dates and
prices through Intl in that language), the picker switching and sticking across reloads and
pages, the busy page choosing for itself, and real HTML 404 pages in the language."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from server import assets

from . import test_browser as tb
from .test_browser import create_event

pytestmark = pytest.mark.browser

LOCALES = {"en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES"}
# Friday 1 March 2030, 20:00 in Berlin: weekday and month as each language abbreviates them
STARTS_AT = "2030-03-01T19:00:00+00:00"
DATE_WORDS = {
    "en": ("Fri", "Mar", "2030"),
    "de": ("Fr.", "März", "2030"),
    "fr": ("ven.", "mars", "2030"),
    "es": ("vie", "mar", "2030"),
}
LONG_DATE_WORDS = {
    "en": ("Friday", "March", "2030"),
    "de": ("Freitag", "März", "2030"),
    "fr": ("vendredi", "mars", "2030"),
    "es": ("viernes", "marzo", "2030"),
}
# 5,000 cents as each language writes euros (Intl puts a no-break space before "€")
PRICES = {"en": "€50.00", "de": "50,00\u00a0€", "fr": "50,00\u00a0€", "es": "50,00\u00a0€"}


def catalog(lang: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((assets.STATIC / "i18n" / f"{lang}.json").read_text())
    return data


async def phone(browser: Browser, locale: str, **options: Any) -> BrowserContext:
    """A phone whose browser speaks `locale` (its Accept-Language and navigator.languages)."""
    context = await browser.new_context(
        viewport=tb.PHONE, is_mobile=True, has_touch=True, locale=locale, **options
    )
    context.set_default_timeout(tb.TIMEOUT_MS)
    return context


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


async def open_page(contexts: list[BrowserContext], browser: Browser, locale: str) -> Page:
    context = await phone(browser, locale)
    contexts.append(context)
    return await context.new_page()


async def lang_of(page: Page) -> str:
    return str(await page.evaluate("document.documentElement.lang"))


@pytest.mark.parametrize("lang", list(LOCALES))
async def test_each_language_is_chosen_from_accept_language(
    lang: str,
    base_url: str,
    browser: Browser,
    admin: aiohttp.ClientSession,
    contexts: list[BrowserContext],
) -> None:
    event_id = await create_event(
        admin,
        name="Nachtkonzert",
        starts_at=STARTS_AT,
        timezone="Europe/Berlin",
        challenge="off",
        rate_per_min=0,  # nobody is let in: the page stays the waiting room
    )
    words = catalog(lang)
    page = await open_page(contexts, browser, LOCALES[lang])
    response = await page.goto(f"{base_url}/")
    assert response is not None and response.headers["content-language"] == lang
    assert await lang_of(page) == lang
    await expect(page.locator("h1")).to_have_text(words["index.heading"])
    await expect(page.locator("footer")).to_have_text(words["common.footer"])
    await expect(page.locator("#lang-select")).to_have_value(lang)
    await expect(page.locator("#lang-select")).to_have_attribute(
        "aria-label", words["common.language"]
    )
    link = page.locator(f'a[href="/e/{event_id}"]')
    await expect(link).to_contain_text(words["index.state.on_sale"])
    meta = await link.locator(".muted").text_content() or ""
    assert meta.startswith("Arena · ")
    for word in DATE_WORDS[lang]:
        assert word in meta, (lang, meta)
    # prices through Intl in the page's language, not the browser's
    assert await page.evaluate("I18N.money(5000, 'EUR')") == PRICES[lang]
    yen = await page.evaluate("I18N.money(5000, 'JPY')")  # no minor unit: 5000 yen
    assert re.fullmatch(r"[^0-9]*5\D?000[^0-9]*", yen), yen
    # plurals by Intl.PluralRules: French counts 0 and 1 as one, the others only 1
    one = await page.evaluate("I18N.t('index.count', {count: 1})")
    many = await page.evaluate("I18N.t('index.count', {count: 1234})")
    assert one == words["index.count"]["one"].replace("{count}", "1")
    assert many.startswith({"en": "1,234", "de": "1.234", "fr": "1\u202f234", "es": "1234"}[lang])

    # the event's own page: the waiting room, its facts and prices in the language
    await page.goto(f"{base_url}/e/{event_id}")
    assert await lang_of(page) == lang
    await expect(page.locator("#view-waiting h2")).to_have_text(words["waiting.waiting.heading"])
    await expect(page.locator("#event-prices")).to_contain_text(PRICES[lang])
    date = await page.locator("#event-date").text_content() or ""
    for word in LONG_DATE_WORDS[lang]:
        assert word in date, (lang, date)
    await expect(page.locator("#about-heading")).to_have_text(words["event.about"])
    await expect(page.locator("#away-rule")).to_have_text(
        words["waiting.away_rule"].replace(
            "{window}", words["waiting.window.minutes"]["other"].replace("{count}", "30")
        )
    )

    # the order page and the 404 page speak it too
    await page.goto(f"{base_url}/orders/{'A' * 22}?key=nope")
    assert await lang_of(page) == lang
    await expect(page.locator("#error-heading")).to_have_text(words["order.error_heading"])
    missing = await page.goto(f"{base_url}/e/no-such-event")
    assert missing is not None and missing.status == 404
    assert await lang_of(page) == lang
    await expect(page.locator("h1")).to_have_text(words["error.not_found"])
    await expect(page.locator("main a")).to_have_attribute("href", "/")


async def test_the_event_page(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession, contexts: list[BrowserContext]
) -> None:
    """Name, venue, date, description, image, prices, sale time and the rules of the queue, in
    the venue's zone (New York, named) for a phone in Tokyo that speaks German."""
    description = "Ein Abend voller Lieder.\nEinlass ab 19 Uhr."
    event_id = await create_event(
        admin,
        name="Nachtkonzert",
        venue="Carnegie Hall",
        starts_at=STARTS_AT,
        timezone="America/New_York",
        description=description,
        image_url="/static/img/nachtkonzert.jpg",
        max_seats_per_order=4,
        challenge="off",
        rate_per_min=0,
    )
    context = await phone(browser, "de-DE", timezone_id="Asia/Tokyo")
    contexts.append(context)
    page = await context.new_page()
    await page.goto(f"{base_url}/e/{event_id}")
    words = catalog("de")
    await expect(page.locator("#event-name")).to_have_text("Nachtkonzert")
    await expect(page).to_have_title("Nr. 1 in der Schlange — Nachtkonzert")
    # 19:00 UTC is 14:00 in New York (and 04:00 the next day in Tokyo, the phone's own zone)
    await expect(page.locator("#event-meta")).to_have_text(
        "Carnegie Hall · Fr., 1. März 2030, 14:00 GMT-5"
    )
    await expect(page.locator("#event-date")).to_have_text("Freitag, 1. März 2030 um 14:00 GMT-5")
    await expect(page.locator("#event-venue")).to_have_text("Carnegie Hall")
    await expect(page.locator("#event-zone")).to_have_text(
        words["event.zone"].replace("{place}", "New York")
    )
    sale = await page.locator("#event-sale").text_content() or ""
    assert "GMT-5" in sale or "GMT-4" in sale
    assert await page.locator("#event-description").text_content() == description
    image = page.locator("#event-image")
    await expect(image).to_have_attribute("src", "/static/img/nachtkonzert.jpg")
    await expect(image).to_have_attribute("alt", "")
    await expect(page.locator("#event-prices")).to_have_text("35,00\u00a0€ \u2013 50,00\u00a0€")
    await expect(page.locator("#event-price-list li")).to_have_text(
        ["Floor: 50,00\u00a0€ pro Sitzplatz", "Standing: 35,00\u00a0€ pro Stehplatz"]
    )
    rules = page.locator("#event-rules li:visible")
    await expect(rules).to_have_text(
        [
            words["event.rule.prequeue"],
            words["event.rule.first_come"],
            words["event.rule.turn"],
            "Höchstens 4 Tickets pro Bestellung.",
            words["event.rule.one_place"],
        ]
    )
    assert "04:00" not in (await page.locator("main").text_content() or "")
    await page.screenshot(path=str(tb.SHOTS / "boxoffice-event-de-phone.png"), full_page=True)


async def test_the_seat_map_in_spanish(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession, contexts: list[BrowserContext]
) -> None:
    """Admitted from a Spanish browser: the seat page, its seats' names and the hold speak
    Spanish, prices in Spanish euros."""
    event_id = await create_event(admin, rate_per_min=6000, challenge="off")
    page = await open_page(contexts, browser, "es-ES")
    await page.goto(f"{base_url}/e/{event_id}")
    await page.wait_for_url(f"{base_url}/e/{event_id}/seats", timeout=tb.TIMEOUT_MS)
    words = catalog("es")
    assert await lang_of(page) == "es"
    await expect(page.locator("#pick-heading")).to_have_text(words["seats.pick.heading"])
    await expect(page.locator("#max-seats")).to_have_text("Hasta 6 entradas por pedido.")
    first = page.locator("#seat-A-1-1")
    await expect(first).to_have_attribute("aria-label", "Fila 1, asiento 1, 50,00\u00a0€, libre")
    await first.click()
    await expect(page.locator("#selection-count")).to_have_text("1 asiento · 50,00\u00a0€")
    await expect(page.locator("#selection-detail")).to_have_text("Floor, Fila 1, asiento 1")
    await page.locator("#hold-button").click()
    await expect(page.locator("#held-heading")).to_have_text(words["seats.held.heading"])
    await expect(page.locator("#held-seats")).to_have_text("Floor, Fila 1, asiento 1")
    await expect(page.locator("#held-amount")).to_have_text("50,00\u00a0€")
    await expect(page).to_have_title(re.compile(r"^Asientos reservados — Spring Tour — Boxoffice$"))


async def test_the_picker_switches_and_sticks(
    base_url: str, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = await open_page(contexts, browser, "en-GB")
    await page.goto(f"{base_url}/")
    assert await lang_of(page) == "en"
    picker = page.locator("#lang-select")
    await expect(picker).to_be_visible()
    assert await picker.locator("option").all_text_contents() == [
        "English", "Deutsch", "Français", "Español"
    ]  # fmt: skip
    async with page.expect_navigation():
        await picker.select_option("fr")
    await expect(page.locator("h1")).to_have_text(catalog("fr")["index.heading"])
    assert await lang_of(page) == "fr"
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["bo_lang"]["value"] == "fr" and cookies["bo_lang"]["sameSite"] == "Lax"

    await page.reload()  # the choice sticks across a reload …
    assert await lang_of(page) == "fr"
    await expect(page.locator("#lang-select")).to_have_value("fr")
    # … and across pages, the server's and the busy page's own choice alike
    await page.goto(f"{base_url}/orders/{'B' * 22}")
    assert await lang_of(page) == "fr"
    await expect(page.locator("h1")).to_have_text(catalog("fr")["order.your_tickets"])
    await page.goto(f"{base_url}/static/busy.html")
    await expect(page.locator("h1")).to_have_text(catalog("fr")["busy.heading"])
    assert await lang_of(page) == "fr"
    missing = await page.goto(f"{base_url}/no/such/page")
    assert missing is not None and missing.status == 404
    await expect(page.locator("h1")).to_have_text(catalog("fr")["error.not_found"])

    # and back to English by the picker
    await page.goto(f"{base_url}/")
    async with page.expect_navigation():
        await page.locator("#lang-select").select_option("en")
    await expect(page.locator("h1")).to_have_text(catalog("en")["index.heading"])
    assert await lang_of(page) == "en"


async def test_the_busy_page_chooses_by_itself(
    base_url: str, browser: Browser, contexts: list[BrowserContext]
) -> None:
    """NGINX shows busy.html as a plain file: it reads the browser's languages itself."""
    page = await open_page(contexts, browser, "de-AT")
    await page.goto(f"{base_url}/static/busy.html")
    words = catalog("de")
    await expect(page.locator("h1")).to_have_text(words["busy.heading"])
    assert await lang_of(page) == "de"
    await expect(page.locator("#busy-retry")).to_have_text(
        re.compile(r"^Neuer Versuch in \d+ Sekunden?…$")
    )
    await expect(page).to_have_title(words["busy.title"])
    await expect(page.locator(".guidance")).to_have_attribute("aria-label", words["common.tips"])


async def test_api_paths_keep_their_json_errors(base_url: str) -> None:
    async with aiohttp.ClientSession(headers={"Accept-Language": "es"}) as http:
        async with http.get(f"{base_url}/api/events/no-such-event") as response:
            assert response.status == 404 and response.content_type == "application/json"
            assert (await response.json())["error"] == "event_not_found"
        async with http.get(f"{base_url}/e/no-such-event") as response:
            assert response.status == 404 and response.content_type == "text/html"
            assert response.headers["Content-Language"] == "es"
            page = await response.text()
            assert page.startswith('<!doctype html>\n<html lang="es">')
            assert f"<h1>{catalog('es')['error.not_found']}</h1>" in page
        # a hostile language cookie or header is ignored, never an error
        cookie = {"Cookie": "bo_lang=../../x", "Accept-Language": "x" * 5000}
        async with http.get(f"{base_url}/", headers=cookie) as response:
            assert response.status == 200 and response.headers["Content-Language"] == "en"
