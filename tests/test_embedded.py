"""Embedded Redis and PostgreSQL die with the process that owns them, and a data folder left by a
crash never makes a later stop start (or leave behind) a server.

Real `python -m server serve` processes on fresh data folders, killed with SIGKILL or stopped
with SIGTERM. A process "uses" a folder when its command line names it or its working directory
is inside it (valkey-server rewrites its command line but runs in its --dir). Every wait is
bounded by a deadline; no timing is asserted. Whatever a failing test leaves is killed by pid."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.runtime.embedded import free_port
from server.runtime.watchdog import alive, live_handles

START_SECONDS = 90.0  # two shared cores: serve with a fresh PostgreSQL folder runs initdb
GONE_SECONDS = 30.0
# A stop is bounded in stages: the loops (runtime/tasks.STOP_SECONDS), aiohttp's shutdown, pool
# and client closes (5 s each), Redis
# (5 s, then SIGKILL), PostgreSQL's fast stop (watchdog.PG_STOP_SECONDS, then immediate); on a
# loaded machine the fast stop's checkpoint alone has taken most of a minute.
STOP_SECONDS = 180.0


def users_of(folder: Path) -> dict[int, str]:
    """pid → command line of every live process using folder."""
    found: dict[int, str] = {}
    name = str(folder)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # gone, or a zombie
        if name in cmdline or cwd == name or cwd.startswith(name + "/"):
            found[int(entry.name)] = cmdline.strip()
    return found


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def accepts(address: tuple[str, int] | str) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(1)
        try:
            s.connect(address)
        except OSError:
            return False
        return True


class Serve:
    """`python -m server serve` on its own data folder and port, output in a log file."""

    def __init__(self, folder: Path, log: Path) -> None:
        self.folder = folder
        self.port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BOXOFFICE_") and k not in ("REDIS_URL", "DATABASE_URL")
        }
        env |= {
            "BOXOFFICE_DATA_DIR": str(folder),
            "BOXOFFICE_PORT": str(self.port),
            "BOXOFFICE_LOG_LEVEL": "warning",
            "BOXOFFICE_LOG_FORMAT": "text",
        }
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        self.log = log

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def wait_healthy(self) -> None:
        up = wait_for(lambda: self.healthy() or self.process.poll() is not None, START_SECONDS)
        assert up and self.process.poll() is None, self.log.read_text()[-3000:]

    def stop(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no stop: {self.log.read_text()[-3000:]}") from None


@pytest.fixture
def folder() -> Iterator[Path]:
    made = Path(tempfile.mkdtemp(prefix="bo-emb-", dir="/tmp")).resolve()
    try:
        yield made
    finally:
        for pid in users_of(made):  # only what a failed test left; all started under it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(made, ignore_errors=True)
        made.with_suffix(".log").unlink(missing_ok=True)


@pytest.fixture
def serves(folder: Path) -> Iterator[Callable[[], Serve]]:
    started: list[Serve] = []

    def start() -> Serve:
        serve = Serve(folder, folder.with_suffix(".log"))
        started.append(serve)
        return serve

    yield start
    for serve in started:
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.wait()


def pgdata(folder: Path) -> Path:
    return folder / "postgres" / "pgdata"


def redis_port(folder: Path) -> int:
    found = re.findall(r"port=(\d+)\.", (folder / "redis" / "redis.log").read_text())
    return int(found[-1])


def postgres_starts(folder: Path) -> int:
    return (pgdata(folder) / "log").read_text().count("starting PostgreSQL")


def servers_of(folder: Path) -> tuple[list[int], list[int]]:
    """(Redis server pids, postgres pids) using folder."""
    users = users_of(folder).items()
    return (
        [pid for pid, cmd in users if "valkey-server" in cmd or "redis-server" in cmd],
        [pid for pid, cmd in users if "/postgres " in cmd or cmd.startswith("postgres:")],
    )


def assert_nothing_left(folder: Path) -> None:
    gone = wait_for(lambda: not users_of(folder), GONE_SECONDS)
    assert gone, f"still running on {folder}: {users_of(folder)}"
    assert not accepts(("127.0.0.1", redis_port(folder)))
    assert not accepts(str(pgdata(folder) / ".s.PGSQL.5432"))
    assert not (pgdata(folder) / "postmaster.pid").exists()


# ---- the liveness rule behind the handle list -------------------------------------------------


def test_alive_and_live_handles(folder: Path) -> None:
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    # A reaped child's pid may be reused at once (pid_max can be 32768): use one never given.
    never = int(Path("/proc/sys/kernel/pid_max").read_text())
    try:
        stat = Path(f"/proc/{zombie.pid}/stat")
        assert wait_for(lambda: stat.read_text().rpartition(")")[2].split()[0] == "Z", 10)
        cases = [(os.getpid(), True), (running.pid, True), (zombie.pid, False), (never, False)]
        for pid, expected in cases:
            assert alive(pid) is expected, pid
        handles = folder / ".handle_pids.json"
        handles.write_text(f"[{zombie.pid}, {running.pid}, {never}, {os.getpid()}]")
        assert live_handles(folder) == [running.pid, os.getpid()]
        assert live_handles(folder, without=os.getpid()) == [running.pid]
        assert handles.read_text() == f"[{running.pid}]"
    finally:
        running.kill()
        running.wait()
        zombie.wait()


# ---- real serve processes ---------------------------------------------------------------------


@pytest.mark.slow
def test_clean_stop_leaves_nothing(folder: Path, serves: Callable[[], Serve]) -> None:
    serve = serves()
    serve.wait_healthy()
    assert serve.stop(signal.SIGTERM) == 0
    assert_nothing_left(folder)
    assert postgres_starts(folder) == 1


@pytest.mark.slow
def test_killed_serve_takes_its_servers_along(folder: Path, serves: Callable[[], Serve]) -> None:
    serve = serves()
    serve.wait_healthy()
    redis_pids, postgres_pids = servers_of(folder)
    assert redis_pids and postgres_pids
    assert accepts(("127.0.0.1", redis_port(folder)))
    serve.stop(signal.SIGKILL)
    assert_nothing_left(folder)


@pytest.mark.slow
@pytest.mark.parametrize("watchdogs", ["alive", "killed"])
def test_folder_left_by_a_crash_never_starts_a_server_at_stop(
    folder: Path, serves: Callable[[], Serve], watchdogs: str
) -> None:
    """The issue's reproduction: serve, kill -9, stop the orphans, serve again on the same folder,
    SIGTERM. With `killed`, the watchdogs die with serve (as a whole process tree might), so the
    orphans and a handle of a dead process on the folder are really left behind."""
    first = serves()
    first.wait_healthy()
    if watchdogs == "killed":
        doomed = [first.process.pid, *(p for p, c in users_of(folder).items() if "watchdog" in c)]
        for pid in doomed:
            os.kill(pid, signal.SIGKILL)
        first.process.wait()
        assert wait_for(lambda: not any(alive(p) for p in doomed[1:]), GONE_SECONDS)
        redis_pids, postgres_pids = servers_of(folder)
        assert redis_pids and postgres_pids, "the orphans this case is about"
        postmaster = int((pgdata(folder) / "postmaster.pid").read_text().split()[0])
        for pid in (*redis_pids, postmaster):
            os.kill(pid, signal.SIGTERM)
    else:
        first.stop(signal.SIGKILL)
    assert wait_for(lambda: not users_of(folder), GONE_SECONDS), users_of(folder)
    assert postgres_starts(folder) == 1

    second = serves()
    second.wait_healthy()
    assert postgres_starts(folder) == 2
    assert second.stop(signal.SIGTERM) == 0
    assert_nothing_left(folder)
    assert postgres_starts(folder) == 2


@pytest.mark.parametrize("persist", [True, False])
def test_embedded_redis_keeps_its_data_across_a_restart_with_aof(
    tmp_path: Path, persist: bool
) -> None:
    """`serve` and `up` run the embedded Redis with AOF (appendfsync everysec): the line written
    before a stop is there after the next start in the same folder; without AOF it is not."""
    import redis as sync_redis

    from server.runtime.embedded import EmbeddedRedis

    for round_ in range(2):
        server = EmbeddedRedis(tmp_path / "redis", persist=persist)
        server.start()
        client = sync_redis.Redis.from_url(server.url)
        try:
            if round_ == 0:
                client.zadd("bo:{ev:x}:line", {"q1": 1, "q2": 2})
            else:
                kept = client.zrange("bo:{ev:x}:line", 0, -1)
                assert kept == ([b"q1", b"q2"] if persist else [])
            assert client.config_get("appendonly")["appendonly"] == ("yes" if persist else "no")
        finally:
            client.close()
            server.stop()
