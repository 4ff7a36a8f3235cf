"""The fans' estimate through the app: before anything is measured the configured rate gives
an ETA at once (it used to say "unknown"), the status and the websocket agree on the rate, and
the ETA is the position at that rate."""

from __future__ import annotations

import math
from typing import Any

from aiohttp.test_utils import TestClient

from .helpers import create_event, eventually, visitor


async def test_configured_rate_gives_an_eta_before_any_measurement(
    fans: TestClient[Any, Any],
) -> None:
    ev = await create_event(fans, rate_per_min=30, challenge="off")  # one every 2 s
    crowd = [visitor() for _ in range(10)]
    for fan in crowd:
        response = await fans.post(f"/api/events/{ev['id']}/queue", headers=fan)
        assert response.status == 200

    async def last() -> dict[str, Any]:
        r = await fans.post(f"/api/events/{ev['id']}/queue", headers=crowd[-1])
        body: dict[str, Any] = await r.json()
        assert body["state"] == "waiting"
        return body if body["rate_per_min"] else {}

    status = await eventually(last, "a rate estimate")
    rate = status["rate_per_min"]
    assert 0 < rate <= 30.0 * 1.05  # the configured rate, blended with what little was measured
    assert status["eta_seconds"] == math.ceil(status["position"] * 60 / rate)
    assert status["return_window_seconds"] == 1800
