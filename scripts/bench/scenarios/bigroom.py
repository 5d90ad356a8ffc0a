"""bigroom: a big, mostly quiet room; full maps against changes only.

N connections (``--room-sizes``) of which M (``--room-movers``) move at
``--rate`` and the others stay connected and idle, run once per mode
(``--room-modes``):

* ``full``: every client on the tutorial's format, the whole map after every
  change (the baseline: N entries to N connections per round);
* ``delta``: every client on ``wspractice-delta``: the map once, then only
  what changed;
* ``mixed``: half the movers and half the idle users on each, in one room.

For the movers of each kind: the latency of their own updates and of the
other movers' (each mover watches up to ``--watch`` others; latency as the
presence scenario defines it, a delta client's "snapshot" being its applied
map), and what was lost within ``--room-grace``; for every client at the end,
whether its map is the server's (map mismatches, clients not caught up). For
the server: CPU, and what a round costs: a round is estimated as the most
messages any one client received in the window (a client that never falls
behind receives one message per round), bytes per round as the bytes every
client received in the window divided by that.

The servers that do not speak wspractice-delta (the peers) run the full mode
only. This scenario is not in the default run: ``--scenarios bigroom``.
"""

from __future__ import annotations

import argparse

from ..context import Context, say
from ..measure import label_for
from ..records import PresenceRecord, Record
from ..table import LOAD, SERVER, SERVER_CPU, STATUS, WAITED, Column, col, fmt
from ..table import gen_cpu
from ..table import gen_lag, get, number, render
from .presence import presence_run, repeats, speaks_delta, vs_full

NAME = "bigroom"
MODES = ("full", "delta", "mixed")


def runs(args: argparse.Namespace, servers: int) -> int:
    return len(args.room_sizes) * len(args.room_modes) * servers


def mix(size: int, movers: int, mode: str) -> tuple[int, int]:
    """(movers on delta, idle users on delta) in a room of ``size``."""
    idle = size - movers
    if mode == "full":
        return 0, 0
    if mode == "delta":
        return movers, idle
    return movers // 2, idle // 2


def run(ctx: Context) -> None:
    a = ctx.args
    for size in a.room_sizes:
        movers = min(a.room_movers, size)
        for name in ctx.servers:
            for mode in a.room_modes:
                delta_movers, delta_idle = mix(size, movers, mode)
                params: dict[str, object] = {
                    "users": size,
                    "movers": movers,
                    "mode": mode,
                    "delta_movers": delta_movers,
                    "delta_idle": delta_idle,
                }
                if mode != "full" and not speaks_delta(ctx, name):
                    skipped = PresenceRecord(NAME, name, dict(params, rate=a.rate))
                    skipped.status = "skipped"
                    skipped.notes.append("does not speak wspractice-delta")
                    ctx.skip(skipped)
                    continue
                ctx.progress(
                    f"bigroom: {name}, {size} connections, {movers} moving at"
                    f" {a.rate:g} Hz, {mode} ({delta_movers} movers and"
                    f" {delta_idle} idle on delta)"
                )
                room: dict[str, object] = {
                    "movers": movers,
                    "delta-movers": delta_movers,
                    "delta-idle": delta_idle,
                    "watch": a.watch,
                    "verify-wait": a.verify_wait,
                    "settle-wait": a.settle_wait,
                }
                record = ctx.keep(
                    presence_run(
                        ctx,
                        name,
                        size,
                        label_for(NAME, name, f"{size}-{mode}"),
                        duration=a.duration,
                        scenario=NAME,
                        room=room,
                        params=params,
                        grace=a.room_grace,
                    )
                )
                say("    " + summary(record))


def summary(r: Record) -> str:
    """One progress line: each kind's movers' p99 and losses, the maps."""
    parts = []
    for kind in ("delta", "full"):
        k = get(r, f"room.{kind}") or {}
        if k.get("movers"):
            parts.append(
                f"{kind} movers p99 {fmt(get(k, 'latency.p99_ms'))} ms"
                f" (others {fmt(get(k, 'others_latency.p99_ms'))} ms),"
                f" lost {k.get('updates_lost')}+{k.get('others_lost')}"
            )
    parts.append(f"map mismatches {fmt(get(r, 'verify.delta_mismatches'))}")
    return "; ".join(parts) + f"; {r.status}"


