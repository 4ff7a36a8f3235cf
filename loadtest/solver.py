"""The bot challenge solved the way a scripted client does: the `altcha` Python library (one
core, hashlib's PBKDF2). Used by the locust users, the challenge benchmark and the tests."""

from __future__ import annotations

import time
from typing import Any

import altcha


class Solved:
    """A payload for `{"altcha": payload}` and what it cost: CPU seconds of this thread."""

    __slots__ = ("cpu_s", "level", "payload")

    def __init__(self, payload: str, cpu_s: float, level: int | None) -> None:
        self.payload = payload
        self.cpu_s = cpu_s
        self.level = level


def solve(challenge: dict[str, Any]) -> Solved:
    """Solve one challenge as the server's challenge endpoint answers it."""
    started = time.thread_time()
    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed)
    if solution is None:
        raise ValueError(f"no solution found for {challenge!r}")
    payload = str(altcha.Payload(parsed, solution).to_base64())
    level = challenge.get("parameters", {}).get("data", {}).get("level")
    return Solved(payload, time.thread_time() - started, level if isinstance(level, int) else None)
