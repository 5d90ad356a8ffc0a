"""One measurement: a server started fresh, the generator run, the record filled.

Every measurement starts its server anew (``serverproc.ServerProcess``: a
free port, found in the startup line; CPU and memory from /proc), so no run
inherits another's threads, buffers or garbage. A ``--target`` server is
already running: it is driven, but has no CPU or memory figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from serverproc import ServerError, ServerProcess

from .context import Context
from .generator import GeneratorRun, run_loadgen
from .pinning import pin, pinned
from .records import JSON, Record, round_or_none

#: A server that refused connections with 429 limits them per address, and
#: every benchmark client comes from 127.0.0.1.
PER_ADDRESS_HINT = (
    "429: the server limits connections per client address, and every client"
    " here comes from 127.0.0.1; run wspractice with"
    " --max-connections-per-address 0 (e.g. --variant 'NAME"
    ' args="--max-connections-per-address 0"\')'
)


class Target:
    """A server that is already running: the same face as ServerProcess."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.pid: int | None = None
        self.peak_rss_kib = 0

    def cpu_seconds(self) -> float | None:
        return None

    def rss_kib(self) -> int | None:
        return None

    def exit_status(self) -> str | None:
        return None

    def log_tail(self, lines: int = 5) -> str:
        return ""


Server = ServerProcess | Target


@contextmanager
def running(ctx: Context, name: str, label: str) -> Iterator[Server]:
    """Server ``name``, started for this measurement and stopped after it.
    Raises ServerError if it does not start."""
    spec = ctx.specs[name]
    if spec.url is not None:
        yield Target(spec.url)
        return
    server = ServerProcess(
        spec.command,
        log_path=ctx.logs / f"{label}.server.log",
        cwd=spec.cwd,
        env=spec.env,
        max_rss_kib=int(ctx.args.max_server_rss) * 1024,
    )
    try:
        server.start(ctx.args.startup_timeout)
        cpus = pinned(ctx)[0]
        if cpus and server.pid is not None:
            pin(server.pid, cpus)
        time.sleep(ctx.args.settle)  # Before the baseline samples.
        yield server
    finally:
        server.stop()


def label_for(scenario: str, name: str, extra: object = "") -> str:
    """The stem of a run's log files: ``presence-wspractice-100``."""
    return f"{scenario}-{name}{'-' + str(extra) if extra != '' else ''}"


def finish_record(record: Record, server: Server, run: GeneratorRun | None) -> None:
    """Add the server's and the generator's side to a record; judge it."""
    record.server_rss_peak_kb = server.peak_rss_kib or None
    gone = server.exit_status()
    if gone:
        record.fail(f"server {gone}")
        record.server_log_tail = server.log_tail() or None
    if run is None:
        return
    record.generator_seconds = round(run.seconds, 2)
    record.generator_nice = run.generator_nice
    record.generator_realtime = run.generator_realtime
    record.window_load = run.window_load
    record.server_cpu_wait = run.server_cpu_wait
    record.generator_cpu_wait = run.generator_cpu_wait
    if run.error:
        record.fail(run.error)
    result = run.result or {}
    record.generator = result.get("generator")
    record.errors = result.get("errors") or {}
    record.server_cpu_cores = round_or_none(run.server_cpu_cores)
    record.server_cpu_seconds = round_or_none(run.server_cpu_window)
    if result.get("error_count"):
        top = sorted(record.errors.items(), key=lambda kv: -kv[1])[:3]
        for what, n in top:
            record.flag("errors", f"{n}× {what}")
        if any("429" in what for what in record.errors):
            record.notes.append(PER_ADDRESS_HINT)


def measure(
    ctx: Context,
    record: Record,
    kind: str,
    options: dict[str, object],
    timeout: float,
    label: str,
) -> GeneratorRun | None:
    """Start ``record.server``, run the generator's ``kind`` against it, and
    add both sides to ``record``; None if the server did not start."""
    try:
        with running(ctx, record.server, label) as server:
            before = server.rss_kib()
            run = run_loadgen(ctx, server, kind, options, timeout, label)
            run.server_rss_before_kb = before
            finish_record(record, server, run)
            return run
    except ServerError as exc:
        record.fail(f"server did not start: {exc}")
        return None


def note_refused(record: Record, failed: int | None, attempted: int) -> None:
    if failed:
        record.flag("errors", f"{failed} of {attempted} not accepted")


def connecting_load(connected: JSON) -> JSON:
    """The generator's CPU (in cores) and loop delay while it connected."""
    gen = dict(connected.get("generator") or {})
    seconds = connected.get("connect_phase_seconds") or 0
    if seconds and gen.get("cpu_seconds") is not None:
        gen["cpu_cores"] = round(gen["cpu_seconds"] / seconds, 3)
    return gen
