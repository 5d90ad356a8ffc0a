"""handshake: loops that open and close WebSockets; handshakes per second."""

from __future__ import annotations

import argparse

from ..context import Context, say
from ..measure import label_for, measure
from ..records import HandshakeRecord
from ..table import SERVER, SERVER_CPU, STATUS, col, fmt, gen_cpu, gen_lag
from ..table import ratio_col, render

NAME = "handshake"


def runs(args: argparse.Namespace, servers: int) -> int:
    return servers


def run(ctx: Context) -> None:
    a = ctx.args
    loops = a.handshake_concurrency
    for name in ctx.servers:
        ctx.progress(f"handshake: {name}, {loops} loops")
        record = HandshakeRecord(NAME, name, {"concurrency": loops, "path": "/echo"})
        options: dict[str, object] = {
            "clients": loops,
            "path": "/echo",
            "warmup": a.short_warmup,
            "duration": a.short_duration,
            "grace": 3,
        }
        timeout = a.short_warmup + a.short_duration + 60
        got = measure(ctx, record, NAME, options, timeout, label_for(NAME, name))
        if got is not None:
            r = got.result or {}
            record.handshakes_per_second = r.get("handshakes_per_second")
            record.handshake_time = r.get("handshake_time")
            record.failed = r.get("failed")
        ctx.keep(record)
        say(f"    {fmt(record.handshakes_per_second)} handshakes/s")


def tables(ctx: Context) -> list[tuple[str, str]]:
    rows = ctx.in_order(NAME)
    if not rows:
        return []
    title = (
        f"Handshakes ({rows[0].params.get('concurrency')} loops opening and"
        " closing WebSockets to /echo)"
    )
    columns = [
        SERVER,
        col("handshakes/s", "handshakes_per_second"),
        ratio_col("÷ ref", "handshakes_per_second", rows, ctx.reference),
        col("p50 ms", "handshake_time.p50_ms"),
        col("p99 ms", "handshake_time.p99_ms"),
        SERVER_CPU,
        gen_cpu(),
        gen_lag(),
        STATUS,
    ]
    return [(title, render(rows, columns))]
