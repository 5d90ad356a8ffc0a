"""stall: one client that stops reading among N users.

The other users' p99 with and without it, what was lost, the server's memory
at the start and at its peak, and whether the server let the stalled client
go. The run without it is the presence run of the same size and length when
there is one (--quick arranges that).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..context import Context, say
from ..measure import label_for
from ..records import PresenceRecord, Record
from ..table import MIB, SERVER, col, fmt, gen_cpu, gen_lag, number, ratio
from ..table import ratio_col, render, status_cell
from .presence import presence_run

NAME = "stall"


def runs(args: argparse.Namespace, servers: int) -> int:
    return 2 * servers


def baseline(ctx: Context, name: str, others: int) -> Record | None:
    """A presence run of ``others`` users as long as the stall runs."""
    for r in ctx.pick("presence", users=others, protocol=None):
        if (
            r.server == name
            and r.params.get("duration") == ctx.args.stall_duration
            and r.status != "skipped"
        ):
            return r
    return None


def run(ctx: Context) -> None:
    a = ctx.args
    others = a.stall_users - 1
    for name in ctx.servers:
        for stalled in (False, True):
            same = baseline(ctx, name, others)
            if not stalled and same is not None:
                copy = dataclasses.replace(same, scenario=NAME, notes=list(same.notes))
                assert isinstance(copy, PresenceRecord)
                copy.reused = "the presence run of the same size"
                ctx.skip(copy)
                continue
            what = "with" if stalled else "without"
            ctx.progress(
                f"stall: {name}, {others} users {what} a stalled client,"
                f" {a.stall_duration:g} s"
            )
            label = label_for(NAME, name, what)
            record = ctx.keep(
                presence_run(
                    ctx,
                    name,
                    others,
                    label,
                    duration=a.stall_duration,
                    scenario=NAME,
                    stalled=stalled,
                )
            )
            p99 = (record.latency or {}).get("p99_ms")
            say(f"    p99 {fmt(p99)} ms, {record.status}")


@dataclass
class StallPair:
    """A server's two stall runs, one table row."""

    server: str
    without: Record
    with_: Record

    @property
    def usable(self) -> bool:
        return self.with_.usable

    @property
    def growth(self) -> float | None:
        """The others' p99 with the stalled client ÷ without it."""
        return ratio(
            number(self.with_, "latency.p99_ms"), number(self.without, "latency.p99_ms")
        )


def pairs(ctx: Context) -> list[StallPair]:
    found = []
    runs_ = ctx.pick(NAME)
    for name in sorted({r.server for r in runs_}, key=ctx.order):
        mine = [r for r in runs_ if r.server == name]
        without = [r for r in mine if "stalled_clients" not in r.params]
        with_ = [r for r in mine if "stalled_clients" in r.params]
        if without and with_:
            found.append(StallPair(name, without[0], with_[0]))
    return found


def tables(ctx: Context) -> list[tuple[str, str]]:
    rows = pairs(ctx)
    if not rows:
        return []
    others = rows[0].with_.params.get("users", 0)
    title = (
        f"Stalled client (1 client that stops reading among {others + 1};"
        f" figures for the other {others})"
    )
    columns = [
        SERVER,
        col("p99 ms without", "without.latency.p99_ms"),
        col("p99 ms with", "with_.latency.p99_ms"),
        ("with ÷ without", lambda r: f"{r.growth:.2f}×" if r.growth else "—"),
        ratio_col("with ÷ ref", "with_.latency.p99_ms", rows, ctx.reference),
        col("lost with", "with_.updates_lost"),
        col("RSS MB start", "with_.server_rss_start_kb", scale=MIB),
        col("RSS MB peak", "with_.server_rss_peak_kb", scale=MIB),
        col("peak without", "without.server_rss_peak_kb", scale=MIB),
        col("stalled one dropped", "with_.stalled_client_dropped"),
        gen_cpu("with_.generator"),
        gen_lag("with_.generator"),
        ("status", lambda r: status_cell(r.with_)),
    ]
    return [(title, render(rows, columns))]
