"""The soak, phase by phase: meet, hostile load, last moves, settle, shutdown.

Each phase is a function; ``soak`` runs them in order and hands what they
found to the report (``report.Findings``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

from procstat import Usage

from .hostile import WALKER_NET, HostileMix, loopback
from .report import Findings
from .server import SoakServer
from .walkers import Walker, last_moves, meet
from .watch import LoopLag, Peak, log

#: How long the walkers may take to see each other, and to see every last
#: move; how long the server may take to stop after SIGTERM.
MEET_SECONDS = 60.0
LAST_MOVES_SECONDS = 30.0
STOP_SECONDS = 30.0


@dataclass
class HostilePhase:
    """What the hostile phase measured."""

    before: Usage
    peak: Peak
    lag: LoopLag
    #: Shares of a core over the phase: the server's and this script's.
    cpu_server: float
    cpu_self: float
    stopped_at: float


async def start_walkers(
    args: argparse.Namespace, url: str
) -> tuple[list[Walker], list[asyncio.Task[None]]]:
    """Connect the walkers and wait until each has seen every other."""
    walkers = [
        Walker(f"walker-{n}", args.rate, loopback(WALKER_NET, n))
        for n in range(args.walkers)
    ]
    tasks = [asyncio.create_task(w.run(url)) for w in walkers]
    if not await meet(walkers, MEET_SECONDS):
        log(f"the walkers did not all see each other within {MEET_SECONDS:g} s")
        raise SystemExit(2)
    await asyncio.sleep(1)
    return walkers, tasks


async def hostile_phase(
    args: argparse.Namespace,
    server: SoakServer,
    mix: HostileMix,
    walkers: list[Walker],
) -> HostilePhase:
    """Hostile clients for ``args.duration`` seconds, the server sampled
    every half second (its peak), progress every ``args.progress``."""
    lag = LoopLag()
    lag_task = asyncio.create_task(lag.run())
    before = server.sample()
    cpu_self = time.process_time()
    log(
        f"baseline: threads={before.threads} fds={before.fds}"
        f" rss={before.rss_kib / 1024:.1f}MiB;"
        f" hostile clients start for {args.duration:g} s"
    )
    started = time.monotonic()
    mix.stop_at = started + args.duration
    hostile = asyncio.create_task(
        mix.run(args.connect_rate, args.max_inflight, args.kinds)
    )
    peak = Peak.of(before)
    now = before
    last_report = time.monotonic()
    while not hostile.done():
        await asyncio.sleep(0.5)
        with contextlib.suppress(OSError):
            now = server.sample()
            peak.add(now)
        if time.monotonic() - last_report >= args.progress:
            last_report = time.monotonic()
            progress(args, mix, walkers, now)
    await hostile
    stopped_at = time.monotonic()
    lag_task.cancel()
    wall = stopped_at - started
    cpu_server = (server.sample().cpu_seconds - before.cpu_seconds) / wall
    return HostilePhase(
        before,
        peak,
        lag,
        cpu_server=cpu_server,
        cpu_self=(time.process_time() - cpu_self) / wall,
        stopped_at=stopped_at,
    )


def progress(
    args: argparse.Namespace, mix: HostileMix, walkers: list[Walker], now: Usage
) -> None:
    elapsed = args.duration - (mix.stop_at - time.monotonic())
    done = sum(sum(c.values()) for c in mix.outcomes.values())
    sent = sum(w.sent for w in walkers)
    log(
        f"t={elapsed:4.0f}s hostile done={done} open={len(mix.open_raw)}"
        f" walkers sent={sent} server threads={now.threads}"
        f" fds={now.fds} rss={now.rss_kib / 1024:.1f}MiB"
    )


def settle_seconds(options: argparse.Namespace) -> float:
    """Long enough for every hostile connection to time out of the server."""
    return float(
        options.handshake_timeout
        + options.send_timeout
        + options.close_timeout
        + options.ping_interval
        + options.ping_timeout
        + 10
    )


async def settle(server: SoakServer, before: Usage, seconds: float) -> Usage:
    """Wait until the server's threads and descriptors are back to
    ``before`` (at most ``seconds``); its usage then."""
    log(f"settling (up to {seconds:g} s)")
    deadline = time.monotonic() + seconds
    after = server.sample()
    while time.monotonic() < deadline and (
        after.threads > before.threads or after.fds > before.fds
    ):
        await asyncio.sleep(0.5)
        after = server.sample()
    return after


async def shutdown(
    server: SoakServer, walker_tasks: list[asyncio.Task[None]]
) -> tuple[int | None, float]:
    """SIGTERM: the exit status (None if it had to be killed) and how long
    it took; the walkers, closed by the server, end too."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, server.stop, STOP_SECONDS)
    seconds = time.monotonic() - started
    await asyncio.wait(walker_tasks, timeout=10)
    return code, seconds


async def soak(
    args: argparse.Namespace, server: SoakServer, options: argparse.Namespace
) -> Findings:
    started = time.monotonic()
    walkers, walker_tasks = await start_walkers(args, server.url)
    mix = HostileMix(server.port, options, stop_at=0.0, rng=random.Random(args.seed))
    phase = await hostile_phase(args, server, mix, walkers)
    lost = await last_moves(walkers, LAST_MOVES_SECONDS)
    after = await settle(server, phase.before, settle_seconds(options))
    settled = time.monotonic() - phase.stopped_at
    peak_rss_kib = server.sample().peak_rss_kib
    code, stop_seconds = await shutdown(server, walker_tasks)
    return Findings(
        args=args,
        command=server.command,
        walkers=walkers,
        mix=mix,
        before=phase.before,
        after=after,
        peak=phase.peak,
        peak_rss_kib=peak_rss_kib,
        moving_seconds=phase.stopped_at - started,
        settled_seconds=settled,
        lag=phase.lag,
        cpu_server=phase.cpu_server,
        cpu_self=phase.cpu_self,
        lost=lost,
        exit_code=code,
        stop_seconds=stop_seconds,
        log=server.read_log(),
    )
