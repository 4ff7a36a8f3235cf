"""The fans' estimate through the app: before anything is measured the configured rate gives
an ETA at once (it used to say "unknown"), the status and the websocket agree on the rate, and
the ETA is the position at that rate."""

from __future__ import annotations

import math
from typing import Any

from aiohttp.test_utils import TestClient

from .helpers import create_event, eventually, visitor


async def test_configured_rate_gives_an_eta_before_any_measurement(
    client: TestClient[Any, Any],
) -> None:
    ev = await create_event(client, rate_per_min=30, challenge="off")  # one every 2 s
    fans = [visitor() for _ in range(3)]
    for fan in fans:
        response = await client.post(f"/api/events/{ev['id']}/queue", headers=fan)
        assert response.status == 200

    async def third() -> dict[str, Any] | None:
        r = await client.post(f"/api/events/{ev['id']}/queue", headers=fans[2])
        body: dict[str, Any] = await r.json()
        return body if body["rate_per_min"] else None

    status = await eventually(third, "a rate estimate")
    rate = status["rate_per_min"]
    assert 0 < rate <= 30.0 * 1.05  # the configured rate, blended with what little was measured
    assert status["eta_seconds"] == math.ceil(status["position"] * 60 / rate)
    assert status["return_window_seconds"] == 1800
