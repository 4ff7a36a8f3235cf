"""Background loops: a named step run again and again, surviving failures with a backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("boxoffice.loops")

Step = Callable[[], Awaitable[float]]  # one turn of a loop; returns the seconds to sleep
Loop = tuple[str, Step]  # (name, step): what a module hands to the runtime to run


async def forever(name: str, step: Step) -> None:
    """Run `step` again and again; it returns the seconds to sleep. Errors back off and retry."""
    backoff = 0.5
    task = asyncio.current_task()
    while True:
        # On Python 3.11 a library may swallow a cancellation (asyncio.wait_for / timeout races)
        # or turn it into a TimeoutError caught below; a cancel request still pending ends us.
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        try:
            delay = await step()
            backoff = 0.5
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed: %s", name, exc, extra={"loop": name}, exc_info=True)
            delay = backoff
            backoff = min(backoff * 2, 5.0)
        await asyncio.sleep(delay)
