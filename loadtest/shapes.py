"""Load shapes for on-sale runs, each bounded in users and in time.

A shape's user count is the number of fans who have *arrived* so far: a `FanUser` does its
journey once and then idles, so the count only grows. Every shape reads `-u` (total arrivals)
and `--run-time` (its length) from the command line (`use_common_options`); its arrival curve
and the moment the sale opens come from loadtest/arrivals.py, which `loadtest.run` reads to
create the event to match. When the run time is over, `tick` returns None and the run ends.

Choose one with `BOXOFFICE_SHAPE=flash|prequeue|trickle` (see loadtest/locustfile.py)."""

from __future__ import annotations

import math
import time
from typing import ClassVar

from locust import LoadTestShape

from loadtest.arrivals import Curve, FlashSale, PreQueue, Trickle, clamp

DEFAULT_USERS = 300
DEFAULT_RUN_TIME_S = 120.0
MAX_USERS = 50_000
MAX_RUN_TIME_S = 3600.0


class OnSaleShape(LoadTestShape):
    """Base: cumulative arrivals `users * curve.arrived(t)` until `run_time`, then None."""

    abstract: ClassVar[bool] = True
    use_common_options: ClassVar[bool] = True
    curve: ClassVar[type[Curve]] = Curve

    def _options(self) -> tuple[int, float]:
        users, run_time = DEFAULT_USERS, DEFAULT_RUN_TIME_S
        options = getattr(getattr(self.runner, "environment", None), "parsed_options", None)
        if options is not None:
            users = int(getattr(options, "num_users", None) or users)
            run_time = float(getattr(options, "run_time", None) or run_time)
        return min(max(1, users), MAX_USERS), min(max(5.0, run_time), MAX_RUN_TIME_S)

    def _current_users(self) -> int:
        return int(getattr(self.runner, "user_count", 0) or 0)

    def tick(self) -> tuple[int, float] | None:
        users, run_time = self._options()
        t = time.perf_counter() - self.start_time
        if t >= run_time:
            return None
        target = min(users, math.ceil(users * clamp(self.curve.arrived(t, run_time))))
        ahead = min(users, math.ceil(users * clamp(self.curve.arrived(t + 1.0, run_time))))
        # Spawn fast enough to reach next second's count within a second.
        return target, float(max(1, ahead - target, target - self._current_users()))


class FlashSaleShape(OnSaleShape):
    """Most arrivals in the first minute of the sale (see arrivals.FlashSale)."""

    curve = FlashSale


class PreQueueShape(OnSaleShape):
    """A pre-queue build-up before the sale starts (see arrivals.PreQueue)."""

    curve = PreQueue


class TrickleShape(OnSaleShape):
    """A steady trickle (see arrivals.Trickle)."""

    curve = Trickle


SHAPES: dict[str, type[OnSaleShape]] = {
    "flash": FlashSaleShape,
    "prequeue": PreQueueShape,
    "trickle": TrickleShape,
}
