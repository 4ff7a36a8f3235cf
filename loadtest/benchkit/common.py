"""What the benchmark processes share: where the code is, the test app's credentials, the
log line, and the messages between the orchestrator and its child processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Literal

import msgspec

ROOT = Path(__file__).resolve().parents[2]  # the repository
SECRET = "bench-secret-" + "s" * 32
ADMIN_TOKEN = "bench-admin-" + "a" * 32
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
HOST = "127.0.0.1"
VISITOR_COOKIE = "bo_visitor"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- messages between the orchestrator and its child processes -------------------------------


class LoadSpec(msgspec.Struct, frozen=True):
    url: str
    requests: int
    seconds: float
    connections: int
    source: str
    start_at: float  # time.monotonic(): CLOCK_MONOTONIC is shared by every process


class LoadResult(msgspec.Struct, frozen=True):
    ok: int
    errors: int
    statuses: dict[str, int]
    started: float
    ended: float
    cpu_seconds: float
    latencies_ms: list[float]
    first_error: str = ""


class WsSpec(msgspec.Struct, frozen=True):
    port: int
    event_id: str
    source: str
    concurrency: int


class Command(msgspec.Struct, frozen=True):
    cmd: Literal["join", "fake", "open", "round", "quit"]
    count: int = 0
    paused: bool = False
    timeout: float = 10.0


class Reply(msgspec.Struct):
    ok: int = 0
    failed: int = 0
    open: int = 0
    seconds: float = 0.0
    first: float = 0.0
    last: float = 0.0
    error: str = ""
