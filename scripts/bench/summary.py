"""The summary table: each wspractice variant next to the websockets server.

One row per target figure (presence at each user count, join, the stalled
client, echo, handshakes, idle connections), one column per variant, then,
if it ran, the websockets server (the Python peer the project first
measured itself against) and the reference variant's figure divided by its.
"""

from __future__ import annotations

from collections.abc import Callable

from .context import Context
from .records import Record
from .table import fmt, get, number, ratio, table

PEER = "websockets"

#: (what, scenario, params, how to write a cell, figure for the ratio)
Target = tuple[str, str, dict[str, object], Callable[[Record | None], str], str]


def find(
    ctx: Context, scenario: str, name: str, params: dict[str, object]
) -> Record | None:
    found = [
        r
        for r in ctx.pick(scenario, **params)
        if r.server == name and r.status != "skipped"
    ]
    return found[-1] if found else None


def headline(ctx: Context, variants: list[str]) -> tuple[str, str] | None:
    """(title, table), or None if no variant ran."""
    variants = [v for v in variants if v in ctx.servers]
    if not variants:
        return None
    peer = PEER if PEER in ctx.servers else None

    def presence(r: Record | None) -> str:
        if r is None:
            return "—"
        p99 = fmt(number(r, "latency.p99_ms"))
        return f"p99 {p99} ms, {fmt(get(r, 'updates_lost'))} lost"

    def connected(r: Record | None) -> str:
        if r is None:
            return "—"
        total = r.params.get("users") or r.params.get("connections")
        seconds = fmt(get(r, "connect_phase_seconds"))
        return f"{fmt(get(r, 'connected'))} of {fmt(total)} in {seconds} s"

    def stalled(r: Record | None) -> str:
        if r is None:
            return "—"
        before = [
            b
            for b in ctx.pick("stall")
            if b.server == r.server and "stalled_clients" not in b.params
        ]
        p99 = fmt(number(before[-1], "latency.p99_ms")) if before else "—"
        peak = get(r, "server_rss_peak_kb")
        return (
            f"p99 {p99} → {fmt(number(r, 'latency.p99_ms'))} ms,"
            f" {fmt(get(r, 'updates_lost'))} lost,"
            f" RSS peak {fmt(peak / 1024 if peak is not None else None)} MB"
        )

    def figure(path: str) -> Callable[[Record | None], str]:
        return lambda r: fmt(get(r, path)) if r is not None else "—"

    rate = ctx.args.rate
    targets: list[Target] = [
        (
            f"presence, {users} users × {rate:g} Hz",
            "presence",
            {"users": users, "protocol": None},
            presence,
            "latency.p99_ms",
        )
        for users in ctx.args.users
    ]
    echo, shakes, rss = (
        "messages_per_second",
        "handshakes_per_second",
        "rss_per_connection_kb",
    )
    targets += [
        ("join", "join", {}, connected, "connect_phase_seconds"),
        ("one stalled client", "stall", {"stalled_clients": 1}, stalled, ""),
        ("echo msgs/s", "echo", {}, figure(echo), echo),
        ("handshakes/s", "handshake", {}, figure(shakes), shakes),
        ("idle connections", "idle", {}, connected, ""),
        ("idle RSS per connection, KiB", "idle", {}, figure(rss), rss),
    ]
    reference = ctx.reference if ctx.reference in variants else variants[0]
    rows = []
    for what, scenario, params, cell, path in targets:
        ours = [find(ctx, scenario, name, params) for name in variants]
        theirs = find(ctx, scenario, peer, params) if peer else None
        if all(r is None for r in ours) and theirs is None:
            continue
        row = [what] + [cell(r) for r in ours]
        if peer:
            mine = ours[variants.index(reference)]
            quotient = None
            if path and mine is not None and theirs is not None:
                quotient = ratio(number(mine, path), number(theirs, path))
            row += [cell(theirs), "" if quotient is None else f"{quotient:.2f}×"]
        rows.append(row)
    if not rows:
        return None
    headers = ["target", *variants]
    if not peer:
        return "Summary: wspractice", table(headers, rows)
    headers += [peer, f"{reference} ÷ peer"]
    return f"Summary: wspractice against the {PEER} server", table(headers, rows)
