"""The SMTP server of the booking bench (aiosmtpd, 127.0.0.1): accepts every message after
`--delay-ms` (a relay that far away), counts the connections and messages, and writes both as
JSON to `--stats` when it is stopped (SIGTERM).

    python -m loadtest.smtp_sink --port 2525 --delay-ms 50 --stats /tmp/sink.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.connections = 0
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        self.messages += 1
        return "250 Message accepted for delivery"


async def serve(port: int, delay: float) -> Sink:
    """Serve until SIGTERM or SIGINT; the sink with its counts."""
    sink = Sink(delay)

    def session() -> SMTP:
        sink.connections += 1
        return SMTP(sink, hostname="bench-sink")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(session, "127.0.0.1", port)
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)
    await stopped.wait()
    server.close()
    return sink


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args(argv)
    sink = asyncio.run(serve(args.port, args.delay_ms / 1000))
    counts = {"connections": sink.connections, "messages": sink.messages}
    args.stats.write_text(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
