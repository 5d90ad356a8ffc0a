"""presence: N users sending their state R times a second; broadcast latency.

For an update with sequence number s sent at time t by client c, the latency
is the time at which c first receives a snapshot whose entry for c carries a
sequence number >= s, minus t; an update is lost if no such snapshot arrives
before the end of the run plus the grace period (docs/benchmarks.md). One run
per --users value and server; a server that collapsed (lost more than 5% of
its updates, or failed) is not run at bigger counts unless --keep-going.

With ``--protocols full,delta`` each size also runs with every client on the
``wspractice-delta`` subprotocol (the generator's room scenario: a client
applies the changes it is sent to its own map, and an update's latency is
the time until the first message after which that map carries it); those
runs have ``"protocol": "delta"`` in their params and a table of their own,
next to the full-map runs of the same size. Servers that do not speak the
subprotocol (the peers) are not run with it.
"""

from __future__ import annotations

import argparse
import os

from serverproc import ServerError

from ..context import Context, say
from ..generator import run_loadgen
from ..measure import finish_record, label_for, running
from ..records import JSON, PresenceRecord, Record
from ..stalled import StalledClient
from ..table import LOAD, SERVER, SERVER_CPU, STATUS, WAITED, Column, col, fmt
from ..table import gen_cpu
from ..table import gen_lag
from ..table import number, ratio, ratio_col, render

NAME = "presence"


#: The presence scenario's client protocols (--protocols).
PROTOCOLS = ("full", "delta")


def runs(args: argparse.Namespace, servers: int) -> int:
    return len(args.users) * servers * len(protocols(args))


def protocols(args: argparse.Namespace) -> list[str]:
    """--protocols, or only the tutorial's format (an earlier run's settings)."""
    return list(getattr(args, "protocols", None) or ["full"])


def speaks_delta(ctx: Context, name: str) -> bool:
    """Whether a server can be run with wspractice-delta clients: every
    wspractice variant, and a --target (which may be one); not the peers."""
    spec = ctx.specs.get(name)
    return spec is None or spec.variant is not None or spec.url is not None


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
    room: dict[str, object] | None = None,
    params: dict[str, object] | None = None,
    grace: float | None = None,
) -> PresenceRecord:
    """One presence measurement: users × rate for ``duration`` seconds, with
    one more client that never reads if ``stalled``.

    ``room``: run the generator's room scenario instead, with these options
    (``movers``, ``delta-movers``, ``delta-idle``, ``watch``, ``verify-wait``);
    ``params`` go into the record's params; ``grace`` replaces --grace.
    """
    a = ctx.args
    workers = a.workers if a.workers > 0 else auto_workers(users)
    grace = a.grace if grace is None else grace
    record_params: dict[str, object] = {
        "users": users,
        "rate": a.rate,
        "duration": duration,
    }
    if stalled:
        record_params["stalled_clients"] = 1
    record_params.update(params or {})
    record = PresenceRecord(scenario, name, record_params)
    options: dict[str, object] = {
        "clients": users,
        "rate": a.rate,
        "warmup": a.warmup,
        "duration": duration,
        "grace": grace,
        "workers": workers,
        "concurrency": a.connect_concurrency,
        "connect-deadline": a.connect_deadline,
    }
    options.update(room or {})
    connect_budget = 15 * (users / a.connect_concurrency + 1)
    timeout = connect_budget + a.warmup + duration + grace + 60
    timeout += float(str(options.get("verify-wait", 0))) * 2
    timeout += float(str(options.get("settle-wait", 0)))
    stall: StalledClient | None = None
    try:
        with running(ctx, name, label) as server:
            if stalled:
                stall = StalledClient(server.port)
            kind = "presence" if room is None else "room"
            got = run_loadgen(ctx, server, kind, options, timeout, label)
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
    if "room" in r:
        read_room(record, r)


def read_room(record: PresenceRecord, r: JSON) -> None:
    """A room run's figures by kind of client, and the maps' check."""
    record.room = r.get("room")
    verify: JSON = r.get("verify") or {}
    record.verify = verify
    record.settle = r.get("settle")
    settle: JSON = record.settle or {}
    if settle.get("waiting"):
        record.flag(
            "unsettled",
            f"{settle['waiting']} clients did not hold the whole room after"
            f" {settle.get('seconds')} s (--settle-wait); the run went ahead",
        )
    others = sum(
        (part.get("others_lost") or 0) for part in (record.room or {}).values()
    )
    if others:
        record.flag("lossy", f"{others} updates of other movers never seen")
    if verify.get("error"):
        record.flag("mismatch", f"the maps were not checked: {verify['error']}")
        return
    wrong = verify.get("delta_mismatches") or 0
    late = (verify.get("delta_unconverged") or 0) + (
        verify.get("full_unconverged") or 0
    )
    if wrong:
        record.flag("mismatch", f"{wrong} delta clients' maps differ from the server's")
    if late:
        record.notes.append(f"{late} clients had not caught up with the server's map")


