"""Watching the run: progress lines, this script's own lag, the server's peak."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass

from procstat import Usage


def log(message: str) -> None:
    """Progress goes to stderr; the report alone goes to stdout."""
    print(f"[soak] {message}", file=sys.stderr, flush=True)


class LoopLag:
    """How late this script's event loop runs: is the load generator keeping up?

    A starved generator makes the server look bad: its requests arrive after
    the handshake deadline, its walkers miss the keepalive window. Then the
    run says so instead of blaming the server.
    """

    TICK = 0.1

    def __init__(self) -> None:
        self.worst = 0.0
        self.late = 0.0  # Seconds spent more than a second behind.

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.TICK)
            lag = time.monotonic() - started - self.TICK
            self.worst = max(self.worst, lag)
            if lag > 1:
                self.late += lag


@dataclass
class Peak:
    """The most threads, descriptors and memory seen in the samples."""

    threads: int
    fds: int
    rss_kib: int

    @classmethod
    def of(cls, usage: Usage) -> Peak:
        return cls(usage.threads, usage.fds, usage.rss_kib)

    def add(self, usage: Usage) -> None:
        self.threads = max(self.threads, usage.threads)
        self.fds = max(self.fds, usage.fds)
        self.rss_kib = max(self.rss_kib, usage.rss_kib)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
