"""Time in the service's one unit: milliseconds since the epoch (UTC), as Redis scripts use."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    """This process's clock. Seat and queue state use Redis TIME inside the scripts instead."""
    return time.time_ns() // 1_000_000


def to_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
