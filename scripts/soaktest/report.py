"""The report on stdout, and the checks that decide the soak's exit status."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from dataclasses import dataclass

from procstat import Usage

from .hostile import HostileMix, expected
from .server import ServerLog
from .walkers import Walker
from .watch import LoopLag, Peak, percentile

#: RSS may end this much above the baseline. The allocators keep some of what
#: the peak of connections needed, for reuse: glibc's per-thread malloc
#: arenas and its cache of freed thread stacks, pymalloc's arenas. Measured
#: on 60 s runs: 9 to 18 MiB; on a 180 s run: 15 MiB (it does not grow with
#: time). 32 MiB over ~3000 connections still catches a leak of ~10 KiB each.
RSS_TOLERANCE_MIB = 32.0


@dataclass
class Findings:
    """Everything the run found, for the report."""

    args: argparse.Namespace
    command: list[str]
    walkers: list[Walker]
    mix: HostileMix
    #: The server at the baseline (before the first hostile client) and
    #: after settling; its peak in the samples; its peak RSS (VmHWM).
    before: Usage
    after: Usage
    peak: Peak
    peak_rss_kib: int
    #: From the walkers' start to the end of the hostile phase.
    moving_seconds: float
    #: From the end of the hostile phase until the server was back.
    settled_seconds: float
    lag: LoopLag
    cpu_server: float
    cpu_self: float
    #: Walkers' last moves that some walker never saw.
    lost: int
    exit_code: int | None
    stop_seconds: float
    log: ServerLog

    @property
    def sent(self) -> int:
        return sum(w.sent for w in self.walkers)

    @property
    def invalid(self) -> list[str]:
        return [m for w in self.walkers for m in w.invalid]

    @property
    def backwards(self) -> int:
        return sum(w.backwards for w in self.walkers)

    @property
    def walker_closes(self) -> Counter[str]:
        return Counter(str(w.closed[0]) if w.closed else "open" for w in self.walkers)

    @property
    def unexpected(self) -> dict[tuple[str, str], int]:
        return {
            (kind, outcome): n
            for kind, counter in self.mix.outcomes.items()
            for outcome, n in counter.items()
            if not expected(kind, outcome)
        }


def checks(f: Findings) -> list[tuple[str, bool]]:
    """(what, passed) for every check, in the report's order."""
    before, after = f.before, f.after
    return [
        ("no update lost", f.lost == 0),
        ("no snapshot out of order", f.backwards == 0),
        ("every snapshot valid", not f.invalid),
        (
            "walkers connected until the shutdown closed them with 1001",
            f.walker_closes == {"1001": len(f.walkers)},
        ),
        ("threads back to the baseline", after.threads <= before.threads),
        ("fds back to the baseline", after.fds <= before.fds),
        (
            f"RSS at most {RSS_TOLERANCE_MIB:g} MiB above the baseline",
            after.rss_kib <= before.rss_kib + RSS_TOLERANCE_MIB * 1024,
        ),
        ("no ERROR or traceback in the server log", f.log.bad == 0),
        ("every hostile client saw an expected outcome", not f.unexpected),
        ("clean shutdown (exit 0)", f.exit_code == 0),
        ("the load generator kept up (event-loop lag under 1 s)", f.lag.worst < 1),
    ]


def per_address(f: Findings) -> str:
    limit = int(f.mix.options.max_connections_per_address)
    return f"at most {limit}" if limit else "any number of"


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def describe(f: Findings) -> list[str]:
    """The report's figures, line by line."""
    a = f.args
    hostile = sum(sum(c.values()) for c in f.mix.outcomes.values())
    snapshots = sum(w.snapshots for w in f.walkers)
    latencies = [x for w in f.walkers for x in w.latencies]
    walkers = len(f.walkers)
    lines = [
        f"wspractice soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},"
        f" {a.duration:g} s of hostile clients at {a.connect_rate:g}/s"
        f" (seed {a.seed})",
        "server: " + " ".join(f.command[1:]),
        f"connections: {hostile} hostile ({hostile / a.duration:.1f}/s)"
        f" + {walkers} walkers",
        f"source addresses: one of its own for each hostile client"
        f" ({f.mix.addresses}), each crowd ({f.mix.crowds}) and each walker;"
        f" the server allows {per_address(f)} connections per address",
        "what the hostile clients saw:",
    ]
    for kind in HostileMix.KINDS:
        counter = f.mix.outcomes.get(kind, Counter())
        seen = ", ".join(f"{o} x{n}" for o, n in counter.most_common())
        lines.append(f"  {kind:15} {sum(counter.values()):6}  {seen}")
    p50, p99, top = (1000 * percentile(latencies, q) for q in (0.5, 0.99, 1.0))
    lines += [
        f"walkers: {walkers} at {a.rate:g} Hz sent {f.sent} updates"
        f" ({f.sent / walkers / f.moving_seconds:.1f} a second each),"
        f" received {snapshots} snapshots; lost {f.lost}, out of order"
        f" {f.backwards}, invalid {len(f.invalid)}",
        f"  own update -> snapshot: p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
        f" max {top:.1f} ms",
        f"server threads: {f.before.threads} -> {f.after.threads}"
        f" (peak {f.peak.threads})",
        f"server fds:     {f.before.fds} -> {f.after.fds} (peak {f.peak.fds})",
        f"server RSS:     {mib(f.before.rss_kib)} -> {mib(f.after.rss_kib)} MiB"
        f" (peak {mib(f.peak_rss_kib)} MiB; tolerance +{RSS_TOLERANCE_MIB:g} MiB)",
        f"settled in:     {f.settled_seconds:.1f} s after the last hostile client",
        f"load generator: worst event-loop lag {f.lag.worst:.2f} s"
        f" ({f.lag.late:.1f} s spent more than 1 s behind)",
        f"CPU during the run: server {f.cpu_server:.0%} of a core, this script"
        f" {f.cpu_self:.0%} of a core (the machine has {os.cpu_count()})",
        "server log:     "
        + ", ".join(f"{n} {lvl}" for lvl, n in sorted(f.log.levels.items())),
    ]
    lines += [f"  {line}" for line in f.log.errors]
    lines.append(
        f"shutdown:       SIGTERM -> exit {f.exit_code} in {f.stop_seconds:.1f} s;"
        f" walkers closed with {dict(f.walker_closes)}"
    )
    if f.invalid:
        lines.append(f"  invalid snapshots: {f.invalid[:5]}")
    if f.unexpected:
        lines.append(f"  unexpected outcomes: {f.unexpected}")
    return lines


def verdict(f: Findings) -> tuple[list[str], bool]:
    """The checks' lines and the result; True if every check passed."""
    results = checks(f)
    lines = ["checks:"]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {name}" for name, ok in results]
    failed = [name for name, ok in results if not ok]
    if f.lag.worst >= 1 and len(failed) > 1:
        lines.append(
            "note: this script fell behind (the machine is busy?): its requests"
            " may have reached the server after the handshake deadline and its"
            " walkers missed the keepalive window, so failures of timing above"
            " may be its own, not the server's"
        )
    lines.append(f"result: {'PASS' if not failed else 'FAIL'}")
    return lines, not failed


def print_report(f: Findings) -> int:
    """Print the report; the exit status: 0 if every check passed, else 1."""
    lines, passed = verdict(f)
    print("\n".join(describe(f) + lines), flush=True)
    return 0 if passed else 1
