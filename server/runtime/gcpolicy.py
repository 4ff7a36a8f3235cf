"""The garbage collector's settings for a long-lived server process, applied once it listens.

A process holding 10,000 websockets carries about 75 GC-tracked objects per socket (aiohttp's
handler, parser, request, response, reader and writer, a chain of 14 suspended coroutines, ours):
some 860,000. A full collection walks all of them. Timed with gc.callbacks during
`loadtest/bench.py` (10,000 sockets opening), CPython's defaults (700, 10, 10) ran twelve full
collections while the sockets opened, each longer than the last (12 ms up to 515 ms), and each
was an event-loop stall of the same length. Two standard remedies:
- `gc.freeze()` once start-up is done: what start-up built (~110,000 objects: modules, routes,
  scripts, settings) moves to the permanent generation and is never walked again;
- a young threshold of 10,000 net new objects instead of 700: a full collection needs ten middle
  ones, each ten young ones, so it comes at most once per ~1,000,000 new objects instead of at
  every 25% growth of the heap. In the same bench no full collection ran while the 10,000
  sockets opened; the longest collection was a middle one (46-105 ms on the busy box).
Cyclic garbage is still found, a little later; the price is up to 10,000 young objects walked per
young collection (1-2 ms)."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # CPython's default is 700: allocations between two young collections
OLDER_THRESHOLDS = (10, 10)  # young collections per middle one, middle ones per full one (10, 10)


def settle() -> None:
    """Collect what start-up left behind, then freeze the rest out of every later collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
