"""Arrival curves of on-sale runs: pure functions of time, shared by the locust load shapes
(loadtest/shapes.py) and by loadtest/run.py, which opens the sale to match. No locust import
here: importing locust monkey-patches the whole process with gevent."""

from __future__ import annotations

import math


def clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


class Curve:
    """Cumulative fraction of all fans arrived `t` seconds into a run of `run_time_s`."""

    @staticmethod
    def sale_offset_s(run_time_s: float) -> float:
        """Seconds after the run starts at which the sale opens."""
        return 5.0

    @classmethod
    def arrived(cls, t: float, run_time_s: float) -> float:
        raise NotImplementedError


class FlashSale(Curve):
    """A few early birds in the pre-queue, then the spike: ~80% of all fans within the first
    minute of the sale (most in its first 15 s), the rest trickling in until 80% of the run."""

    @staticmethod
    def sale_offset_s(run_time_s: float) -> float:
        return min(10.0, run_time_s / 6)

    @classmethod
    def arrived(cls, t: float, run_time_s: float) -> float:
        sale = cls.sale_offset_s(run_time_s)
        if t < sale:
            return 0.05 * t / sale
        after = t - sale
        tail_span = max(1.0, 0.8 * run_time_s - sale)
        if after >= tail_span:
            return 1.0
        spike = (1 - math.exp(-after / 15.0)) / (1 - math.exp(-tail_span / 15.0))
        return 0.05 + 0.8 * spike + 0.15 * after / tail_span


class PreQueue(Curve):
    """A build-up before the sale: 80% of the fans arrive steadily in the pre-queue (which is
    shuffled when the sale opens), the rest in the 20 s after the start."""

    @staticmethod
    def sale_offset_s(run_time_s: float) -> float:
        return max(10.0, run_time_s * 0.4)

    @classmethod
    def arrived(cls, t: float, run_time_s: float) -> float:
        sale = cls.sale_offset_s(run_time_s)
        if t < sale:
            return 0.8 * t / sale
        return 0.8 + 0.2 * clamp((t - sale) / 20.0)


class Trickle(Curve):
    """A steady trickle: the sale opens at once and fans arrive evenly over 90% of the run."""

    @staticmethod
    def sale_offset_s(run_time_s: float) -> float:
        return 3.0

    @classmethod
    def arrived(cls, t: float, run_time_s: float) -> float:
        return clamp(t / (0.9 * run_time_s))


CURVES: dict[str, type[Curve]] = {"flash": FlashSale, "prequeue": PreQueue, "trickle": Trickle}
