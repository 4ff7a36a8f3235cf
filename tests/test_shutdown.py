"""A graceful stop of a real worker process: open queue sockets are closed with 1001 (going
away) before aiohttp waits for requests to end, so fans reconnect elsewhere at once instead of
seeing an abnormal 1006 when the wait runs out."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import aiohttp
import msgspec
import pytest

from server.core.settings import Settings
from server.runtime import processes
from server.runtime.embedded import free_port

from .helpers import ADMIN, event_body, join, visitor

pytestmark = pytest.mark.slow


async def _ready(
    session: aiohttp.ClientSession, base: str, process: subprocess.Popen[bytes]
) -> None:
    for _ in range(400):  # bounded: 20 s
        assert process.poll() is None, "the worker exited during start-up"
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the worker did not become ready")


async def test_sigterm_closes_queue_sockets_with_1001(
    settings: Settings, redis: object, pg: object
) -> None:
    port = free_port()
    process = processes.start_worker(msgspec.structs.replace(settings, log_level="error"), port)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await _ready(session, base, process)
            created = await session.post(
                f"{base}/api/admin/events", json=event_body(rate_per_min=0), headers=ADMIN
            )
            assert created.status == 201, await created.text()
            event_id = (await created.json())["id"]
            fan = visitor()
            joined = await join(session, event_id, fan, base)
            queue_id = (await joined.json())["queue_id"]
            async with session.ws_connect(f"{base}/api/queue/{queue_id}/ws", headers=fan) as ws:
                first = await ws.receive_json(timeout=10)
                assert first["type"] == "status" and first["state"] == "waiting"
                process.send_signal(signal.SIGTERM)
                while True:
                    msg = await ws.receive(timeout=20)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY  # 1001, not 1006
        assert process.wait(20) == 0
    finally:
        processes.stop_process(process, signal.SIGKILL, 5)
