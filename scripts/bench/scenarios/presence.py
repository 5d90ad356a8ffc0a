"""presence: N users sending their state R times a second; broadcast latency.

For an update with sequence number s sent at time t by client c, the latency
is the time at which c first receives a snapshot whose entry for c carries a
sequence number >= s, minus t; an update is lost if no such snapshot arrives
before the end of the run plus the grace period (docs/benchmarks.md). One run
per --users value and server; a server that collapsed (lost more than 5% of
its updates, or failed) is not run at bigger counts unless --keep-going.
"""

from __future__ import annotations

import argparse
import os

from serverproc import ServerError

from ..context import Context, say
from ..generator import run_loadgen
from ..measure import finish_record, label_for, running
from ..records import JSON, PresenceRecord
from ..stalled import StalledClient
from ..table import SERVER, SERVER_CPU, STATUS, col, fmt, gen_cpu, gen_lag
from ..table import ratio_col, render

NAME = "presence"


def runs(args: argparse.Namespace, servers: int) -> int:
    return len(args.users) * servers


def auto_workers(users: int) -> int:
    """Generator processes: one, or two from 300 users on more than two cores.

    On two cores a second worker only competes with the server: against a
    fast reference server at 1,000 users it made the generator's loop delay
    worse, not better.
    """
    return 2 if users >= 300 and (os.cpu_count() or 1) > 2 else 1


def presence_run(
    ctx: Context,
    name: str,
    users: int,
    label: str,
    *,
    duration: float,
    scenario: str = NAME,
    stalled: bool = False,
) -> PresenceRecord:
    """One presence measurement: users × rate for ``duration`` seconds, with
    one more client that never reads if ``stalled``."""
    a = ctx.args
    workers = a.workers if a.workers > 0 else auto_workers(users)
    params: dict[str, object] = {"users": users, "rate": a.rate, "duration": duration}
    if stalled:
        params["stalled_clients"] = 1
    record = PresenceRecord(scenario, name, params)
    options: dict[str, object] = {
        "clients": users,
        "rate": a.rate,
        "warmup": a.warmup,
        "duration": duration,
        "grace": a.grace,
        "workers": workers,
        "concurrency": a.connect_concurrency,
        "connect-deadline": a.connect_deadline,
    }
    connect_budget = 15 * (users / a.connect_concurrency + 1)
    timeout = connect_budget + a.warmup + duration + a.grace + 60
    stall: StalledClient | None = None
    try:
        with running(ctx, name, label) as server:
            if stalled:
                stall = StalledClient(server.port)
            got = run_loadgen(ctx, server, "presence", options, timeout, label)
            if stall is not None:
                held = stall.held_by(server.pid)
                record.stalled_client_dropped = None if held is None else not held
                stall.close()  # Before the server is stopped: it need not wait.
            finish_record(record, server, got)
    except ServerError as exc:
        record.fail(f"server did not start: {exc}")
        return record
    finally:
        if stall is not None:
            stall.close()
    record.workers = workers
    read_result(record, got.result or {}, got.server_cpu_window)
    record.server_rss_start_kb = got.server_rss_start_kb
    record.server_rss_end_kb = got.server_rss_end_kb
    return record


def read_result(record: PresenceRecord, r: JSON, server_cpu: float | None) -> None:
    """The generator's presence figures into ``record``, with their notes."""
    measured = r.get("updates_measured") or 0
    lost = r.get("updates_lost")
    snapshots = r.get("snapshots") or 0
    connect = r.get("connect") or {}
    record.latency = r.get("latency")
    record.updates_sent = r.get("updates_sent")
    record.updates_measured = measured
    record.updates_lost = lost
    record.lost_share = lost / measured if measured and lost is not None else None
    record.snapshots_per_second = r.get("snapshots_per_second")
    record.bytes_per_second = r.get("bytes_per_second")
    record.disconnects = r.get("disconnects")
    record.snapshots_without_own_entry = r.get("snapshots_without_own_entry")
    record.stale_snapshots = r.get("stale_snapshots")
    record.uuids_distinct = r.get("uuids_distinct")
    record.connected = connect.get("connected")
    record.connect_failed = connect.get("failed")
    if server_cpu is not None and snapshots:
        record.server_cpu_us_per_snapshot = round(server_cpu / snapshots * 1e6, 2)
    if record.connect_failed:
        record.notes.append(f"{record.connect_failed} users could not connect")
    if lost:
        record.flag("lossy", f"{lost} of {measured} updates lost")
    if r.get("snapshots_without_own_entry"):
        record.notes.append(
            f"{r['snapshots_without_own_entry']} snapshots lacked the receiver's entry"
        )
    if r.get("stale_snapshots"):
        record.notes.append(
            f"{r['stale_snapshots']} snapshots arrived after a newer one"
        )
    if r and r.get("uuids_distinct") != r.get("uuids_learned"):
        record.notes.append("two connections got the same uuid")
    if ((r.get("generator") or {}).get("busiest_worker_cpu") or 0) > 0.9:
        record.notes.append("a generator worker was over 90% busy: it may be the limit")


def run(ctx: Context) -> None:
    a = ctx.args
    gave_up: dict[str, int] = {}
    for users in a.users:
        for name in ctx.servers:
            if name in gave_up and not a.keep_going:
                skipped = PresenceRecord(NAME, name, {"users": users, "rate": a.rate})
                skipped.status = "skipped"
                skipped.notes.append(
                    f"collapsed at {gave_up[name]} users (--keep-going runs it anyway)"
                )
                ctx.skip(skipped)
                continue
            ctx.progress(f"presence: {name}, {users} users × {a.rate:g} Hz")
            label = label_for(NAME, name, users)
            record = ctx.keep(
                presence_run(ctx, name, users, label, duration=a.duration)
            )
            lat = record.latency or {}
            say(
                f"    p50 {fmt(lat.get('p50_ms'))} ms, p99 {fmt(lat.get('p99_ms'))} ms,"
                f" lost {record.updates_lost}, {record.status}"
            )
            if record.collapsed:
                gave_up.setdefault(name, users)


def tables(ctx: Context) -> list[tuple[str, str]]:
    everything = ctx.pick(NAME)
    rows = [r for r in everything if r.status != "skipped"]
    if not rows:
        return []
    rows.sort(key=lambda r: (r.params.get("users", 0), ctx.order(r.server)))
    a = ctx.args
    title = (
        f"Presence broadcast ({a.rate:g} updates/s per user, {a.duration:g} s"
        " measured; latency as defined in docs/benchmarks.md)"
    )
    columns = [
        SERVER,
        col("users", "params.users"),
        col("p50 ms", "latency.p50_ms"),
        col("p99 ms", "latency.p99_ms"),
        ratio_col("p99 ÷ ref", "latency.p99_ms", rows, ctx.reference, "params.users"),
        col("lost", "updates_lost"),
        col("snapshots/s", "snapshots_per_second"),
        col("MB/s", "bytes_per_second", scale=1e-6),
        col("CPU µs/snap", "server_cpu_us_per_snapshot"),
        SERVER_CPU,
        gen_cpu(),
        gen_lag(),
        STATUS,
    ]
    text = render(rows, columns)
    skipped: dict[str, int] = {}
    for r in everything:
        if r.status == "skipped":
            skipped.setdefault(r.server, r.params.get("users", 0))
    if skipped:
        text += "\n\nNot run, having collapsed at a smaller count: " + ", ".join(
            f"{name} from {users} users" for name, users in skipped.items()
        )
    return [(title, text)]
