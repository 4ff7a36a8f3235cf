"""The garbage collector's settings for a long-lived server process, applied once it listens.

A process holding 10,000 websockets carries about 60 GC-tracked objects per socket (aiohttp's
handler, parser, request, response, reader and writer, 5 suspended coroutines, ours): some
600,000. A full collection walks all of them. Timed with gc.callbacks during
`loadtest/bench.py` (10,000 sockets opening), CPython's defaults (700, 10, 10) ran twelve full
collections while the sockets opened, each longer than the last (12 ms up to 515 ms), and each
was an event-loop stall of the same length. What is done instead:
- `gc.freeze()` once start-up is done: what start-up built (~110,000 objects: modules, routes,
  scripts, settings) moves to the permanent generation and is never walked again;
- a full collection comes once per ~1,000,000 net new objects (67 middle collections of 3
  young ones of 5,000), not at every 25% growth of the heap: none ran while 10,000 sockets
  opened;
- a middle collection walks at most 15,000 objects (3 young collections' worth): with young
  collections of 10,000 and 10 per middle one, the middle ones walked ~90,000 objects of new
  sockets and took 50-70 ms each (measured with gc.callbacks and the loop thread's run delay,
  2026-12-03); with these settings 5-15 ms on the same bench.
Cyclic garbage is still found, a little later; the price is up to 5,000 young objects walked per
young collection (1-3 ms)."""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 5_000  # CPython's default is 700: allocations between two young collections
OLDER_THRESHOLDS = (2, 66)  # young collections per middle one, middle ones per full one (10, 10)


def settle() -> None:
    """Collect what start-up left behind, then freeze the rest out of every later collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
