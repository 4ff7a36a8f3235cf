"""Event `timezone` (API.md "Events"): an IANA name, UTC by default, in create, PATCH and the
admin settings, checked against the zone database; the mail's venue time uses it."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.notify.views import venue_zone
from server.store.events import EventCache

from .helpers import ADMIN, create_event, event_body


async def test_timezone_defaults_to_utc_and_is_kept(client: TestClient[Any, Any]) -> None:
    plain = await create_event(client)
    assert plain["timezone"] == "UTC"
    berlin = await create_event(client, timezone="Europe/Berlin")
    assert (berlin["timezone"], berlin["settings"]["timezone"]) == ("Europe/Berlin",) * 2
    public = await (await client.get(f"/api/events/{berlin['id']}")).json()
    assert public["timezone"] == "Europe/Berlin"
    response = await client.patch(
        f"/api/admin/events/{berlin['id']}", json={"timezone": "America/New_York"}, headers=ADMIN
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["timezone"] == "America/New_York"
    audit = await (
        await client.get(f"/api/admin/events/{berlin['id']}/audit", headers=ADMIN)
    ).json()
    assert "America/New_York" in str(audit)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "europe/berlin", "../etc/passwd", "", "CET\n"])
async def test_unknown_timezone_refused(client: TestClient[Any, Any], zone: str) -> None:
    response = await client.post("/api/admin/events", json=event_body(timezone=zone), headers=ADMIN)
    assert response.status in (400, 422), await response.text()
    body = await response.json()
    assert set(body) >= {"error", "detail"} and "timezone" in body["detail"]
    ev = await create_event(client)
    response = await client.patch(
        f"/api/admin/events/{ev['id']}", json={"timezone": zone}, headers=ADMIN
    )
    assert response.status in (400, 422)
    assert "timezone" in (await response.json())["detail"]


async def test_mail_venue_zone_reads_the_event(client: TestClient[Any, Any], pg: Any) -> None:
    ev = await create_event(client, timezone="Asia/Tokyo")
    row = await EventCache(pg).require(ev["id"])
    assert venue_zone(row).key == "Asia/Tokyo"
    assert row.starts_at.astimezone(venue_zone(row)).utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]
