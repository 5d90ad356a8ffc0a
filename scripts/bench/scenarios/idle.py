"""idle: N idle connections: all accepted? server RSS per connection."""

from __future__ import annotations

import argparse

from ..context import Context, say
from ..measure import connecting_load, label_for, measure, note_refused
from ..records import IdleRecord
from ..table import MIB, SERVER, STATUS, col, fmt, gen_cpu, gen_lag, ratio_col
from ..table import render

NAME = "idle"


def runs(args: argparse.Namespace, servers: int) -> int:
    return servers


def run(ctx: Context) -> None:
    a = ctx.args
    count = a.idle_connections
    params = {"connections": count, "path": a.idle_path}
    for name in ctx.servers:
        ctx.progress(f"idle: {name}, {count} connections to {a.idle_path}")
        record = IdleRecord(NAME, name, dict(params))
        options: dict[str, object] = {
            "clients": count,
            "path": a.idle_path,
            "warmup": a.idle_settle,
            "duration": a.short_warmup,
            "grace": 0,
            "concurrency": a.connect_concurrency,
            "connect-deadline": a.connect_deadline,
        }
        timeout = 30 * (count / a.connect_concurrency + 1) + 30
        got = measure(ctx, record, NAME, options, timeout, label_for(NAME, name))
        if got is not None:
            c = got.connected or {}
            connected = c.get("connected") or 0
            record.connected = connected
            record.connect_failed = c.get("failed")
            record.still_open = (got.result or {}).get("still_open")
            record.connect_all_seconds = c.get("connect_all_seconds")
            record.connect_phase_seconds = c.get("connect_phase_seconds")
            record.generator_connecting = connecting_load(c)
            before, after = got.server_rss_before_kb, got.server_rss_end_kb
            record.server_rss_before_kb = before
            record.server_rss_after_kb = after
            if before is not None and after is not None and connected:
                record.rss_per_connection_kb = round((after - before) / connected, 1)
            note_refused(record, c.get("failed"), count)
        ctx.keep(record)
        say(
            f"    {record.connected} open,"
            f" {fmt(record.rss_per_connection_kb)} KiB each"
        )


def tables(ctx: Context) -> list[tuple[str, str]]:
    rows = ctx.in_order(NAME)
    if not rows:
        return []
    p = rows[0].params
    title = f"Idle connections ({p.get('connections')} to {p.get('path')})"
    columns = [
        SERVER,
        col("accepted", "connected"),
        col("failed", "connect_failed"),
        col("RSS MB before", "server_rss_before_kb", scale=MIB),
        col("RSS MB after", "server_rss_after_kb", scale=MIB),
        col("KiB/conn", "rss_per_connection_kb"),
        ratio_col("÷ ref", "rss_per_connection_kb", rows, ctx.reference),
        col("connecting s", "connect_phase_seconds"),
        gen_cpu("generator_connecting"),
        gen_lag("generator_connecting"),
        STATUS,
    ]
    return [(title, render(rows, columns))]
