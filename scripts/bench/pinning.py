"""--pin: the server on some CPUs, the load generator on others.

On a machine with few cores the generator and the server otherwise take
the CPU from each other: hundreds of the server's threads ready to run
starve the generator, and a generator of high priority preempts the server
on every message the server sends it over loopback. Kept apart, each
competes only with the machine's other processes.
"""

from __future__ import annotations

import argparse
import os


def pinned(ctx: object) -> tuple[set[int], set[int]]:
    """--pin: the CPUs of the server and of the generator (empty: any)."""
    args: argparse.Namespace | None = getattr(ctx, "args", None)
    return parse_pin(getattr(args, "pin", None))


def parse_pin(text: str | None) -> tuple[set[int], set[int]]:
    """``0/1`` or ``0-1/2,3``: the server's CPUs, then the generator's."""
    if not text:
        return set(), set()
    server, sep, generator = text.partition("/")
    if not sep:
        raise ValueError(f"--pin wants SERVER_CPUS/GENERATOR_CPUS, got {text!r}")
    return cpu_list(server), cpu_list(generator)


def cpu_list(text: str) -> set[int]:
    """``0,2-3`` as {0, 2, 3}."""
    found: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        found.update(range(int(first), int(last or first) + 1))
    return found


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of ``pid`` on ``cpus``; threads it starts later
    inherit it from the thread that starts them."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), cpus)
        except OSError:
            pass  # A thread that ended meanwhile.