def run(ctx: Context) -> None:
    a = ctx.args
    gave_up: dict[tuple[str, str], int] = {}
    for users in a.users:
        for name in ctx.servers:
            for protocol in protocols(a):
                params: dict[str, object] = {"users": users, "rate": a.rate}
                if protocol != "full":
                    params["protocol"] = protocol
                why = None
                if (name, protocol) in gave_up and not a.keep_going:
                    why = (
                        f"collapsed at {gave_up[name, protocol]} users"
                        " (--keep-going runs it anyway)"
                    )
                elif protocol == "delta" and not speaks_delta(ctx, name):
                    why = "does not speak wspractice-delta"
                if why is not None:
                    skipped = PresenceRecord(NAME, name, params)
                    skipped.status = "skipped"
                    skipped.notes.append(why)
                    ctx.skip(skipped)
                    continue
                record = ctx.keep(one_run(ctx, name, users, protocol))
                lat = record.latency or {}
                say(
                    f"    p50 {fmt(lat.get('p50_ms'))} ms,"
                    f" p99 {fmt(lat.get('p99_ms'))} ms,"
                    f" lost {record.updates_lost}, {record.status}"
                )
                if record.collapsed:
                    gave_up.setdefault((name, protocol), users)


def one_run(ctx: Context, name: str, users: int, protocol: str) -> PresenceRecord:
    """One presence run: the tutorial's format, or every client on delta."""
    a = ctx.args
    if protocol == "full":
        ctx.progress(f"presence: {name}, {users} users × {a.rate:g} Hz")
        label = label_for(NAME, name, users)
        return presence_run(ctx, name, users, label, duration=a.duration)
    ctx.progress(f"presence: {name}, {users} users × {a.rate:g} Hz, on {protocol}")
    room: dict[str, object] = {
        "movers": users,
        "delta-movers": users,
        "delta-idle": 0,
        "watch": 0,  # Every user moves: only its own updates, as with full maps.
        "verify-wait": a.verify_wait,
        "settle-wait": a.settle_wait,
    }
    return presence_run(
        ctx,
        name,
        users,
        label_for(NAME, name, f"{users}-{protocol}"),
        duration=a.duration,
        room=room,
        params={"protocol": protocol},
    )


def tables(ctx: Context) -> list[tuple[str, str]]:
    found = full_table(ctx)
    found += delta_table(ctx)
    return found


def full_table(ctx: Context) -> list[tuple[str, str]]:
    """The tutorial's format: every server at every size."""
    everything = ctx.pick(NAME, protocol=None)
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


def delta_table(ctx: Context) -> list[tuple[str, str]]:
    """wspractice-delta against full maps, each server and size side by side."""
    everything = ctx.pick(NAME)
    if not any(r.params.get("protocol") for r in everything):
        return []
    rows: list[Record] = [r for r in everything if r.status != "skipped"]
    repeat = repeats(rows)
    rows.sort(
        key=lambda r: (
            r.params.get("users", 0),
            ctx.order(r.server),
            repeat[id(r)],
            r.params.get("protocol") or "",
        )
    )
    a = ctx.args
    title = (
        f"Presence broadcast, every client on wspractice-delta against full maps"
        f" ({a.rate:g} updates/s per user, {a.duration:g} s measured)"
    )
    columns = [
        SERVER,
        col("users", "params.users"),
        ("protocol", lambda r: str(r.params.get("protocol") or "full")),
        col("p50 ms", "latency.p50_ms"),
        col("p99 ms", "latency.p99_ms"),
        vs_full("p99 ÷ full", "latency.p99_ms", rows, repeat),
        col("lost", "updates_lost"),
        col("map mismatches", "verify.delta_mismatches"),
        col("msgs/s", "snapshots_per_second"),
        col("MB/s", "bytes_per_second", scale=1e-6),
        vs_full("MB/s ÷ full", "bytes_per_second", rows, repeat),
        SERVER_CPU,
        vs_full("CPU ÷ full", "server_cpu_cores", rows, repeat),
        gen_cpu(),
        gen_lag(),
        LOAD,
        WAITED,
        STATUS,
    ]
    text = render(rows, columns)
    skipped = [r for r in everything if r.status == "skipped"]
    if skipped:
        text += "\n\nNot run: " + "; ".join(
            f"{r.server} at {r.params.get('users')} users on"
            f" {r.params.get('protocol') or 'full'} ({', '.join(r.notes)})"
            for r in skipped
        )
    return [(title, text)]


def kind_of(r: Record) -> str:
    """A run's clients: ``full`` or ``delta`` (presence), or its big-room mode."""
    return str(r.params.get("protocol") or r.params.get("mode") or "full")


def repeats(rows: list[Record]) -> dict[int, int]:
    """Each run's number among the runs of the same server, size and kind,
    in the order they ran (``--users 300,300``: 0, then 1). A delta run is
    compared with the full-map run of the same number, the one beside it."""
    seen: dict[tuple[str, object, str], int] = {}
    found = {}
    for r in rows:
        key = (r.server, r.params.get("users"), kind_of(r))
        found[id(r)] = seen.get(key, 0)
        seen[key] = found[id(r)] + 1
    return found


def vs_full(
    header: str, path: str, rows: list[Record], repeat: dict[int, int]
) -> Column:
    """A figure divided by the same server's with full maps at the same size,
    in the run of the same number (``repeats``)."""
    bases = {
        (r.server, r.params.get("users"), repeat[id(r)]): number(r, path)
        for r in rows
        if r.usable and kind_of(r) == "full"
    }

    def cell(row: Record) -> str:
        base = bases.get((row.server, row.params.get("users"), repeat[id(row)]))
        value = ratio(number(row, path), base)
        return "—" if value is None else f"{value:.2f}×"

    return header, cell
