"""join: N users connecting at once, C at a time: all accepted? how long?"""

from __future__ import annotations

import argparse

from ..context import Context, say
from ..measure import connecting_load, label_for, measure, note_refused
from ..records import JoinRecord, round_or_none
from ..table import SERVER, STATUS, col, fmt, gen_cpu, gen_lag, ratio_col, render

NAME = "join"


def runs(args: argparse.Namespace, servers: int) -> int:
    return servers


def run(ctx: Context) -> None:
    a = ctx.args
    users = a.join_users
    params = {"users": users, "concurrency": a.connect_concurrency}
    for name in ctx.servers:
        ctx.progress(f"join: {name}, {users} users, {a.connect_concurrency} at a time")
        record = JoinRecord(NAME, name, dict(params))
        options: dict[str, object] = {
            "clients": users,
            "rate": 0,
            "warmup": 0,
            "duration": min(1.0, a.short_duration),
            "grace": 0,
            "concurrency": a.connect_concurrency,
            "connect-deadline": a.connect_deadline,
            "workers": 1,
        }
        timeout = 30 * (users / a.connect_concurrency + 1) + 30
        got = measure(ctx, record, "presence", options, timeout, label_for(NAME, name))
        if got is not None:
            c = got.connected or {}
            record.connected = c.get("connected")
            record.connect_failed = c.get("failed")
            record.connect_all_seconds = c.get("connect_all_seconds")
            record.connect_phase_seconds = c.get("connect_phase_seconds")
            record.connect_times = c.get("connect_times")
            record.generator_connecting = connecting_load(c)
            record.server_cpu_seconds = round_or_none(got.server_cpu_connect)
            note_refused(record, c.get("failed"), users)
        ctx.keep(record)
        say(f"    {record.connected} connected in {fmt(record.connect_all_seconds)} s")


def tables(ctx: Context) -> list[tuple[str, str]]:
    rows = ctx.in_order(NAME)
    if not rows:
        return []
    p = rows[0].params
    title = (
        f"Join ({p.get('users')} users connecting, {p.get('concurrency')} at a time)"
    )
    columns = [
        SERVER,
        col("accepted", "connected"),
        col("failed", "connect_failed"),
        col("all done in s", "connect_phase_seconds"),
        ratio_col("÷ ref", "connect_phase_seconds", rows, ctx.reference),
        col("connect p99 ms", "connect_times.p99_ms"),
        col("server CPU s", "server_cpu_seconds"),
        gen_cpu("generator_connecting"),
        gen_lag("generator_connecting"),
        STATUS,
    ]
    return [(title, render(rows, columns))]
