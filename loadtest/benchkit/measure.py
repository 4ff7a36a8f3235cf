"""Readings of this machine and its processes (/proc: CPU, memory, sockets; load average),
and the small arithmetic of the figures (percentiles, splits)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import socket
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import aiohttp

from loadtest.benchkit.common import CLK_TCK, HOST, SECRET

# ---- /proc readings ---------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    return inodes


def listens_on(pid: int, port: int) -> bool:
    inodes = listening_inodes(port)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    except OSError:
        return False
    return False


def cores() -> int:
    """The CPUs this process may run on (its affinity), which the whole run shares."""
    return len(os.sched_getaffinity(0))


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    return (
        f"{cores()} CPU(s), {model}{mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"uvloop {version('uvloop')}"
    )


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the orchestrator dies without cleaning up."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def cpu_of(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(p) for p in pids)


def proc_parents() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, command line with spaces for NULs)."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
            ppid = int(status.split("PPid:", 1)[1].split()[0])
            procs[int(entry.name)] = (ppid, cmdline)
    return procs


def mint_cookies(count: int) -> list[str]:
    """Fresh visitors' valid, signed `bo_visitor` values (what the app would have set), minted
    up front so that timed loops only pop from a list."""
    from server.core.tokens import Signer, new_id

    signer = Signer(SECRET)
    return [signer.visitor_cookie(new_id()) for _ in range(count)]
