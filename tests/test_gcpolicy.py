"""The GC policy's bounds: middle collections small enough not to stall the loop for long
(server.runtime.gcpolicy measured 50-70 ms for ~90,000 objects), full ones as rare as before."""

from __future__ import annotations

from server.runtime.gcpolicy import OLDER_THRESHOLDS, YOUNG_THRESHOLD

# a middle collection walks the new objects of its young collections (threshold + 1 of them)
MIDDLE = YOUNG_THRESHOLD * (OLDER_THRESHOLDS[0] + 1)


def test_a_middle_collection_walks_at_most_15000_new_objects() -> None:
    assert MIDDLE <= 15_000


def test_a_full_collection_comes_at_most_once_per_million_new_objects() -> None:
    assert MIDDLE * (OLDER_THRESHOLDS[1] + 1) >= 1_000_000
