"""What the event page shows besides name, venue and times: `description` (plain text, line
breaks kept) and `image_url` (https, or a path on this site), optional, in create, PATCH (null
clears), the public Event and the audit; anything else refused with a 422 naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from .helpers import ADMIN, create_event, event_body

TEXT = "An evening of songs.\n\nDoors open at 19:00 — bring a coat.\tNo re-entry."


async def test_description_and_image_are_kept_and_changed(client: TestClient[Any, Any]) -> None:
    plain = await create_event(client)
    assert (plain["description"], plain["image_url"]) == (None, None)
    ev = await create_event(client, description=TEXT, image_url="https://img.example.com/a.jpg")
    public = await (await client.get(f"/api/events/{ev['id']}")).json()
    assert (public["description"], public["image_url"]) == (TEXT, "https://img.example.com/a.jpg")
    listed = await (await client.get("/api/events")).json()
    assert [e["description"] for e in listed if e["id"] == ev["id"]] == [TEXT]

    change = {"image_url": "/static/img/poster.webp", "description": "Moved indoors."}
    response = await client.patch(f"/api/admin/events/{ev['id']}", json=change, headers=ADMIN)
    assert response.status == 200, await response.text()
    assert (await response.json())["image_url"] == "/static/img/poster.webp"
    audit = await (await client.get(f"/api/admin/events/{ev['id']}/audit", headers=ADMIN)).json()
    assert "Moved indoors." in str(audit) and "/static/img/poster.webp" in str(audit)

    response = await client.patch(
        f"/api/admin/events/{ev['id']}", json={"image_url": None}, headers=ADMIN
    )
    assert response.status == 200
    public = await (await client.get(f"/api/events/{ev['id']}")).json()
    assert (public["description"], public["image_url"]) == ("Moved indoors.", None)


@pytest.mark.parametrize(
    "url",
    [
        "http://img.example.com/a.jpg",  # not https
        "javascript:alert(1)",
        "data:image/png;base64,AAAA",
        "//evil.example.com/a.jpg",  # another host, scheme-relative
        "/\\evil.example.com/a.jpg",  # browsers read /\ as //
        "https://",
        "https://-bad-.example.com/",
        "https://img.example.com/a b.jpg",
        'https://img.example.com/a".jpg',
        "https://img.example.com/<x>",
        "https://img.example.com/a\x00.jpg",
        "https://img.example.com/\n",
        "img/a.jpg",  # relative to the page: not a path on this site
        "",
        "https://img.example.com/" + "a" * 500,
    ],
)
async def test_bad_image_urls_are_refused(client: TestClient[Any, Any], url: str) -> None:
    response = await client.post("/api/admin/events", json=event_body(image_url=url), headers=ADMIN)
    assert response.status == 422, (url, await response.text())
    assert "image_url" in (await response.json())["detail"]
    ev = await create_event(client)
    response = await client.patch(
        f"/api/admin/events/{ev['id']}", json={"image_url": url}, headers=ADMIN
    )
    assert response.status == 422, url
    assert "image_url" in (await response.json())["detail"]


@pytest.mark.parametrize("text", ["", "nul\x00inside", "bell\x07", "escape\x1b[31m", "x" * 4001])
async def test_bad_descriptions_are_refused(client: TestClient[Any, Any], text: str) -> None:
    response = await client.post(
        "/api/admin/events", json=event_body(description=text), headers=ADMIN
    )
    assert response.status == 422, await response.text()
    assert "description" in (await response.json())["detail"]
