"""Running the Node load generator (``scripts/bench/loadgen.js``) once.

The generator prints JSON lines: ``connected`` when its clients are in,
``measure_start`` and ``measure_end`` around the measured window, then its
``result``. The driver samples the server's CPU time and memory at those
moments, so that the server's figures cover the same window as the
generator's.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import IO, Protocol

from .context import Context
from .pinning import parse_pin
from .records import JSON
from .servers import BENCH, ROOT

LOADGEN = BENCH / "loadgen.js"


class Measured(Protocol):
    """A server as the generator's driver sees it (see measure.running)."""

    @property
    def url(self) -> str: ...

    def cpu_seconds(self) -> float | None: ...

    def rss_kib(self) -> int | None: ...

    def exit_status(self) -> str | None: ...


@dataclass
class GeneratorRun:
    """What one loadgen.js run reported, plus the server's side of it."""

    result: JSON | None = None
    error: str | None = None
    connected: JSON | None = None
    server_cpu_connect: float | None = None
    server_cpu_window: float | None = None
    server_cpu_cores: float | None = None
    #: Before the generator started (start_kb: when its window started).
    server_rss_before_kb: int | None = None
    server_rss_start_kb: int | None = None
    server_rss_end_kb: int | None = None
    generator_nice: int | None = None
    #: Its SCHED_RR priority if it ran as a real-time process.
    generator_realtime: int | None = None
    #: The 1-minute load average at the end of the window.
    window_load: float | None = None
    #: Over the window, in cores: time the server's and the generator's
    #: threads were ready to run but waited for a CPU (see run_queue_wait).
    server_cpu_wait: float | None = None
    generator_cpu_wait: float | None = None
    seconds: float = 0.0


def _renice(
    increment: int, realtime: int = 0, cpus: frozenset[int] = frozenset()
) -> None:
    """In the child, before exec: change its niceness if allowed, make it a
    real-time process (SCHED_RR at ``realtime``) if asked and allowed, and
    keep it on ``cpus`` if given."""
    try:
        os.nice(increment)
    except OSError:
        pass  # Not allowed to raise our priority: run at the default.
    if cpus:
        os.sched_setaffinity(0, cpus)
    if realtime > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(realtime))
        except OSError:
            pass  # Not allowed: run_loadgen records the policy it got.


def _read_lines(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    """Hand each line of ``stream`` over, then an empty one at EOF."""
    for line in stream:
        lines.put(line)
    lines.put(b"")


def run_queue_waits(pid: int | None) -> dict[str, int] | None:
    """Nanoseconds each thread of ``pid`` has spent ready to run but waiting
    for a CPU (the second field of its /proc schedstat), by thread id; None
    if the kernel does not say. On a shared machine: the time others took."""
    if pid is None:
        return None
    found = {}
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                with open(f"{task.path}/schedstat") as f:
                    found[task.name] = int(f.read().split()[1])
            except (OSError, IndexError, ValueError):
                continue  # A thread that ended meanwhile.
    except OSError:
        return None
    return found


def waited(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    """Seconds of waiting between two run_queue_waits of one process: each
    thread's growth (a thread started meanwhile, all of its wait). A thread
    that ended meanwhile is not counted."""
    if before is None or after is None:
        return None
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


def command(scenario: str, url: str, options: dict[str, object]) -> list[str]:
    argv = ["node", str(LOADGEN), scenario, "--url", url]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    return argv


def run_loadgen(
    ctx: Context,
    server: Measured,
    scenario: str,
    options: dict[str, object],
    timeout: float,
    label: str,
) -> GeneratorRun:
    """Run loadgen.js against ``server``; sample the server on its events."""
    log = ctx.logs / f"{label}.loadgen.log"
    run = GeneratorRun()
    started = time.monotonic()
    cpu_start = server.cpu_seconds()
    nice = int(ctx.args.generator_nice)
    realtime = int(getattr(ctx.args, "generator_realtime", 0))
    cpus = frozenset(parse_pin(getattr(ctx.args, "pin", None))[1])
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            command(scenario, server.url, options),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=lambda: _renice(nice, realtime, cpus),
        )
        try:
            run.generator_nice = os.getpriority(os.PRIO_PROCESS, proc.pid)
            if os.sched_getscheduler(proc.pid) == os.SCHED_RR:
                run.generator_realtime = os.sched_getparam(proc.pid).sched_priority
        except OSError:
            pass
        assert proc.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(
            target=_read_lines, args=(proc.stdout, lines), daemon=True
        ).start()
        try:
            _follow(run, server, lines, timeout, cpu_start, proc.pid)
        finally:
            _end(proc, patient=run.result is not None)
    if run.result is None and run.error is None:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        run.error = "the load generator failed: " + " / ".join(tail)
    run.seconds = time.monotonic() - started
    return run


def _follow(
    run: GeneratorRun,
    server: Measured,
    lines: queue.Queue[bytes],
    timeout: float,
    cpu_start: float | None,
    generator_pid: int,
) -> None:
    """Read the generator's events until its result, its end or ``timeout``."""
    deadline = time.monotonic() + timeout
    window_start: tuple[float, float] | None = None
    waits: tuple[float, dict[str, int] | None, dict[str, int] | None] | None = None
    # One process (not a room of several): its threads' waiting for a CPU.
    server_pid: int | None = getattr(server, "pid", None)
    server_gone_at: float | None = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            run.error = f"the load generator did not finish in {timeout:g} s"
            return
        if server.exit_status() and server_gone_at is None:
            server_gone_at = time.monotonic()
        if server_gone_at and time.monotonic() - server_gone_at > 15:
            run.error = "the server is gone and the generator is stuck"
            return
        try:
            line = lines.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            continue
        if not line:
            return  # The generator closed its stdout: it is done.
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("event")
        cpu = server.cpu_seconds()
        if kind == "connected":
            run.connected = event
            if cpu is not None and cpu_start is not None:
                run.server_cpu_connect = cpu - cpu_start
        elif kind == "measure_start":
            if cpu is not None:
                window_start = (time.monotonic(), cpu)
            run.server_rss_start_kb = server.rss_kib()
            waits = (
                time.monotonic(),
                run_queue_waits(server_pid),
                run_queue_waits(generator_pid),
            )
        elif kind == "measure_end":
            if window_start is not None and cpu is not None:
                t0, cpu0 = window_start
                run.server_cpu_window = cpu - cpu0
                run.server_cpu_cores = (cpu - cpu0) / (time.monotonic() - t0)
            run.server_rss_end_kb = server.rss_kib()
            run.window_load = round(os.getloadavg()[0], 2)
            if waits is not None:
                t0, server0, generator0 = waits
                seconds = time.monotonic() - t0
                server1 = waited(server0, run_queue_waits(server_pid))
                generator1 = waited(generator0, run_queue_waits(generator_pid))
                if server1 is not None and seconds:
                    run.server_cpu_wait = round(server1 / seconds, 3)
                if generator1 is not None and seconds:
                    run.generator_cpu_wait = round(generator1 / seconds, 3)
        elif kind == "result":
            run.result = event
        elif kind == "error":
            run.error = f"load generator: {event.get('message')}"


def _end(proc: subprocess.Popen[bytes], patient: bool) -> None:
    """Let the generator exit (a few seconds if it gave its result)."""
    if proc.poll() is None:
        try:
            proc.wait(5 if patient else 0.1)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
