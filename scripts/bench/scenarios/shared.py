"""shared: one room over several wspractice processes, through Redis.

Two measurements, each side by side in one run (docs/benchmarks.md, "One
room, several processes"):

* **The Redis hop.** ``--shared-users`` (25,100) users × ``--rate``, run
  against one process (no Redis), one process with ``--redis`` (the link's
  own cost, nothing crosses), and two processes with ``--redis`` and the
  users split over their ports (client i on process i mod 2). Besides each
  user's latency to its own snapshot, every user times the updates of the
  next user (``--peer-offset 1`` of the load generator): with two processes
  that user is on the other one, so its updates cross Redis.
* **Capacity.** The largest room at ``--rate`` that holds p99 ≤ 50 ms with
  no update lost, for one process and for ``--workers 2``: the user counts
  of ``--shared-capacity`` in turn, each layout stopping after its first
  miss.

Every layout gets a fresh ``redis-server`` (persistence off, on a free port)
and fresh wspractice processes for every run. Server CPU is every wspractice
process's (the supervisor and its workers for ``--workers``); Redis's own CPU
is a column of its own.

On a shared machine one run can land on a burst of someone else's load, so
every measurement is repeated ``--shared-repeat`` times (3), the layouts
taking turns, and the tables give the median of the repeats (the p99 column
also the lowest and highest); a size holds if the median p99 is within the
limit and no repeat lost an update.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import procstat
from serverproc import ServerError, ServerProcess

from ..context import Context, say
from ..generator import run_loadgen
from ..measure import finish_record
from ..records import SharedRecord
from ..table import STATUS, col, fmt, gen_cpu, number, render
from .presence import read_result

NAME = "shared"
#: The capacity criterion.
P99_LIMIT_MS = 50.0
PLOT = "shared_capacity.png"


@dataclass(frozen=True)
class Layout:
    """How the room is served: processes, ports, Redis."""

    name: str
    #: For log file names.
    slug: str
    processes: int
    redis: bool
    workers: int = 1
    #: More options for every process.
    args: tuple[str, ...] = ()

    @property
    def ports(self) -> int:
        return self.processes if self.workers == 1 else 1


ONE = Layout("1 process", "one", 1, redis=False)
ONE_REDIS = Layout("1 process + Redis", "one-redis", 1, redis=True)
TWO = Layout("2 processes + Redis", "two", 2, redis=True)
WORKERS = Layout("--workers 2 + Redis", "workers2", 1, redis=True, workers=2)
#: Processes sharing cores: rounds spaced as one process would space them
#: (docs/scaling.md, "More processes, more rounds").
WORKERS_SPACED = Layout(
    "--workers 2 + Redis, --broadcast-interval 5",
    "workers2-bi5",
    1,
    redis=True,
    workers=2,
    args=("--broadcast-interval", "5"),
)
HOP_LAYOUTS = (ONE, ONE_REDIS, TWO)
CAPACITY_LAYOUTS = (ONE, WORKERS, WORKERS_SPACED)


def runs(args: argparse.Namespace, servers: int) -> int:
    hop = len(args.shared_users) * len(HOP_LAYOUTS)
    capacity = len(args.shared_capacity) * len(CAPACITY_LAYOUTS)
    return (hop + capacity) * args.shared_repeat


# ------------------------------------------------------------ the servers


class RedisProcess:
    """A redis-server of the run's own: a free port, persistence off."""

    def __init__(self, log: Path, port: int = 0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError(
                "redis-server is not on PATH (apt-get install redis-server)"
            )
        self.port = port or _free_port()
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise ServerError("redis-server did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self) -> float | None:
        return procstat.cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Room:
    """The servers of one layout, as the generator's driver sees one server:
    ``url`` lists every port; CPU and memory add up every process.

    Each ``cpu_seconds()`` call also notes Redis's CPU, so that Redis's share
    of the measured window can be found afterwards (:meth:`redis_window`).
    """

    def __init__(self, processes: list[ServerProcess], redis: RedisProcess | None):
        self.processes = processes
        self.redis = redis
        self._samples: list[tuple[float, float, float]] = []

    @property
    def url(self) -> str:
        return ",".join(p.url for p in self.processes)

    def _pids(self) -> list[int]:
        pids = []
        for process in self.processes:
            if process.pid is None:
                continue
            pids.append(process.pid)
            try:  # --workers: the supervisor's children serve.
                path = f"/proc/{process.pid}/task/{process.pid}/children"
                with open(path) as children:
                    pids += [int(pid) for pid in children.read().split()]
            except OSError:
                pass
        return pids

    def cpu_seconds(self) -> float | None:
        values = [procstat.cpu_seconds(pid) for pid in self._pids()]
        if not values or any(v is None for v in values):
            return None
        total = sum(v for v in values if v is not None)
        redis = self.redis.cpu_seconds() if self.redis is not None else 0.0
        self._samples.append((time.monotonic(), total, redis or 0.0))
        return total

    def rss_kib(self) -> int | None:
        values = [procstat.rss_kib(pid) for pid in self._pids()]
        return sum(v for v in values if v is not None) or None

    def exit_status(self) -> str | None:
        for process in self.processes:
            gone = process.exit_status()
            if gone:
                return gone
        return None

    @property
    def peak_rss_kib(self) -> int:
        return sum(p.peak_rss_kib for p in self.processes)

    def log_tail(self, lines: int = 5) -> str:
        return "\n".join(p.log_tail(lines) for p in self.processes)

    def redis_window(self, server_window: float | None) -> tuple[float, float] | None:
        """Redis's CPU seconds and the wall seconds over the window whose
        server CPU was ``server_window`` (found among the samples)."""
        if server_window is None or self.redis is None:
            return None
        s = self._samples
        for i in range(len(s)):
            for j in range(i + 1, len(s)):
                if s[j][1] - s[i][1] == server_window:
                    return s[j][2] - s[i][2], s[j][0] - s[i][0]
        return None


@contextmanager
def room(ctx: Context, layout: Layout, label: str) -> Iterator[Room]:
    """The layout's servers, started fresh; stopped afterwards."""
    spec = ctx.specs[ctx.reference]
    redis = RedisProcess(ctx.logs / f"{label}.redis.log") if layout.redis else None
    processes: list[ServerProcess] = []
    try:
        for n in range(layout.ports):
            command = list(spec.command)
            if redis is not None:
                command += ["--redis", redis.url]
            if layout.workers > 1:
                command += ["--workers", str(layout.workers)]
            command += layout.args
            process = ServerProcess(
                command,
                log_path=ctx.logs / f"{label}.server{n + 1}.log",
                cwd=spec.cwd,
                env=spec.env,
                max_rss_kib=int(ctx.args.max_server_rss) * 1024,
            )
            processes.append(process)
            process.start(ctx.args.startup_timeout)
        time.sleep(ctx.args.settle)
        yield Room(processes, redis)
    finally:
        for process in processes:
            process.stop()
        if redis is not None:
            redis.stop()


# ------------------------------------------------------------ one run


def shared_run(
    ctx: Context, layout: Layout, users: int, part: str, peers: bool, repeat: int
) -> SharedRecord:
    a = ctx.args
    params: dict[str, object] = {
        "part": part,
        "layout": layout.name,
        "users": users,
        "rate": a.rate,
        "duration": a.duration,
        "repeat": repeat,
    }
    record = SharedRecord(NAME, ctx.reference, params)
    record.processes = layout.processes * layout.workers
    record.machine_load = round(os.getloadavg()[0], 2)
    options: dict[str, object] = {
        "clients": users,
        "rate": a.rate,
        "warmup": a.warmup,
        "duration": a.duration,
        "grace": a.grace,
        "workers": 1,
        "concurrency": a.connect_concurrency,
        "connect-deadline": a.connect_deadline,
        "peer-offset": 1 if peers else 0,
    }
    label = f"{NAME}-{part}-{layout.slug}-{users}-{repeat + 1}"
    timeout = 15 * (users / a.connect_concurrency + 1) + a.warmup + a.duration + 90
    try:
        with room(ctx, layout, label) as servers:
            got = run_loadgen(ctx, servers, "presence", options, timeout, label)
            finish_record(record, servers, got)
            window = servers.redis_window(got.server_cpu_window)
    except ServerError as exc:
        record.fail(f"a server did not start: {exc}")
        return record
    result = got.result or {}
    read_result(record, result, got.server_cpu_window)
    record.workers = 1
    if window is not None:
        cpu, seconds = window
        record.redis_cpu_seconds = round(cpu, 3)
        record.redis_cpu_cores = round(cpu / seconds, 3) if seconds else None
    if peers:
        record.peer_latency = result.get("peer_latency")
        record.peer_updates_measured = result.get("peer_updates_measured")
        record.peer_updates_lost = result.get("peer_updates_lost")
        record.peer_pairs = result.get("peer_pairs")
        record.peer_pairs_crossing = result.get("peer_pairs_crossing")
        if record.peer_updates_lost:
            record.flag("lossy", f"{record.peer_updates_lost} peer updates lost")
    return record


def holds(record: SharedRecord) -> bool:
    """The capacity criterion: p99 ≤ 50 ms, nothing lost, every user in."""
    p99 = (record.latency or {}).get("p99_ms")
    return (
        record.status == "ok"
        and p99 is not None
        and p99 <= P99_LIMIT_MS
        and not record.updates_lost
        and not record.connect_failed
    )


def run(ctx: Context) -> None:
    a = ctx.args
    for users in a.shared_users:
        for repeat in range(a.shared_repeat):
            for layout in HOP_LAYOUTS:
                ctx.progress(
                    f"shared hop: {layout.name}, {users} users × {a.rate:g} Hz"
                    f" ({repeat + 1}/{a.shared_repeat})"
                )
                record = ctx.keep(
                    shared_run(ctx, layout, users, "hop", peers=True, repeat=repeat)
                )
                own, peer = record.latency or {}, record.peer_latency or {}
                say(
                    f"    own p99 {fmt(own.get('p99_ms'))} ms, peer p50"
                    f" {fmt(peer.get('p50_ms'))} p99 {fmt(peer.get('p99_ms'))} ms,"
                    f" lost {record.updates_lost}/{record.peer_updates_lost},"
                    f" {record.status}"
                )
    missed: set[str] = set()
    for users in a.shared_capacity:
        done: dict[str, list[SharedRecord]] = {}
        for repeat in range(a.shared_repeat):
            for layout in CAPACITY_LAYOUTS:
                if layout.name in missed:
                    continue
                ctx.progress(
                    f"shared capacity: {layout.name}, {users} users"
                    f" ({repeat + 1}/{a.shared_repeat})"
                )
                record = ctx.keep(
                    shared_run(ctx, layout, users, "capacity", False, repeat)
                )
                done.setdefault(layout.name, []).append(record)
                lat = record.latency or {}
                say(
                    f"    p99 {fmt(lat.get('p99_ms'))} ms, lost {record.updates_lost},"
                    f" server CPU {fmt(record.server_cpu_cores)},"
                    f" Redis CPU {fmt(record.redis_cpu_cores)}"
                )
        for name, records in done.items():
            if not holds(median_of(records)):
                missed.add(name)


def median_of(records: list[SharedRecord]) -> SharedRecord:
    """One row for repeats of one measurement: the median of each figure,
    the sum of what was lost, the p99's range, and the worst status."""
    first = records[0]
    row = dataclasses.replace(first, notes=[], params=dict(first.params))
    row.params["repeats"] = len(records)

    def median(path: str) -> float | None:
        values = [number(r, path) for r in records]
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    for name in ("latency", "peer_latency"):
        row.__dict__[name] = {
            key: median(f"{name}.{key}") for key in ("p50_ms", "p99_ms")
        }
    p99s = [(r.latency or {}).get("p99_ms") for r in records]
    known = [v for v in p99s if v is not None]
    row.p99_range = f"{min(known):.3g}–{max(known):.3g}" if known else None
    for name in (
        "server_cpu_cores",
        "redis_cpu_cores",
        "snapshots_per_second",
        "machine_load",
    ):
        row.__dict__[name] = median(name)
    for name in ("updates_lost", "peer_updates_lost", "connect_failed"):
        values = [getattr(r, name) for r in records if getattr(r, name) is not None]
        row.__dict__[name] = sum(values) if values else None
    row.generator = {"cpu_cores": median("generator.cpu_cores"), "workers": 1}
    order = ["ok", "errors", "lossy", "failed"]
    row.status = max((r.status for r in records), key=order.index)
    return row


# ------------------------------------------------------------ tables


def tables(ctx: Context) -> list[tuple[str, str]]:
    records = [r for r in ctx.pick(NAME) if isinstance(r, SharedRecord)]
    groups: dict[tuple[object, ...], list[SharedRecord]] = {}
    for r in records:
        key = (r.params.get("part"), r.params.get("layout"), r.params.get("users"))
        groups.setdefault(key, []).append(r)
    rows = [median_of(group) for group in groups.values()]
    out = []
    hop = [r for r in rows if r.params.get("part") == "hop"]
    if hop:
        out.append(hop_table(ctx, hop))
    capacity = [r for r in rows if r.params.get("part") == "capacity"]
    if capacity:
        out.append(capacity_table(ctx, capacity))
    if records:
        _plot(ctx, records)
    return out


def _layout(r: SharedRecord) -> str:
    return str(r.params.get("layout"))


def _peer_ratio(rows: list[SharedRecord], key: str) -> dict[int, float]:
    base = {
        int(r.params["users"]): (r.peer_latency or {}).get(key)
        for r in rows
        if _layout(r) == ONE.name
    }
    return {u: v for u, v in base.items() if v}


def hop_table(ctx: Context, rows: list[SharedRecord]) -> tuple[str, str]:
    rows.sort(key=lambda r: (r.params.get("users", 0), _order(r)))
    p50 = _peer_ratio(rows, "p50_ms")
    p99 = _peer_ratio(rows, "p99_ms")

    def ratio(base: dict[int, float], key: str) -> object:
        def cell(r: SharedRecord) -> str:
            value = (r.peer_latency or {}).get(key)
            ref = base.get(int(r.params["users"]))
            return f"{value / ref:.2f}×" if value and ref else "—"

        return cell

    columns = [
        ("layout", _layout),
        col("users", "params.users"),
        col("own p50", "latency.p50_ms"),
        col("own p99", "latency.p99_ms"),
        col("peer p50", "peer_latency.p50_ms"),
        col("peer p99", "peer_latency.p99_ms"),
        ("own p99 range", lambda r: r.p99_range or "—"),
        ("peer p50 ÷ 1", ratio(p50, "p50_ms")),
        ("peer p99 ÷ 1", ratio(p99, "p99_ms")),
        ("crossing", lambda r: f"{r.peer_pairs_crossing}/{r.peer_pairs}"),
        ("lost", lambda r: f"{fmt(r.updates_lost)}/{fmt(r.peer_updates_lost)}"),
        col("server CPU", "server_cpu_cores"),
        col("Redis CPU", "redis_cpu_cores"),
        gen_cpu(),
        col("load", "machine_load"),
        STATUS,
    ]
    title = (
        f"One room, several processes: the Redis hop ({ctx.args.rate:g} updates/s"
        " per user; ms; own: a user's update in its own snapshots; peer: the"
        " next user's update as this user sees it, on the other process when"
        " split; lost: own/peer; medians of"
        f" {getattr(ctx.args, 'shared_repeat', 1)} runs)"
    )
    return title, render(rows, columns)


def capacity_table(ctx: Context, rows: list[SharedRecord]) -> tuple[str, str]:
    rows.sort(key=lambda r: (_order(r), r.params.get("users", 0)))
    columns = [
        ("layout", _layout),
        col("users", "params.users"),
        col("p50 ms", "latency.p50_ms"),
        col("p99 ms", "latency.p99_ms"),
        ("p99 range", lambda r: r.p99_range or "—"),
        col("lost", "updates_lost"),
        col("snapshots/s", "snapshots_per_second"),
        col("server CPU", "server_cpu_cores"),
        col("Redis CPU", "redis_cpu_cores"),
        gen_cpu(),
        col("load", "machine_load"),
        ("holds", lambda r: "yes" if holds(r) else "no"),
    ]
    text = render(rows, columns)
    best = []
    for layout in CAPACITY_LAYOUTS:
        held = [
            int(r.params["users"])
            for r in rows
            if _layout(r) == layout.name and holds(r)
        ]
        best.append(f"{layout.name}: {max(held) if held else 'none'}")
    text += (
        f"\n\nLargest room holding p99 ≤ {P99_LIMIT_MS:g} ms with nothing lost: "
        + "; ".join(best)
    )
    title = (
        f"One room, several processes: capacity at {ctx.args.rate:g} Hz (medians"
        f" of {getattr(ctx.args, 'shared_repeat', 1)} runs)"
    )
    return title, text


def _order(r: SharedRecord) -> int:
    names = [layout.name for layout in (*HOP_LAYOUTS, WORKERS, WORKERS_SPACED)]
    return names.index(_layout(r)) if _layout(r) in names else 99


def _plot(ctx: Context, records: list[SharedRecord]) -> Path | None:
    """Two panels: capacity (p99 against users, each run a dot, the median a
    line) and the hop (the next user's p50 and p99 by layout)."""
    if getattr(ctx.args, "no_plot", False):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110)
    capacity = [r for r in records if r.params.get("part") == "capacity"]
    for layout in CAPACITY_LAYOUTS:
        mine = [r for r in capacity if _layout(r) == layout.name]
        by_users: dict[int, list[float]] = {}
        for r in mine:
            p99 = number(r, "latency.p99_ms")
            if p99 is not None:
                by_users.setdefault(int(r.params["users"]), []).append(p99)
        if not by_users:
            continue
        xs = sorted(by_users)
        (line,) = left.plot(
            xs,
            [statistics.median(by_users[x]) for x in xs],
            marker="o",
            label=f"{layout.name} (median)",
        )
        left.scatter(
            [x for x in xs for _ in by_users[x]],
            [y for x in xs for y in by_users[x]],
            s=12,
            alpha=0.5,
            color=line.get_color(),
        )
    left.axhline(P99_LIMIT_MS, color="grey", linestyle="--", linewidth=1)
    left.set_yscale("log")
    left.set_xlabel(f"users, each sending its state {ctx.args.rate:g} times a second")
    left.set_ylabel("p99 latency, ms (log); dots: each run")
    left.set_title("Capacity: p99 against users")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    hop = [r for r in records if r.params.get("part") == "hop"]
    sizes = sorted({int(r.params["users"]) for r in hop})
    width = 0.8 / len(HOP_LAYOUTS)
    for i, layout in enumerate(HOP_LAYOUTS):
        for key, alpha in (("p99_ms", 0.35), ("p50_ms", 1.0)):
            values = []
            for users in sizes:
                runs = [
                    number(r, f"peer_latency.{key}")
                    for r in hop
                    if _layout(r) == layout.name and r.params["users"] == users
                ]
                known = [v for v in runs if v is not None]
                values.append(statistics.median(known) if known else 0.0)
            right.bar(
                [n + i * width for n in range(len(sizes))],
                values,
                width,
                color=f"C{i}",
                alpha=alpha,
                label=f"{layout.name} ({key[:3]})",
            )
    right.set_yscale("log")
    right.set_xticks(
        [n + width * (len(HOP_LAYOUTS) - 1) / 2 for n in range(len(sizes))],
        [f"{u} users" for u in sizes],
    )
    right.set_ylabel("the next user's update, ms (log; median of runs)")
    right.set_title("The Redis hop: p50 (dark) and p99 (light)")
    right.grid(True, axis="y", alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    path = ctx.out / PLOT
    fig.savefig(path)
    plt.close(fig)
    return path
