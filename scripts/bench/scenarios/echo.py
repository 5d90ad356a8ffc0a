"""echo: clients on /echo, one message in flight each; messages per second."""

from __future__ import annotations

import argparse

from ..context import Context, say
from ..measure import label_for, measure
from ..records import EchoRecord
from ..table import SERVER, SERVER_CPU, STATUS, col, fmt, gen_cpu, gen_lag
from ..table import ratio_col, render

NAME = "echo"


def runs(args: argparse.Namespace, servers: int) -> int:
    return servers


def run(ctx: Context) -> None:
    a = ctx.args
    params = {"clients": a.echo_clients, "size": a.echo_size, "window": 1}
    for name in ctx.servers:
        ctx.progress(f"echo: {name}, {a.echo_clients} clients × {a.echo_size} B")
        record = EchoRecord(NAME, name, dict(params))
        options: dict[str, object] = {
            "clients": a.echo_clients,
            "size": a.echo_size,
            "warmup": a.short_warmup,
            "duration": a.short_duration,
            "grace": 3,
        }
        timeout = a.short_warmup + a.short_duration + 60
        got = measure(ctx, record, NAME, options, timeout, label_for(NAME, name))
        if got is not None:
            r = got.result or {}
            record.messages_per_second = r.get("messages_per_second")
            record.rtt = r.get("rtt")
        ctx.keep(record)
        say(f"    {fmt(record.messages_per_second)} messages/s")


def tables(ctx: Context) -> list[tuple[str, str]]:
    rows = ctx.in_order(NAME)
    if not rows:
        return []
    p = rows[0].params
    title = (
        f"Echo ({p.get('clients')} clients, {p.get('size')}-byte messages,"
        " one in flight each)"
    )
    columns = [
        SERVER,
        col("msgs/s", "messages_per_second"),
        ratio_col("÷ ref", "messages_per_second", rows, ctx.reference),
        col("RTT p50 ms", "rtt.p50_ms"),
        col("RTT p99 ms", "rtt.p99_ms"),
        SERVER_CPU,
        gen_cpu(),
        gen_lag(),
        STATUS,
    ]
    return [(title, render(rows, columns))]
