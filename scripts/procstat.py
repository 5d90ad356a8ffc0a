"""What /proc says about a running process: CPU time, memory, threads, files.

The benchmark (``scripts/bench``) and the soak test (``scripts/soaktest``) both
watch a server process from outside, and both read it here. Every function
takes a process id and returns None when the process is gone (or was never
there), so a caller sampling a server that just died gets no exception.
Linux only: the figures come from ``/proc/PID/stat``, ``/proc/PID/status``,
``/proc/PID/fd`` and ``/proc/net/tcp`` (see proc(5)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """One sample of a process."""

    #: User + system CPU time of all its threads so far, in seconds.
    cpu_seconds: float
    #: Resident set size now (VmRSS) and at its peak so far (VmHWM), in KiB.
    rss_kib: int
    peak_rss_kib: int
    threads: int
    #: Open file descriptors (sockets included).
    fds: int


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name, in parentheses, may hold spaces: split after its ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5) (utime, stime) are 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status(pid: int) -> dict[str, str] | None:
    """``/proc/PID/status`` as a mapping: ``{"VmRSS": "25012 kB", ...}``."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: value.strip() for key, value in pairs}


def _kib(fields: dict[str, str], key: str) -> int:
    return int(fields[key].split()[0]) if key in fields else 0


def rss_kib(pid: int) -> int | None:
    """Resident set size (VmRSS) of a process, in KiB."""
    fields = status(pid)
    if fields is None or "VmRSS" not in fields:
        return None  # Gone, or a zombie (which has no memory left).
    return _kib(fields, "VmRSS")


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def usage(pid: int) -> Usage | None:
    """Everything above in one sample; None if the process is gone."""
    fields = status(pid)
    cpu = cpu_seconds(pid)
    fds = open_fds(pid)
    if fields is None or cpu is None or fds is None or "VmRSS" not in fields:
        return None
    return Usage(
        cpu_seconds=cpu,
        rss_kib=_kib(fields, "VmRSS"),
        peak_rss_kib=_kib(fields, "VmHWM"),
        threads=int(fields["Threads"]),
        fds=fds,
    )


def holds_tcp_connection(pid: int, local_port: int, remote_port: int) -> bool | None:
    """Whether process ``pid`` has the IPv4 loopback connection
    ``127.0.0.1:local_port`` <-> ``127.0.0.1:remote_port`` open.

    The connection's socket is found in /proc/net/tcp by its ports, then
    looked for among the process's file descriptors. A server that dropped a
    connection has closed its descriptor, even while the kernel still tries
    to deliver what was queued on it. None if /proc cannot be read.
    """
    local = f"0100007F:{local_port:04X}"
    remote = f"0100007F:{remote_port:04X}"
    inode = None
    try:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[1] == local and cols[2] == remote:
                inode = cols[9]
    except OSError:
        return None
    if inode is None or inode == "0":
        return False
    target = f"socket:[{inode}]"
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == target:
                    return True
            except OSError:
                continue
    except OSError:
        return None
    return False
