"""The waiting room in a real headless Chromium: position shown, position falling as the line
moves, the admission message, a reload keeping the place, and the polling fallback."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import (
    Browser,
    Page,
    Route,
    ViewportSize,
    WebSocketRoute,
    expect,
)

from .helpers import event_body, join

pytestmark = pytest.mark.browser

PHONE = ViewportSize(width=390, height=844)
TIMEOUT_MS = 30_000
SHOTS = Path("/tmp")
# expect() waits 5 s by default: too tight when the machine is busy running other suites
expect.set_options(timeout=15_000)


async def create_event(admin: aiohttp.ClientSession, **overrides: Any) -> str:
    """An event with the default bot-challenge policy (adaptive): the page solves for real."""
    body = event_body(**overrides)
    async with admin.post("/api/admin/events", json=body) as response:
        assert response.status == 201, await response.text()
        data: dict[str, Any] = await response.json()
    event_id: str = data["id"]
    return event_id


async def set_rate(admin: aiohttp.ClientSession, event_id: str, rate_per_min: int) -> None:
    async with admin.patch(
        f"/api/admin/events/{event_id}", json={"rate_per_min": rate_per_min}
    ) as response:
        assert response.status == 200, await response.text()


async def get_stats(admin: aiohttp.ClientSession, event_id: str) -> dict[str, Any]:
    async with admin.get(f"/api/admin/events/{event_id}/stats") as response:
        assert response.status == 200, await response.text()
        stats: dict[str, Any] = await response.json()
    return stats


async def others_join(base_url: str, event_id: str, count: int) -> list[aiohttp.ClientSession]:
    """`count` other visitors, each with its own cookie jar, take places before the browser."""
    sessions = []
    for i in range(count):
        session = aiohttp.ClientSession(base_url)
        sessions.append(session)
        async with await join(session, event_id) as response:
            assert response.status == 200, await response.text()
            joined = await response.json()
        assert joined["state"] == "waiting"
        assert joined["position"] == i + 1
    return sessions


async def one_more_joins(base_url: str, event_id: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(base_url)
    async with await join(session, event_id) as response:
        assert response.status == 200
    return session


async def close_all(sessions: list[aiohttp.ClientSession]) -> None:
    for session in sessions:
        await session.close()


async def phone_page(browser: Browser) -> Page:
    context = await browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


async def test_position_falls_then_admitted(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, name="Browser Tour", rate_per_min=0)
    others = await others_join(base_url, event_id, 3)
    # A change makes every process step the event at once: with rate 0, nobody may be let in.
    await set_rate(admin, event_id, 0)
    await asyncio.sleep(0.5)
    stats = await get_stats(admin, event_id)
    assert (stats["admitted_total"], stats["waiting"]) == (0, 3)
    try:
        page = await phone_page(browser)
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#event-name")).to_have_text("Browser Tour")
        await expect(page.locator("#view-waiting")).to_be_visible()
        await expect(page.locator("#position")).to_have_text("4")
        await expect(page.locator("#ahead")).to_have_text("3")
        await expect(page.locator("#eta")).to_have_text("unknown")  # nobody is let in: honest
        await expect(page.locator("#connection")).to_have_attribute("data-mode", "live")
        await expect(page.locator("#guidance")).to_contain_text("Keep this tab open")
        await expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")
        await page.screenshot(path=str(SHOTS / "boxoffice-waiting-phone.png"), full_page=True)

        await set_rate(admin, event_id, 60)
        await page.wait_for_function(
            "Number(document.getElementById('position').textContent) < 4"
            " || !document.getElementById('view-admitted').hidden",
            timeout=TIMEOUT_MS,
        )
        # admitted: the page moves on to the seat map by itself
        await page.wait_for_url(f"{base_url}/e/{event_id}/seats", timeout=TIMEOUT_MS)
        token = await page.evaluate(f"sessionStorage.getItem('bo_access_{event_id}')")
        assert isinstance(token, str) and token
        await expect(page.locator("#view-pick")).to_be_visible()
        await expect(page.locator("#turn-clock")).to_contain_text("It's your turn.")
        await expect(page.locator("#turn-countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
        await page.screenshot(path=str(SHOTS / "boxoffice-seats-phone.png"), full_page=True)
    finally:
        await close_all(others)


async def test_reload_keeps_queue_id_and_position(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    others = await others_join(base_url, event_id, 2)
    try:
        page = await phone_page(browser)
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#position")).to_have_text("3")
        key = f"bo_queue_{event_id}"
        queue_id = await page.evaluate(f"localStorage.getItem('{key}')")
        assert isinstance(queue_id, str) and queue_id.startswith(f"{event_id}.")

        late = await one_more_joins(base_url, event_id)  # someone behind us
        await page.reload()
        await expect(page.locator("#view-waiting")).to_be_visible()
        await expect(page.locator("#position")).to_have_text("3")
        assert await page.evaluate(f"localStorage.getItem('{key}')") == queue_id

        # Without the stored id, the cookie alone still finds the same place.
        await page.evaluate(f"localStorage.removeItem('{key}')")
        await page.reload()
        await expect(page.locator("#position")).to_have_text("3")
        assert await page.evaluate(f"localStorage.getItem('{key}')") == queue_id
        await late.close()
    finally:
        await close_all(others)


async def test_polling_fallback_when_websocket_fails(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    others = await others_join(base_url, event_id, 1)
    try:
        page = await phone_page(browser)
        refused = 0

        async def refuse(ws: WebSocketRoute) -> None:
            nonlocal refused
            refused += 1
            await ws.close(code=1011, reason="refused by the test")

        await page.route_web_socket("**/api/queue/*/ws", refuse)
        await page.goto(f"{base_url}/e/{event_id}")
        await expect(page.locator("#position")).to_have_text("2")
        await expect(page.locator("#connection")).to_have_attribute(
            "data-mode", "polling", timeout=TIMEOUT_MS
        )
        assert refused >= 3
        await set_rate(admin, event_id, 600)
        await page.wait_for_url(f"{base_url}/e/{event_id}/seats", timeout=TIMEOUT_MS)
    finally:
        await close_all(others)


# ---- the bot check: the page solves a challenge before joining ---------------------------------

WIDGET = "**/static/vendor/altcha/altcha.min.js"


async def test_page_solves_the_challenge_and_joins(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)  # the default policy: adaptive
    page = await phone_page(browser)
    # Hold the challenge back a moment, so the checking panel can be seen.
    release = asyncio.Event()

    async def slow_challenge(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/api/events/*/challenge", slow_challenge)
    await page.goto(f"{base_url}/e/{event_id}")
    checking = page.locator("#view-checking")
    await expect(checking).to_be_visible()
    await expect(page.locator("#checking-heading")).to_have_text("Checking your browser…")
    progress = page.locator("#checking-progress")
    await expect(progress).to_have_attribute("role", "progressbar")
    await expect(progress).to_have_attribute("aria-labelledby", "checking-step")
    await expect(page.locator("#checking-step")).to_have_text("Step 1 of 2: checking your browser")
    await expect(page.locator("#announcer")).to_contain_text("Checking your browser")
    await expect(page.locator("#guidance")).to_be_visible()
    await page.screenshot(path=str(SHOTS / "boxoffice-checking-phone.png"), full_page=True)
    release.set()

    await expect(page.locator("#view-waiting")).to_be_visible()
    await expect(page.locator("#position")).to_have_text("1")
    stats = await get_stats(admin, event_id)
    assert (stats["challenges_issued"], stats["challenges_solved"]) == (1, 1), stats
    assert (stats["challenges_failed"], stats["waiting"]) == (0, 1), stats

    # A reload with a live place rejoins without a new check.
    await page.unroute("**/api/events/*/challenge")
    await page.reload()
    await expect(page.locator("#view-waiting")).to_be_visible()
    await expect(page.locator("#position")).to_have_text("1")
    stats = await get_stats(admin, event_id)
    assert (stats["challenges_issued"], stats["waiting"]) == (1, 1), stats


async def test_refused_solution_gets_a_fresh_challenge(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    page = await phone_page(browser)
    spoiled = 0

    async def spoil_first(route: Route) -> None:
        nonlocal spoiled
        if route.request.method == "POST" and spoiled == 0:
            spoiled += 1
            body = route.request.post_data_json
            assert isinstance(body, dict) and set(body) == {"altcha"}, body
            forged = base64.b64encode(json.dumps({"challenge": {}}).encode()).decode()
            await route.continue_(post_data=json.dumps({"altcha": forged}))
        else:
            await route.continue_()

    await page.route(f"**/api/events/{event_id}/queue", spoil_first)
    await page.goto(f"{base_url}/e/{event_id}")
    await expect(page.locator("#view-waiting")).to_be_visible()
    await expect(page.locator("#position")).to_have_text("1")
    stats = await get_stats(admin, event_id)
    assert spoiled == 1
    assert (stats["challenges_issued"], stats["challenges_solved"]) == (2, 1), stats
    assert (stats["challenges_failed"], stats["waiting"]) == (1, 1), stats


async def test_blocked_widget_says_what_to_do(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    page = await phone_page(browser)
    await page.route(WIDGET, lambda route: route.abort("blockedbyclient"))
    await page.goto(f"{base_url}/e/{event_id}")
    blocked = page.locator("#view-blocked")
    await expect(blocked).to_be_visible()
    await expect(blocked.locator("h2")).to_have_text("Your browser could not run the check")
    await expect(blocked.locator("h2")).to_be_focused()
    await expect(page.locator("#blocked-text")).to_contain_text("allow scripts from this site")
    await expect(page.locator("#state-badge")).to_have_text("Problem")
    await expect(page.locator("#announcer")).to_contain_text("could not run the check")
    await page.screenshot(path=str(SHOTS / "boxoffice-check-blocked-phone.png"), full_page=True)
    stats = await get_stats(admin, event_id)
    assert (stats["waiting"], stats["challenges_solved"]) == (0, 0), stats

    # Unblocked, "Try again" loads the widget, solves and joins.
    await page.unroute(WIDGET)
    await page.locator("#blocked-retry").click()
    await expect(page.locator("#view-waiting")).to_be_visible()
    await expect(page.locator("#position")).to_have_text("1")


async def test_refused_worker_says_what_to_do(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    page = await phone_page(browser)
    await page.route("**/static/vendor/altcha/workers/*", lambda route: route.abort())
    await page.goto(f"{base_url}/e/{event_id}")
    await expect(page.locator("#view-blocked")).to_be_visible()
    await expect(page.locator("#blocked-text")).to_contain_text("stopped before finishing")
    stats = await get_stats(admin, event_id)
    assert (stats["waiting"], stats["challenges_solved"]) == (0, 0), stats


async def test_no_workers_says_what_to_do(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=0)
    page = await phone_page(browser)
    await page.add_init_script("delete window.Worker")
    await page.goto(f"{base_url}/e/{event_id}")
    await expect(page.locator("#view-blocked")).to_be_visible()
    await expect(page.locator("#blocked-text")).to_contain_text("up-to-date Chrome")
    stats = await get_stats(admin, event_id)
    assert (stats["waiting"], stats["challenges_solved"]) == (0, 0), stats


# ---- the seat page: map, hold, checkout, payment, confirmation ----------------------------------


async def admitted_seat_page(browser: Browser, base_url: str, event_id: str) -> Page:
    """A new visitor (own browser context) joins, is admitted and opens the seat map."""
    page = await phone_page(browser)
    await page.goto(f"{base_url}/e/{event_id}")
    await page.wait_for_url(f"{base_url}/e/{event_id}/seats", timeout=TIMEOUT_MS)  # by itself
    await expect(page.locator("#view-pick")).to_be_visible()
    await expect(page.locator("#seat-A-1-1")).to_be_visible()
    return page


async def admitted_visitor(base_url: str, event_id: str) -> tuple[aiohttp.ClientSession, str]:
    """Another visitor outside the browser: (its session with the cookie, its access token)."""
    session = aiohttp.ClientSession(base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with await join(session, event_id) as response:
        assert response.status == 200, await response.text()
        queue_id = (await response.json())["queue_id"]
    for _ in range(400):
        async with session.get(f"/api/queue/{queue_id}") as response:
            status = await response.json()
        if status["state"] == "admitted":
            return session, str(status["access_token"])
        await asyncio.sleep(0.05)
    await session.close()
    raise AssertionError(f"not admitted: {status}")


async def rival_hold(
    base_url: str, event_id: str, seats: list[str]
) -> tuple[aiohttp.ClientSession, str]:
    """Another visitor outside the browser is admitted and holds `seats`: (its session, which
    the caller closes, and the hold's id)."""
    session, token = await admitted_visitor(base_url, event_id)
    try:
        async with session.post(
            f"/api/events/{event_id}/holds",
            json={"seats": seats},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 201, await response.text()
            return session, str((await response.json())["hold_id"])
    except BaseException:
        await session.close()
        raise


def seat(page: Page, seat_id: str) -> Any:
    return page.locator(f"#seat-{seat_id}")


async def test_seat_journey_to_tickets(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, name="Seat Tour", rate_per_min=6000)
    page = await admitted_seat_page(browser, base_url, event_id)
    await expect(page.locator("#event-name")).to_have_text("Seat Tour")
    await expect(page.locator("#turn-countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    first, second = seat(page, "A-1-3"), seat(page, "A-1-4")
    await expect(first).to_have_attribute("aria-label", "Row 1, seat 3, €50.00, free")
    await expect(first).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#hold-button")).to_be_disabled()

    # keyboard: select, arrow right, select
    await first.focus()
    await page.keyboard.press("Space")
    await page.keyboard.press("ArrowRight")
    await expect(second).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(first).to_have_attribute("aria-pressed", "true")
    await expect(second).to_have_attribute("aria-label", "Row 1, seat 4, €50.00, selected")
    await expect(page.locator("#selection-count")).to_have_text("2 seats · €100.00")
    await page.screenshot(path=str(SHOTS / "boxoffice-seatmap-phone.png"), full_page=True)
    await page.screenshot(path=str(SHOTS / "boxoffice-seatmap-phone-viewport.png"))

    await page.locator("#hold-button").click()
    await expect(page.locator("#view-held")).to_be_visible()
    await expect(page.locator("#hold-countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    await expect(page.locator("#held-seats")).to_contain_text("Floor, Row 1, seat 3")
    await expect(page.locator("#held-amount")).to_have_text("€100.00")
    await page.screenshot(path=str(SHOTS / "boxoffice-held-phone.png"), full_page=True)

    await page.locator("#email").fill("not-an-email")
    await page.locator("#checkout-button").click()
    await expect(page.locator("#email-error")).to_be_visible()
    await expect(page.locator("#email")).to_have_attribute("aria-invalid", "true")
    await page.locator("#email").fill("fan@example.com")
    await page.locator("#checkout-button").click()
    await expect(page.locator("#view-pay")).to_be_visible()
    await expect(page.locator("#card-hint")).to_contain_text("4242 4242 4242 4242")
    await page.screenshot(path=str(SHOTS / "boxoffice-pay-phone.png"), full_page=True)
    await page.locator("#card").fill("4242 4242 4242 4242")
    await page.locator("#pay-button").click()

    await expect(page.locator("#view-done")).to_be_visible()
    codes = page.locator("#tickets .ticket-code")
    await expect(codes).to_have_count(2)
    await expect(page.locator("#view-done")).to_contain_text("Keep these codes")
    order_id = (await page.locator("#done-order").text_content() or "").strip()
    assert f"order={order_id}" in page.url
    response = await page.request.get(f"{base_url}/api/orders/{order_id}")
    assert response.status == 200
    order = await response.json()
    assert order["status"] == "paid"
    assert sorted(order["seats"]) == ["A-1-3", "A-1-4"]
    expected = sorted(t["code"] for t in order["tickets"])
    assert sorted(await codes.all_text_contents()) == expected
    await page.screenshot(path=str(SHOTS / "boxoffice-confirmation-phone.png"), full_page=True)

    await page.reload()  # the confirmation survives a reload
    await expect(page.locator("#view-done")).to_be_visible()
    assert sorted(await codes.all_text_contents()) == expected

    # Another visitor sees both seats sold and cannot pick or hold them.
    other = await admitted_seat_page(browser, base_url, event_id)
    for seat_id in ("A-1-3", "A-1-4"):
        await expect(seat(other, seat_id)).to_have_class(re.compile(r"\bsold\b"))
        await expect(seat(other, seat_id)).to_have_attribute("aria-disabled", "true")
        await expect(seat(other, seat_id)).to_have_attribute("aria-label", re.compile(r", sold$"))
    await seat(other, "A-1-3").click(force=True)  # aria-disabled: Playwright would wait
    await expect(other.locator("#pick-error")).to_contain_text("Row 1, seat 3 in Floor is sold")
    await expect(seat(other, "A-1-3")).to_have_attribute("aria-pressed", "false")
    await expect(other.locator("#hold-button")).to_be_disabled()
    token = await other.evaluate(f"sessionStorage.getItem('bo_access_{event_id}')")
    answer = await other.evaluate(
        """async ([eventId, token]) => {
            const r = await fetch(`/api/events/${eventId}/holds`, {method: "POST",
              headers: {"Authorization": `Bearer ${token}`, "Content-Type": "application/json"},
              body: JSON.stringify({seats: ["A-1-3", "A-1-4"]})});
            return [r.status, await r.json()];
        }""",
        [event_id, token],
    )
    assert answer[0] == 409 and answer[1]["error"] == "seats_unavailable", answer
    assert sorted(answer[1]["seats"]) == ["A-1-3", "A-1-4"]


async def test_seat_taken_while_choosing(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=6000)
    page = await admitted_seat_page(browser, base_url, event_id)
    # Freeze the map this page sees, so it cannot learn of the rival's hold before trying.
    seats_url = f"{base_url}/api/events/{event_id}/seats"
    async with aiohttp.ClientSession() as plain, plain.get(seats_url) as response:
        stale = await response.text()
    await page.route(
        seats_url, lambda route: route.fulfill(body=stale, content_type="application/json")
    )
    await seat(page, "A-2-5").click()
    await seat(page, "A-2-6").click()

    rival, _ = await rival_hold(base_url, event_id, ["A-2-5"])
    try:
        await page.locator("#hold-button").click()
        error = page.locator("#pick-error")
        await expect(error).to_be_visible()
        await expect(error).to_contain_text("Floor, Row 2, seat 5 was just taken")
        await expect(seat(page, "A-2-5")).to_have_class(re.compile(r"\btaken-now\b"))
        await expect(seat(page, "A-2-5")).to_have_attribute("aria-pressed", "false")
        await expect(seat(page, "A-2-6")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#bar-note")).to_contain_text("Just taken: Row 2, seat 5")
        await page.locator('.map-section[data-section="A"]').screenshot(
            path=str(SHOTS / "boxoffice-seat-taken-section-phone.png")
        )

        await page.unroute(seats_url)  # the live refresh now shows the rival's hold
        await expect(seat(page, "A-2-5")).to_have_class(re.compile(r"\bheld\b"), timeout=TIMEOUT_MS)
        await page.screenshot(path=str(SHOTS / "boxoffice-seat-taken-phone.png"), full_page=True)
        await page.locator("#hold-button").click()  # the seat still chosen can be held
        await expect(page.locator("#view-held")).to_be_visible()
        await expect(page.locator("#held-seats")).to_have_text("Floor, Row 2, seat 6")
    finally:
        await rival.close()


async def test_the_per_buyer_limit_is_said_in_words(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    """Limit 4. A fan checks out 2 seats under an email whose other order (3 seats, another
    device) is paid first: paying is refused and the page says why; a new checkout under that
    email is refused at once, in words, with the seats still held."""
    event_id = await create_event(admin, rate_per_min=6000, max_seats_per_order=4)
    other, hold_id = await rival_hold(base_url, event_id, ["A-5-1", "A-5-2", "A-5-3"])
    try:
        async with other.post(
            f"/api/holds/{hold_id}/checkout", json={"email": "limit@example.com"}
        ) as response:
            assert response.status == 201, await response.text()
            order_id = (await response.json())["order_id"]

        page = await admitted_seat_page(browser, base_url, event_id)
        await seat(page, "A-4-1").click()
        await seat(page, "A-4-2").click()
        await page.locator("#hold-button").click()
        await page.locator("#email").fill("limit@example.com")
        await page.locator("#checkout-button").click()  # nothing paid yet: accepted
        await expect(page.locator("#view-pay")).to_be_visible()
        async with other.post(
            f"/api/orders/{order_id}/pay", json={"card": "4242424242424242"}
        ) as response:
            assert response.status == 200, await response.text()
    finally:
        await other.close()
    await page.locator("#card").fill("4242 4242 4242 4242")
    await page.locator("#pay-button").click()
    await expect(page.locator("#view-failed")).to_be_visible()
    await expect(page.locator("#failed-text")).to_contain_text(
        "limit of tickets per buyer for this event"
    )
    await expect(page.locator("#failed-text")).to_contain_text("nothing is charged")

    await page.locator("#pick-again").click()
    await expect(seat(page, "A-4-1")).to_have_class(re.compile(r"\bfree\b"), timeout=TIMEOUT_MS)
    await seat(page, "A-4-1").click()
    await seat(page, "A-4-2").click()
    await page.locator("#hold-button").click()
    await page.locator("#email").fill("Limit+again@Example.com")
    await page.locator("#checkout-button").click()
    error = page.locator("#held-error")
    await expect(error).to_contain_text(
        "Each buyer can have at most 4 tickets for this event, and 3 tickets have already been"
        " bought."
    )
    await expect(error).to_contain_text("Your seats are still held")
    await expect(page.locator("#view-held")).to_be_visible()


async def test_declined_card_releases_seats(
    base_url: str, browser: Browser, admin: aiohttp.ClientSession
) -> None:
    event_id = await create_event(admin, rate_per_min=6000)
    page = await admitted_seat_page(browser, base_url, event_id)
    await seat(page, "A-3-1").click()
    await page.locator("#hold-button").click()
    await expect(page.locator("#view-held")).to_be_visible()
    await page.locator("#email").fill("fan@example.com")
    await page.locator("#checkout-button").click()
    await page.locator("#card").fill("4000 0000 0000 0002")
    await page.locator("#pay-button").click()
    await expect(page.locator("#view-failed")).to_be_visible()
    await expect(page.locator("#failed-text")).to_contain_text("declined")
    await page.screenshot(path=str(SHOTS / "boxoffice-declined-phone.png"), full_page=True)
    await page.locator("#pick-again").click()
    await expect(page.locator("#view-pick")).to_be_visible()
    assert "order=" not in page.url
    await expect(seat(page, "A-3-1")).to_have_class(re.compile(r"\bfree\b"), timeout=TIMEOUT_MS)

    # Standing tickets: a quantity, then releasing gives them back.
    await page.get_by_role("button", name="One more ticket in Standing").click()
    await page.get_by_role("button", name="One more ticket in Standing").click()
    await expect(page.locator("#qty-GA")).to_have_value("2")
    await expect(page.locator("#selection-count")).to_have_text("2 tickets · €70.00")
    await page.locator("#hold-button").click()
    await expect(page.locator("#view-held")).to_be_visible()
    await expect(page.locator("#held-seats")).to_contain_text("2 standing tickets, Standing")
    await page.locator("#release-button").click()
    await expect(page.locator("#view-pick")).to_be_visible()
    await expect(page.locator("#pick-error")).to_contain_text("released")
    await expect(page.locator("#avail-GA")).to_have_text("100 of 100 left", timeout=TIMEOUT_MS)
