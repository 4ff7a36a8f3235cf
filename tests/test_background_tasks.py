"""Stopping a process's loops never hangs: a loop whose library swallows a cancellation (as
redis-py's pub/sub read did, racing its own timeout on Python 3.11) is cancelled again."""

from __future__ import annotations

import asyncio

from server.runtime.tasks import BackgroundTasks


async def test_a_swallowed_cancel_does_not_hang_the_stop() -> None:
    swallowed: list[str] = []
    ran: list[str] = []

    async def deaf_step() -> float:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            swallowed.append("once")  # the first cancel is lost, as in the library
        await asyncio.Event().wait()  # and it goes back to waiting
        return 1.0

    async def polite_step() -> float:
        ran.append("turn")
        return 0.01

    tasks = BackgroundTasks()
    tasks.start([("deaf", deaf_step), ("polite", polite_step)])
    await asyncio.sleep(0.05)
    started = asyncio.all_tasks()
    stopping = asyncio.create_task(tasks.stop())
    # asyncio.wait cancels nothing itself; the bound only keeps a regression from hanging
    done, _ = await asyncio.wait({stopping}, timeout=30)
    assert stopping in done, "the stop waited on the loop that lost its cancel"
    assert swallowed == ["once"]
    assert ran, "the polite loop ran before the stop"
    assert not any(t.get_name() in ("deaf", "polite") and not t.done() for t in started)