def rounds(r: Record) -> float | None:
    """Rounds: the most messages one client received in the window."""
    most = max(
        (number(r, f"room.{kind}.most_messages") or 0 for kind in ("full", "delta")),
        default=0,
    )
    return most or None


def per_second(r: Record) -> float | None:
    n, seconds = rounds(r), number(r, "params.duration")
    return n / seconds if n and seconds else None


def mb_per_round(r: Record) -> float | None:
    n, rate = per_second(r), number(r, "bytes_per_second")
    return rate / n / 1e6 if n and rate is not None else None


def cpu_ms_per_round(r: Record) -> float | None:
    n, cpu = rounds(r), number(r, "server_cpu_seconds")
    return cpu / n * 1e3 if n and cpu is not None else None


def not_caught_up(r: Record) -> int | None:
    """Clients whose map was not the server's within --verify-wait."""
    verify = get(r, "verify") or {}
    if "delta_checked" not in verify:
        return None
    return int(verify.get("delta_unconverged", 0) + verify.get("full_unconverged", 0))


def figure(header: str, value: object) -> Column:
    def cell(r: Record) -> str:
        return fmt(value(r) if callable(value) else None)

    return header, cell


def lost(kind: str) -> Column:
    """Own and others' updates lost, ``own+others``; blank without movers."""

    def cell(r: Record) -> str:
        k = get(r, f"room.{kind}") or {}
        if not k.get("movers"):
            return ""
        return f"{fmt(k.get('updates_lost'))}+{fmt(k.get('others_lost'))}"

    return f"{kind} lost", cell


def kind_col(header: str, kind: str, path: str) -> Column:
    """A figure of one kind of client; blank if the room had no such movers."""

    def cell(r: Record) -> str:
        if not get(r, f"room.{kind}.movers"):
            return ""
        return fmt(get(r, f"room.{kind}.{path}"))

    return header, cell


def tables(ctx: Context) -> list[tuple[str, str]]:
    rows: list[Record] = [r for r in ctx.pick(NAME) if r.status != "skipped"]
    if not rows:
        return []
    order = {mode: i for i, mode in enumerate(MODES)}
    repeat = repeats(rows)
    rows.sort(
        key=lambda r: (
            r.params.get("users", 0),
            ctx.order(r.server),
            repeat[id(r)],
            order.get(str(r.params.get("mode")), 9),
        )
    )
    first = rows[0].params
    a = ctx.args
    what = (
        f"{first.get('movers')} moving at {a.rate:g} Hz, the others idle;"
        f" {a.duration:g} s measured"
    )
    mode: Column = ("mode", lambda r: str(r.params.get("mode")))
    movers = [
        SERVER,
        col("connections", "params.users"),
        mode,
        kind_col("delta own p50 ms", "delta", "latency.p50_ms"),
        kind_col("delta own p99 ms", "delta", "latency.p99_ms"),
        kind_col("delta others p99 ms", "delta", "others_latency.p99_ms"),
        lost("delta"),
        kind_col("full own p50 ms", "full", "latency.p50_ms"),
        kind_col("full own p99 ms", "full", "latency.p99_ms"),
        kind_col("full others p99 ms", "full", "others_latency.p99_ms"),
        lost("full"),
        col("map mismatches", "verify.delta_mismatches"),
        figure("not caught up", not_caught_up),
        gen_cpu(),
        gen_lag(),
        LOAD,
        WAITED,
        STATUS,
    ]
    costs = [
        SERVER,
        col("connections", "params.users"),
        mode,
        col("settled in s", "settle.seconds"),
        figure("rounds/s", per_second),
        col("MB/s", "bytes_per_second", scale=1e-6),
        figure("MB/round", mb_per_round),
        vs_full("MB/s ÷ full", "bytes_per_second", rows, repeat),
        SERVER_CPU,
        vs_full("CPU ÷ full", "server_cpu_cores", rows, repeat),
        figure("CPU ms/round", cpu_ms_per_round),
        col("RSS MB peak", "server_rss_peak_kb", scale=1 / 1024),
    ]
    text = render(rows, movers)
    skipped = sorted(
        {r.server for r in ctx.pick(NAME) if r.status == "skipped"}, key=ctx.order
    )
    if skipped:
        text += "\n\nRun with full maps only (no wspractice-delta): " + ", ".join(
            skipped
        )
    return [
        (
            f"Big room: what the movers see ({what}; own and others' updates,"
            " lost as own+others)",
            text,
        ),
        (f"Big room: what it costs ({what})", render(rows, costs)),
    ]
