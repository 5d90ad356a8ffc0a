#!/usr/bin/env python3
"""Benchmark wspractice side by side with peer servers that speak its protocol.

    python scripts/benchmark.py --quick      # a smoke test, under a minute
    python scripts/benchmark.py              # the full run (15 to 20 minutes)

Every server is started fresh for every measurement, on a free port, and
driven by the Node load generator ``scripts/bench/loadgen.js`` (the ``ws``
package, several processes if needed). The driver reads each server's CPU
time and memory from ``/proc``; the generator reports its own CPU and event
loop delay, so a run shows whether the generator was the limit.

Servers (``--servers``): ``wspractice`` (this checkout, ``python -m
wspractice``), ``tutorial`` (the Node tutorial: http + ws + uuid),
``websockets`` (the websockets library's threaded server),
``simple-websocket`` (behind Werkzeug's WSGI server) and
``websocket-server``. The peers live in ``scripts/bench/peers/``.

Scenarios (``--scenarios``), each printed as a table with each server's
figures and the ratio to wspractice (``÷ wsp``: the server's figure divided
by wspractice's):

  handshake  loops that open and close WebSockets: handshakes/s
  echo       clients on /echo with one message in flight: messages/s, RTT
  presence   N users sending their state R times a second: broadcast latency
             p50/p99, lost updates, snapshots/s and bytes/s delivered,
             server CPU per delivered snapshot (one run per --users value)
  join       N users connecting at once, C at a time: all accepted? how long?
  stall      one client that stops reading among N users: the others' p99
             with and without it, and the server's memory
  idle       N idle connections: server RSS per connection, all accepted?

Results go to ``--output`` (default ``artifacts/bench-DATE``): results.json,
results.md (the tables) and p99_latency_vs_users.png. See docs/benchmarks.md
for the definitions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import queue
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench"
PEERS = BENCH / "peers"
LOADGEN = BENCH / "loadgen.js"

#: Python packages the peers and the plot need (the ``bench`` extra in setup.cfg).
BENCH_REQUIREMENTS = {
    "websockets": "websockets>=13",
    "simple_websocket": "simple-websocket>=1.0",
    "werkzeug": "werkzeug>=2.3",
    "websocket_server": "websocket-server>=0.6.4",
    "matplotlib": "matplotlib>=3.7",
}

#: The startup line every server prints: "... running on port N ...".
PORT_LINE = re.compile(r"running on port (\d+)")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: A presence run "collapsed" past this share of lost updates; bigger user
#: counts are then skipped for that server (unless --keep-going).
COLLAPSE_LOST_SHARE = 0.05

Record = dict[str, Any]


def say(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- servers


@dataclass
class ServerSpec:
    """How to start one server: a command that prints its port."""

    name: str
    command: list[str]
    about: str
    env: dict[str, str] = field(default_factory=dict)
    #: Python modules the server needs (keys of BENCH_REQUIREMENTS).
    needs: tuple[str, ...] = ()
    #: A server that is already running: never started or stopped here.
    url: str | None = None


def server_specs(args: argparse.Namespace) -> dict[str, ServerSpec]:
    python = sys.executable
    root = Path(args.wspractice_root).resolve()
    specs = [
        ServerSpec(
            "wspractice",
            [python, "-m", "wspractice", "--port", "0", "--log-level", "warning"]
            + shlex.split(args.wspractice_args),
            f"python -m wspractice from {root}",
            env={"PYTHONPATH": str(root)},
        ),
        ServerSpec(
            "tutorial",
            ["node", str(PEERS / "tutorial.js"), "--port", "0"],
            "the Node tutorial: http.createServer + ws + uuid",
        ),
        ServerSpec(
            "websockets",
            [python, str(PEERS / "websockets_sync.py"), "--port", "0"],
            "websockets.sync.server.serve, a thread per connection",
            needs=("websockets",),
        ),
        ServerSpec(
            "simple-websocket",
            [python, str(PEERS / "simple_websocket_peer.py"), "--port", "0"],
            "simple-websocket behind werkzeug's threaded WSGI server",
            needs=("simple_websocket", "werkzeug"),
        ),
        ServerSpec(
            "websocket-server",
            [python, str(PEERS / "websocket_server_peer.py"), "--port", "0"],
            "the websocket-server package (websocket_server.WebsocketServer)",
            needs=("websocket_server",),
        ),
    ]
    result = {spec.name: spec for spec in specs}
    for target in args.target:
        name, _, url = target.partition("=")
        if not name or not url.startswith("ws://"):
            raise SystemExit(f"--target wants NAME=ws://HOST:PORT, got {target!r}")
        result[name] = ServerSpec(name, [], f"already running at {url}", url=url)
    return result


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5) (utime, stime) are 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_rss_kb(pid: int) -> int | None:
    """Resident set size (VmRSS) of a process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class ServerError(Exception):
    pass


class Server:
    """One server process: started on a free port, watched, stopped."""

    def __init__(self, spec: ServerSpec, log_path: Path, max_rss_mb: int) -> None:
        self.spec = spec
        self.log_path = log_path
        self.max_rss_kb = max_rss_mb * 1024
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = spec.url or ""
        self.port = 0
        self.rss_peak_kb = 0
        self.killed_for: str | None = None
        self._log: IO[bytes] | None = None
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout: float) -> None:
        if self.spec.url is not None:
            self.port = int(self.spec.url.rsplit(":", 1)[1].split("/")[0])
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.spec.env)
        self.proc = subprocess.Popen(
            self.spec.command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = PORT_LINE.search(self.log_path.read_text(errors="replace"))
            if match:
                self.port = int(match.group(1))
                self.url = f"ws://127.0.0.1:{self.port}"
                break
            if self.proc.poll() is not None:
                raise ServerError(f"exited with {self.proc.returncode} at startup")
            time.sleep(0.05)
        else:
            self.stop()
            raise ServerError(f"printed no port within {timeout:g} s")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        """Track peak RSS; kill a server that eats more than allowed."""
        while not self._stop_sampling.wait(0.2):
            rss = self.rss_kb()
            if rss is None:
                return
            self.rss_peak_kb = max(self.rss_peak_kb, rss)
            if rss > self.max_rss_kb and self.proc is not None:
                self.killed_for = f"RSS {rss // 1024} MiB over --max-server-rss"
                os.killpg(self.proc.pid, signal.SIGKILL)
                return

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.pid) if self.pid else None

    def rss_kb(self) -> int | None:
        return proc_rss_kb(self.pid) if self.pid else None

    def exit_status(self) -> str | None:
        """Why the server is gone, if it is."""
        if self.proc is None or self.proc.poll() is None:
            return None
        if self.killed_for:
            return f"killed: {self.killed_for}"
        return f"exited with {self.proc.returncode} during the run"

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 8.0) -> None:
        self._stop_sampling.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()


# ---------------------------------------------------------------- the generator


@dataclass
class GeneratorRun:
    """What one loadgen.js run reported, plus the server's side of it."""

    result: Record | None = None
    error: str | None = None
    connected: Record | None = None
    server_cpu_connect: float | None = None
    server_cpu_window: float | None = None
    server_cpu_cores: float | None = None
    #: Before the generator started (start_kb: when its window started).
    server_rss_before_kb: int | None = None
    server_rss_start_kb: int | None = None
    server_rss_end_kb: int | None = None
    generator_nice: int | None = None
    seconds: float = 0.0


def _renice(increment: int) -> None:
    """In the child, before exec: change its niceness if allowed."""
    try:
        os.nice(increment)
    except OSError:
        pass  # Not allowed to raise our priority: run at the default.


def _read_lines(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    """Hand each line of ``stream`` over, then an empty one at EOF."""
    for line in stream:
        lines.put(line)
    lines.put(b"")


def run_loadgen(
    ctx: Context,
    server: Server,
    scenario: str,
    options: dict[str, object],
    timeout: float,
    label: str,
) -> GeneratorRun:
    """Run loadgen.js against ``server``; sample the server on its events."""
    command = ["node", str(LOADGEN), scenario, "--url", server.url]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    log = ctx.logs / f"{label}.loadgen.log"
    run = GeneratorRun()
    started = time.monotonic()
    cpu_start = server.cpu_seconds()
    window_start: tuple[float, float | None] | None = None
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=lambda: _renice(ctx.args.generator_nice),
        )
        try:
            run.generator_nice = os.getpriority(os.PRIO_PROCESS, proc.pid)
        except OSError:
            pass
        assert proc.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(
            target=_read_lines, args=(proc.stdout, lines), daemon=True
        ).start()
        deadline = started + timeout
        server_gone_at: float | None = None
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    run.error = f"the load generator did not finish in {timeout:g} s"
                    break
                if server.exit_status() and server_gone_at is None:
                    server_gone_at = time.monotonic()
                if server_gone_at and time.monotonic() - server_gone_at > 15:
                    run.error = "the server is gone and the generator is stuck"
                    break
                try:
                    line = lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if not line:
                    break  # The generator closed its stdout: it is done.
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                kind = event.get("event")
                if kind == "connected":
                    run.connected = event
                    cpu = server.cpu_seconds()
                    if cpu is not None and cpu_start is not None:
                        run.server_cpu_connect = cpu - cpu_start
                elif kind == "measure_start":
                    cpu = server.cpu_seconds()
                    if cpu is not None:
                        window_start = (time.monotonic(), cpu)
                    run.server_rss_start_kb = server.rss_kb()
                elif kind == "measure_end":
                    cpu = server.cpu_seconds()
                    if window_start is not None and cpu is not None:
                        t0, cpu0 = window_start
                        assert cpu0 is not None
                        run.server_cpu_window = cpu - cpu0
                        run.server_cpu_cores = (cpu - cpu0) / (time.monotonic() - t0)
                    run.server_rss_end_kb = server.rss_kb()
                elif kind == "result":
                    run.result = event
                elif kind == "error":
                    run.error = f"load generator: {event.get('message')}"
        finally:
            if proc.poll() is None:
                try:
                    proc.wait(5 if run.result else 0.1)
                except subprocess.TimeoutExpired:
                    pass
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if run.result is None and run.error is None:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        run.error = "the load generator failed: " + " / ".join(tail)
    run.seconds = time.monotonic() - started
    return run


# ---------------------------------------------------------------- a stalled client


class StalledClient:
    """A presence client that completes its handshake, then never reads.

    Its receive buffer is made tiny, so the server feels the stall at once
    rather than after the kernel has soaked up megabytes.
    """

    def __init__(self, port: int, username: str = "stalled") -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.local_port = self.sock.getsockname()[1]
        request = (
            f"GET /?username={username} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)  # Byte by byte: leave the frames unread.
            if not chunk:
                raise ServerError("the server closed the stalled client's handshake")
            response += chunk
        status = response.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status + " ":
            raise ServerError(f"stalled client's handshake failed: {status}")

    def held_by(self, pid: int | None) -> bool | None:
        """Whether process ``pid`` still has its end of this connection open.

        The server's socket is found in /proc/net/tcp by its ports; when the
        server drops the connection its file descriptor goes away, even
        while the kernel is still trying to deliver what it had queued.
        """
        if pid is None:
            return None
        inode = None
        local = f"0100007F:{self.port:04X}"
        remote = f"0100007F:{self.local_port:04X}"
        try:
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[1] == local and cols[2] == remote:
                    inode = cols[9]
        except OSError:
            return None
        if inode is None or inode == "0":
            return False
        target = f"socket:[{inode}]"
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == target:
                        return True
                except OSError:
                    continue
        except OSError:
            return None
        return False

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- context


@dataclass
class Context:
    args: argparse.Namespace
    specs: dict[str, ServerSpec]
    servers: list[str]
    out: Path
    logs: Path
    records: list[Record] = field(default_factory=list)
    meta: Record = field(default_factory=dict)
    step: int = 0

    def save(self) -> None:
        """Write results.json (after every run, so a partial run is kept)."""
        data = {"meta": self.meta, "records": self.records}
        path = self.out / "results.json"
        path.write_text(json.dumps(data, indent=1, default=str) + "\n")


@contextmanager
def running(ctx: Context, name: str, label: str) -> Iterator[Server]:
    server = Server(
        ctx.specs[name], ctx.logs / f"{label}.server.log", ctx.args.max_server_rss
    )
    try:
        server.start(ctx.args.startup_timeout)
        if server.pid is not None:
            time.sleep(ctx.args.settle)  # Before the baseline samples.
        yield server
    finally:
        server.stop()


def base_record(scenario: str, name: str, params: Record) -> Record:
    return {
        "scenario": scenario,
        "server": name,
        "params": params,
        "status": "ok",
        "notes": [],
    }


def finish_record(record: Record, server: Server, run: GeneratorRun | None) -> None:
    """Add the server's and the generator's side to a record; judge it."""
    record["server_rss_peak_kb"] = server.rss_peak_kb or None
    gone = server.exit_status()
    if gone:
        record["status"] = "failed"
        record["notes"].append(f"server {gone}")
        tail = server.log_tail()
        if tail:
            record["server_log_tail"] = tail
    if run is None:
        return
    record["generator_seconds"] = round(run.seconds, 2)
    record["generator_nice"] = run.generator_nice
    if run.error:
        record["status"] = "failed"
        record["notes"].append(run.error)
    result = run.result or {}
    record["generator"] = result.get("generator")
    record["errors"] = result.get("errors") or {}
    record["server_cpu_cores"] = _round(run.server_cpu_cores)
    record["server_cpu_seconds"] = _round(run.server_cpu_window)
    if result.get("error_count"):
        top = sorted(record["errors"].items(), key=lambda kv: -kv[1])[:3]
        record["notes"] += [f"{n}× {what}" for what, n in top]
        if record["status"] == "ok":
            record["status"] = "errors"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def progress(ctx: Context, text: str) -> None:
    ctx.step += 1
    say(f"[{ctx.step}/{ctx.meta['planned_runs']}] {text}")


def label_for(scenario: str, name: str, extra: object = "") -> str:
    return f"{scenario}-{name}{'-' + str(extra) if extra != '' else ''}"


def start_failed(record: Record, exc: Exception) -> Record:
    record["status"] = "failed"
    record["notes"].append(f"server did not start: {exc}")
    return record


def measure(
    ctx: Context,
    record: Record,
    name: str,
    label: str,
    kind: str,
    options: Record,
    timeout: float,
) -> GeneratorRun | None:
    """Start server ``name``, run the generator's ``kind`` against it, and
    add both sides to ``record``; None if the server did not start."""
    try:
        with running(ctx, name, label) as server:
            before = server.rss_kb()
            run = run_loadgen(ctx, server, kind, options, timeout, label)
            run.server_rss_before_kb = before
            finish_record(record, server, run)
            return run
    except ServerError as exc:
        start_failed(record, exc)
        return None


def keep(ctx: Context, record: Record) -> None:
    """Add a finished record to the results, and save them at once."""
    ctx.records.append(record)
    ctx.save()


def note_refused(record: Record, failed: int | None, attempted: int) -> None:
    if failed:
        record["notes"].append(f"{failed} of {attempted} not accepted")
        if record["status"] == "ok":
            record["status"] = "errors"


# ---------------------------------------------------------------- scenarios


def scenario_handshake(ctx: Context) -> None:
    a = ctx.args
    params = {"concurrency": a.handshake_concurrency, "path": "/echo"}
    for name in ctx.servers:
        progress(ctx, f"handshake: {name}, {a.handshake_concurrency} loops")
        record = base_record("handshake", name, params)
        run = measure(
            ctx,
            record,
            name,
            label_for("handshake", name),
            "handshake",
            {
                "clients": a.handshake_concurrency,
                "path": "/echo",
                "warmup": a.short_warmup,
                "duration": a.short_duration,
                "grace": 3,
            },
            timeout=a.short_warmup + a.short_duration + 60,
        )
        if run is not None:
            r = run.result or {}
            record["handshakes_per_second"] = r.get("handshakes_per_second")
            record["handshake_time"] = r.get("handshake_time")
            record["failed"] = r.get("failed")
        keep(ctx, record)
        say(f"    {fmt(record.get('handshakes_per_second'))} handshakes/s")


def scenario_echo(ctx: Context) -> None:
    a = ctx.args
    params = {"clients": a.echo_clients, "size": a.echo_size, "window": 1}
    for name in ctx.servers:
        progress(ctx, f"echo: {name}, {a.echo_clients} clients × {a.echo_size} B")
        record = base_record("echo", name, params)
        run = measure(
            ctx,
            record,
            name,
            label_for("echo", name),
            "echo",
            {
                "clients": a.echo_clients,
                "size": a.echo_size,
                "warmup": a.short_warmup,
                "duration": a.short_duration,
                "grace": 3,
            },
            timeout=a.short_warmup + a.short_duration + 60,
        )
        if run is not None:
            r = run.result or {}
            record["messages_per_second"] = r.get("messages_per_second")
            record["rtt"] = r.get("rtt")
        keep(ctx, record)
        say(f"    {fmt(record.get('messages_per_second'))} messages/s")


def presence_run(
    ctx: Context,
    name: str,
    users: int,
    label: str,
    *,
    duration: float,
    scenario: str = "presence",
    stalled: bool = False,
) -> Record:
    """One presence measurement: users × rate for ``duration`` seconds."""
    a = ctx.args
    workers = a.workers if a.workers > 0 else auto_workers(users)
    params = {"users": users, "rate": a.rate, "duration": duration}
    if stalled:
        params["stalled_clients"] = 1
    record = base_record(scenario, name, params)
    options = {
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
            run = run_loadgen(ctx, server, "presence", options, timeout, label)
            if stall is not None:
                held = stall.held_by(server.pid)
                record["stalled_client_dropped"] = None if held is None else not held
                stall.close()  # Before the server is stopped: it need not wait.
            finish_record(record, server, run)
    except ServerError as exc:
        return start_failed(record, exc)
    finally:
        if stall is not None:
            stall.close()
    r = run.result or {}
    measured = r.get("updates_measured") or 0
    lost = r.get("updates_lost")
    snapshots = r.get("snapshots") or 0
    record.update(
        {
            "workers": workers,
            "latency": r.get("latency"),
            "updates_sent": r.get("updates_sent"),
            "updates_measured": measured,
            "updates_lost": lost,
            "lost_share": (lost / measured) if measured and lost is not None else None,
            "snapshots_per_second": r.get("snapshots_per_second"),
            "bytes_per_second": r.get("bytes_per_second"),
            "disconnects": r.get("disconnects"),
            "snapshots_without_own_entry": r.get("snapshots_without_own_entry"),
            "stale_snapshots": r.get("stale_snapshots"),
            "uuids_distinct": r.get("uuids_distinct"),
            "connected": (r.get("connect") or {}).get("connected"),
            "connect_failed": (r.get("connect") or {}).get("failed"),
            "server_rss_start_kb": run.server_rss_start_kb,
            "server_rss_end_kb": run.server_rss_end_kb,
        }
    )
    if run.server_cpu_window is not None and snapshots:
        record["server_cpu_us_per_snapshot"] = round(
            run.server_cpu_window / snapshots * 1e6, 2
        )
    if record["connect_failed"]:
        record["notes"].append(f"{record['connect_failed']} users could not connect")
    if lost:
        record["notes"].append(f"{lost} of {measured} updates lost")
        if record["status"] == "ok":
            record["status"] = "lossy"
    if r.get("snapshots_without_own_entry"):
        record["notes"].append(
            f"{r['snapshots_without_own_entry']} snapshots lacked the receiver's entry"
        )
    if r.get("stale_snapshots"):
        record["notes"].append(
            f"{r['stale_snapshots']} snapshots arrived after a newer one"
        )
    if r and r.get("uuids_distinct") != r.get("uuids_learned"):
        record["notes"].append("two connections got the same uuid")
    gen = r.get("generator") or {}
    if (gen.get("busiest_worker_cpu") or 0) > 0.9:
        record["notes"].append(
            "a generator worker was over 90% busy: it may be the limit"
        )
    return record


def auto_workers(users: int) -> int:
    """Generator processes: one, or two from 300 users on more than two cores.

    On two cores a second worker only competes with the server: against a
    fast reference server at 1,000 users it made the generator's loop delay
    worse, not better.
    """
    return 2 if users >= 300 and (os.cpu_count() or 1) > 2 else 1


def collapsed(record: Record) -> bool:
    share = record.get("lost_share")
    return record["status"] == "failed" or (
        share is not None and share > COLLAPSE_LOST_SHARE
    )


def scenario_presence(ctx: Context) -> None:
    a = ctx.args
    gave_up: dict[str, int] = {}
    for users in a.users:
        for name in ctx.servers:
            if name in gave_up and not a.keep_going:
                record = base_record("presence", name, {"users": users, "rate": a.rate})
                record["status"] = "skipped"
                record["notes"].append(
                    f"collapsed at {gave_up[name]} users (--keep-going runs it anyway)"
                )
                ctx.records.append(record)
                ctx.step += 1
                continue
            progress(ctx, f"presence: {name}, {users} users × {a.rate:g} Hz")
            record = presence_run(
                ctx,
                name,
                users,
                label_for("presence", name, users),
                duration=a.duration,
            )
            keep(ctx, record)
            lat = record.get("latency") or {}
            say(
                f"    p50 {fmt(lat.get('p50_ms'))} ms, p99 {fmt(lat.get('p99_ms'))} ms,"
                f" lost {record.get('updates_lost')}, {record['status']}"
            )
            if collapsed(record):
                gave_up.setdefault(name, users)


def scenario_stall(ctx: Context) -> None:
    a = ctx.args
    others = a.stall_users - 1
    for name in ctx.servers:
        for stalled in (False, True):
            what = "with" if stalled else "without"
            same = [
                r
                for r in pick(ctx.records, "presence", users=others)
                if r["server"] == name
                and r["params"].get("duration") == a.stall_duration
                and r["status"] != "skipped"
            ]
            if not stalled and same:
                # A presence run of the same size and length is the baseline.
                record = dict(same[0], scenario="stall", notes=list(same[0]["notes"]))
                record["reused"] = "the presence run of the same size"
                ctx.records.append(record)
                ctx.step += 1
                continue
            progress(
                ctx,
                f"stall: {name}, {others} users {what} a stalled client,"
                f" {a.stall_duration:g} s",
            )
            record = presence_run(
                ctx,
                name,
                others,
                label_for("stall", name, what),
                duration=a.stall_duration,
                scenario="stall",
                stalled=stalled,
            )
            keep(ctx, record)
            lat = record.get("latency") or {}
            say(f"    p99 {fmt(lat.get('p99_ms'))} ms, {record['status']}")


def scenario_join(ctx: Context) -> None:
    a = ctx.args
    users = a.join_users
    params = {"users": users, "concurrency": a.connect_concurrency}
    for name in ctx.servers:
        progress(ctx, f"join: {name}, {users} users, {a.connect_concurrency} at a time")
        record = base_record("join", name, params)
        run = measure(
            ctx,
            record,
            name,
            label_for("join", name),
            "presence",
            {
                "clients": users,
                "rate": 0,
                "warmup": 0,
                "duration": min(1.0, a.short_duration),
                "grace": 0,
                "concurrency": a.connect_concurrency,
                "connect-deadline": a.connect_deadline,
                "workers": 1,
            },
            timeout=30 * (users / a.connect_concurrency + 1) + 30,
        )
        if run is not None:
            c = run.connected or {}
            record.update(
                {
                    "connected": c.get("connected"),
                    "connect_failed": c.get("failed"),
                    "connect_all_seconds": c.get("connect_all_seconds"),
                    "connect_phase_seconds": c.get("connect_phase_seconds"),
                    "connect_times": c.get("connect_times"),
                    "generator_connecting": connecting_load(c),
                    "server_cpu_seconds": _round(run.server_cpu_connect),
                }
            )
            note_refused(record, c.get("failed"), users)
        keep(ctx, record)
        say(
            f"    {record.get('connected')} connected in"
            f" {fmt(record.get('connect_all_seconds'))} s"
        )


def connecting_load(connected: Record) -> Record:
    """The generator's CPU (in cores) and loop delay while it connected."""
    gen = dict(connected.get("generator") or {})
    seconds = connected.get("connect_phase_seconds") or 0
    if seconds and gen.get("cpu_seconds") is not None:
        gen["cpu_cores"] = round(gen["cpu_seconds"] / seconds, 3)
    return gen


def scenario_idle(ctx: Context) -> None:
    a = ctx.args
    count = a.idle_connections
    params = {"connections": count, "path": a.idle_path}
    for name in ctx.servers:
        progress(ctx, f"idle: {name}, {count} connections to {a.idle_path}")
        record = base_record("idle", name, params)
        run = measure(
            ctx,
            record,
            name,
            label_for("idle", name),
            "idle",
            {
                "clients": count,
                "path": a.idle_path,
                "warmup": a.idle_settle,
                "duration": a.short_warmup,
                "grace": 0,
                "concurrency": a.connect_concurrency,
                "connect-deadline": a.connect_deadline,
            },
            timeout=30 * (count / a.connect_concurrency + 1) + 30,
        )
        if run is not None:
            c = run.connected or {}
            r = run.result or {}
            connected = c.get("connected") or 0
            before, after = run.server_rss_before_kb, run.server_rss_end_kb
            record.update(
                {
                    "connected": connected,
                    "connect_failed": c.get("failed"),
                    "still_open": r.get("still_open"),
                    "connect_all_seconds": c.get("connect_all_seconds"),
                    "connect_phase_seconds": c.get("connect_phase_seconds"),
                    "generator_connecting": connecting_load(c),
                    "server_rss_before_kb": before,
                    "server_rss_after_kb": after,
                }
            )
            if before is not None and after is not None and connected:
                record["rss_per_connection_kb"] = round((after - before) / connected, 1)
            note_refused(record, c.get("failed"), count)
        keep(ctx, record)
        say(
            f"    {record.get('connected')} open,"
            f" {fmt(record.get('rss_per_connection_kb'))} KiB each"
        )


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "handshake": scenario_handshake,
    "echo": scenario_echo,
    "presence": scenario_presence,
    "join": scenario_join,
    "stall": scenario_stall,
    "idle": scenario_idle,
}


def planned_runs(args: argparse.Namespace, servers: Sequence[str]) -> int:
    per_server = {
        "presence": len(args.users),
        "stall": 2,
    }
    return sum(per_server.get(s, 1) * len(servers) for s in args.scenarios)


# ---------------------------------------------------------------- tables


def fmt(value: object, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, or a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 10 ** (digits - 1):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, padded so that it also reads well in a terminal."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths))
    return "\n".join([line(headers), f"|{rule}|"] + [line(r) for r in rows])


def pick(records: list[Record], scenario: str, **params: object) -> list[Record]:
    return [
        r
        for r in records
        if r["scenario"] == scenario
        and all(r["params"].get(k) == v for k, v in params.items())
    ]


def get(record: Record, path: str) -> Any:
    """``record["a"]["b"]`` for the path ``a.b``; None where it is missing."""
    value: Any = record
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def lat(r: Record, key: str, field_name: str = "latency") -> float | None:
    value = get(r, f"{field_name}.{key}")
    return float(value) if isinstance(value, (int, float)) else None


#: A table column: its header and how to write one record's cell.
Column = tuple[str, Callable[[Record], str]]


def col(header: str, path: str, scale: float = 1.0, digits: int = 3) -> Column:
    def cell(r: Record) -> str:
        value = get(r, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if scale != 1.0:
                value = value * scale
        return fmt(value, digits)

    return header, cell


def ratio_col(
    header: str, path: str, rows: list[Record], group: str | None = None
) -> Column:
    """Each record's figure divided by wspractice's (in the same ``group``)."""
    bases = {
        get(r, group) if group else None: get(r, path)
        for r in rows
        if r["server"] == "wspractice" and r["status"] not in ("failed", "skipped")
    }

    def cell(r: Record) -> str:
        value = get(r, path)
        base = bases.get(get(r, group) if group else None)
        if not isinstance(value, (int, float)) or not isinstance(base, (int, float)):
            return "—"
        return f"{value / base:.2f}×" if base else "—"

    return header, cell


def status_cell(r: Record) -> str:
    if r["status"] == "ok":
        return "ok"
    note = "; ".join(r["notes"][:2])
    return f"{r['status']}: {note}" if note else r["status"]


def gen_cell(r: Record) -> str:
    g = r.get("generator") or {}
    if g.get("cpu_cores") is None:
        return "—"
    return f"{fmt(g['cpu_cores'], 2)} ({g.get('workers')}w)"


SERVER: Column = ("server", lambda r: str(r["server"]))
SERVER_CPU = col("server CPU", "server_cpu_cores", digits=2)
GEN_CPU: Column = ("gen CPU", gen_cell)
STATUS: Column = ("status", status_cell)
MIB = 1 / 1024


def render(rows: list[Record], columns: list[Column]) -> str:
    return table([h for h, _ in columns], [[f(r) for _, f in columns] for r in rows])


def tables(ctx: Context) -> list[tuple[str, str]]:
    """(title, Markdown table) for every scenario that ran."""
    recs = ctx.records
    a = ctx.args
    out: list[tuple[str, str]] = []

    rows = pick(recs, "handshake")
    if rows:
        title = (
            f"Handshakes ({get(rows[0], 'params.concurrency')} loops opening and"
            " closing WebSockets to /echo)"
        )
        columns = [
            SERVER,
            col("handshakes/s", "handshakes_per_second"),
            ratio_col("÷ wsp", "handshakes_per_second", rows),
            col("p50 ms", "handshake_time.p50_ms"),
            col("p99 ms", "handshake_time.p99_ms"),
            SERVER_CPU,
            GEN_CPU,
            STATUS,
        ]
        out.append((title, render(rows, columns)))

    rows = pick(recs, "echo")
    if rows:
        p = rows[0]["params"]
        title = (
            f"Echo ({p['clients']} clients, {p['size']}-byte messages,"
            " one in flight each)"
        )
        columns = [
            SERVER,
            col("msgs/s", "messages_per_second"),
            ratio_col("÷ wsp", "messages_per_second", rows),
            col("RTT p50 ms", "rtt.p50_ms"),
            col("RTT p99 ms", "rtt.p99_ms"),
            SERVER_CPU,
            GEN_CPU,
            STATUS,
        ]
        out.append((title, render(rows, columns)))

    rows = [r for r in pick(recs, "presence") if r["status"] != "skipped"]
    if rows:
        rows.sort(key=lambda r: (r["params"]["users"], ctx.servers.index(r["server"])))
        title = (
            f"Presence broadcast ({a.rate:g} updates/s per user, {a.duration:g} s"
            " measured; latency as defined in docs/benchmarks.md)"
        )
        columns = [
            SERVER,
            col("users", "params.users"),
            col("p50 ms", "latency.p50_ms"),
            col("p99 ms", "latency.p99_ms"),
            ratio_col("p99 ÷ wsp", "latency.p99_ms", rows, group="params.users"),
            col("lost", "updates_lost"),
            col("snapshots/s", "snapshots_per_second"),
            col("MB/s", "bytes_per_second", scale=1e-6),
            col("CPU µs/snap", "server_cpu_us_per_snapshot"),
            SERVER_CPU,
            GEN_CPU,
            col("gen lag p99 ms", "generator.loop_delay_p99_ms"),
            STATUS,
        ]
        skipped: dict[str, int] = {}
        for r in pick(recs, "presence"):
            if r["status"] == "skipped":
                skipped.setdefault(r["server"], r["params"]["users"])
        text = render(rows, columns)
        if skipped:
            text += "\n\nNot run, having collapsed at a smaller count: " + ", ".join(
                f"{name} from {users} users" for name, users in skipped.items()
            )
        out.append((title, text))

    rows = pick(recs, "join")
    if rows:
        p = rows[0]["params"]
        title = f"Join ({p['users']} users connecting, {p['concurrency']} at a time)"
        columns = [
            SERVER,
            col("accepted", "connected"),
            col("failed", "connect_failed"),
            col("all done in s", "connect_phase_seconds"),
            ratio_col("÷ wsp", "connect_phase_seconds", rows),
            col("connect p99 ms", "connect_times.p99_ms"),
            col("server CPU s", "server_cpu_seconds"),
            col("gen CPU", "generator_connecting.cpu_cores", digits=2),
            col("gen lag p99 ms", "generator_connecting.loop_delay_p99_ms"),
            STATUS,
        ]
        out.append((title, render(rows, columns)))

    stall = pick(recs, "stall")
    pairs: list[Record] = []
    for name in ctx.servers:
        mine = [r for r in stall if r["server"] == name]
        without = [r for r in mine if "stalled_clients" not in r["params"]]
        with_ = [r for r in mine if "stalled_clients" in r["params"]]
        if without and with_:
            growth = _ratio(lat(with_[0], "p99_ms"), lat(without[0], "p99_ms"))
            pairs.append(
                {
                    "server": name,
                    "without": without[0],
                    "with": with_[0],
                    "growth": growth,
                }
            )
    if pairs:
        others = get(pairs[0], "with.params.users")
        title = (
            f"Stalled client (1 client that stops reading among {others + 1};"
            f" figures for the other {others})"
        )
        columns = [
            SERVER,
            col("p99 ms without", "without.latency.p99_ms"),
            col("p99 ms with", "with.latency.p99_ms"),
            ("with ÷ without", lambda r: f"{r['growth']:.2f}×" if r["growth"] else "—"),
            col("lost with", "with.updates_lost"),
            col("RSS MB start", "with.server_rss_start_kb", scale=MIB),
            col("RSS MB peak", "with.server_rss_peak_kb", scale=MIB),
            col("peak without", "without.server_rss_peak_kb", scale=MIB),
            col("stalled one dropped", "with.stalled_client_dropped"),
            ("status", lambda r: status_cell(r["with"])),
        ]
        out.append((title, render(pairs, columns)))

    rows = pick(recs, "idle")
    if rows:
        p = rows[0]["params"]
        title = f"Idle connections ({p['connections']} to {p['path']})"
        columns = [
            SERVER,
            col("accepted", "connected"),
            col("failed", "connect_failed"),
            col("RSS MB before", "server_rss_before_kb", scale=MIB),
            col("RSS MB after", "server_rss_after_kb", scale=MIB),
            col("KiB/conn", "rss_per_connection_kb"),
            ratio_col("÷ wsp", "rss_per_connection_kb", rows),
            col("connecting s", "connect_phase_seconds"),
            col("gen lag p99 ms", "generator_connecting.loop_delay_p99_ms"),
            STATUS,
        ]
        out.append((title, render(rows, columns)))
    return out


def headline(ctx: Context) -> tuple[str, str] | None:
    """The issue's targets: wspractice's figures next to the websockets server's."""
    if "wspractice" not in ctx.servers:
        return None
    peer = "websockets" if "websockets" in ctx.servers else None

    def find(scenario: str, name: str | None, params: Record) -> Record | None:
        found = [
            r
            for r in pick(ctx.records, scenario, **params)
            if r["server"] == name and r["status"] != "skipped"
        ]
        return found[-1] if found else None

    def presence(r: Record | None) -> str:
        if r is None:
            return "—"
        return f"p99 {fmt(lat(r, 'p99_ms'))} ms, {fmt(r.get('updates_lost'))} lost"

    def connected(r: Record | None) -> str:
        if r is None:
            return "—"
        total = r["params"].get("users") or r["params"].get("connections")
        seconds = fmt(r.get("connect_phase_seconds"))
        return f"{fmt(r.get('connected'))} of {fmt(total)} in {seconds} s"

    def stalled(r: Record | None) -> str:
        if r is None:
            return "—"
        before = [
            b
            for b in pick(ctx.records, "stall")
            if b["server"] == r["server"] and "stalled_clients" not in b["params"]
        ]
        p99 = fmt(lat(before[-1], "p99_ms")) if before else "—"
        return (
            f"p99 {p99} → {fmt(lat(r, 'p99_ms'))} ms,"
            f" {fmt(r.get('updates_lost'))} lost,"
            f" RSS peak {fmt(_mb(r.get('server_rss_peak_kb')))} MB"
        )

    def figure(path: str) -> Callable[[Record | None], str]:
        return lambda r: fmt(get(r, path)) if r is not None else "—"

    #: (what, scenario, params, how to write a cell, figure for the ratio)
    targets: list[tuple[str, str, Record, Callable[[Record | None], str], str]] = [
        (
            f"presence, {users} users × {ctx.args.rate:g} Hz",
            "presence",
            {"users": users},
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
    rows = []
    for what, scenario, params, cell, path in targets:
        ours = find(scenario, "wspractice", params)
        theirs = find(scenario, peer, params) if peer else None
        if ours is not None or theirs is not None:
            rows.append(
                [what, cell(ours), cell(theirs), _ratio_text(ours, theirs, path)]
            )
    if not rows:
        return None
    headers = ["target", "wspractice", peer or "(no peer)", "wspractice ÷ peer"]
    return "Summary: wspractice against the websockets server", table(headers, rows)


def _mb(kb: object) -> float | None:
    return kb / 1024 if isinstance(kb, (int, float)) else None


def _ratio_text(ours: Record | None, theirs: Record | None, figure: str) -> str:
    if not figure or ours is None or theirs is None:
        return ""
    a, b = get(ours, figure), get(theirs, figure)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}×"
    return ""


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


# ---------------------------------------------------------------- the plot


def plot(ctx: Context) -> Path | None:
    """p99 broadcast latency against users, one line per server."""
    rows = [r for r in pick(ctx.records, "presence") if lat(r, "p99_ms") is not None]
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is missing: no plot (pip install matplotlib)")
        return None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for name in ctx.servers:
        points = sorted(
            (int(r["params"]["users"]), lat(r, "p99_ms") or 0.0, r)
            for r in rows
            if r["server"] == name
        )
        if not points:
            continue
        xs = [x for x, _, _ in points]
        ys = [y for _, y, _ in points]
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        lossy = [(x, y) for x, y, r in points if r.get("updates_lost")]
        if lossy:
            ax.scatter(
                [x for x, _ in lossy],
                [y for _, y in lossy],
                s=140,
                facecolors="none",
                edgecolors=line.get_color(),
                linewidths=1.5,
            )
    users = sorted({int(r["params"]["users"]) for r in rows})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(users, [str(u) for u in users])
    ax.minorticks_off()
    ax.set_xlabel(f"users, each sending its state {ctx.args.rate:g} times a second")
    ax.set_ylabel("p99 broadcast latency, ms (log scale)")
    ax.set_title("Presence broadcast: p99 latency against users")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="circled: some updates lost", fontsize=9, title_fontsize=8)
    machine = ctx.meta["machine"]
    fig.text(
        0.01,
        0.01,
        f"{machine['cpu']}, {machine['cores']} cores, {ctx.meta['date'][:10]},"
        f" wspractice {ctx.meta['wspractice_commit']}",
        fontsize=7,
        alpha=0.7,
    )
    fig.tight_layout()
    path = ctx.out / "p99_latency_vs_users.png"
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- setup


def check_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("benchmark: Node.js (node, 18 or newer) is needed")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 18:
        raise SystemExit(f"benchmark: Node.js 18 or newer is needed, found {version}")
    return version


def ensure_node_packages(allow_install: bool) -> None:
    """``npm ci`` in scripts/bench unless node_modules matches the lockfile."""
    installed = BENCH / "node_modules" / ".package-lock.json"
    lock = BENCH / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    if not allow_install:
        raise SystemExit(f"benchmark: run `npm ci` in {BENCH} first")
    say(f"==> installing the load generator's packages (npm ci in {BENCH})")
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("benchmark: npm is needed to install ws and uuid")
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=BENCH,
        check=True,
        timeout=600,
    )


def ensure_python_packages(
    modules: set[str], allow_install: bool, optional: frozenset[str] = frozenset()
) -> None:
    """Install what the chosen servers need (and the plot wants)."""
    missing = []
    for module in sorted(modules):
        try:
            __import__(module)
        except ImportError:
            if allow_install or module not in optional:
                missing.append(BENCH_REQUIREMENTS[module])
            else:
                say(f"warning: {module} is missing; going on without it")
    if not missing:
        return
    if not allow_install:
        raise SystemExit(
            "benchmark: missing "
            + ", ".join(missing)
            + " (pip install -e . --group bench)"
        )
    say("==> installing Python packages for the peers: " + ", ".join(missing))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *missing],
        check=True,
        timeout=900,
    )


def raise_open_files(needed: int) -> None:
    """Raise RLIMIT_NOFILE for this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            say(
                f"warning: the open-files limit is {hard} and {needed} are needed;"
                " raise it (ulimit -n) or fewer idle connections will be accepted"
            )
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def node_package_version(name: str) -> str | None:
    try:
        data = json.loads((BENCH / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(data.get("version"))


def git_commit(root: Path) -> str:
    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *argv], capture_output=True, text=True
        ).stdout.strip()

    # The last commit that changed the server, not the benchmark's.
    commit = git("log", "-1", "--format=%h", "--", "wspractice") or "unknown"
    if git("status", "--porcelain", "--", "wspractice"):
        commit += "-dirty"
    return commit


def machine_info() -> Record:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


# ---------------------------------------------------------------- command line

DEFAULT_SERVERS = [
    "wspractice",
    "tutorial",
    "websockets",
    "simple-websocket",
    "websocket-server",
]


def csv_list(choices: Sequence[str] | None = None) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if choices is not None:
            for item in items:
                if item not in choices:
                    raise argparse.ArgumentTypeError(
                        f"{item!r} is not one of {', '.join(choices)}"
                    )
        return items

    return parse


def int_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"want positive numbers, got {text}")
    return values


QUICK = {
    "users": [20],
    "duration": 0.6,
    "warmup": 0.2,
    "grace": 1.0,
    "short_duration": 0.4,
    "short_warmup": 0.1,
    "handshake_concurrency": 10,
    "join_users": 50,
    "connect_concurrency": 10,
    "stall_users": 21,  # 20 others: the presence run serves as the baseline
    "stall_duration": 0.6,
    "idle_connections": 50,
    "idle_settle": 0.2,
    "settle": 0.1,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/benchmark.py",
        description=(__doc__ or "").split("\n\nResults")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Results go to --output: results.json, results.md (the tables)"
        " and p99_latency_vs_users.png. docs/benchmarks.md defines every figure.",
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--servers",
        type=csv_list(),
        default=DEFAULT_SERVERS,
        metavar="LIST",
        help="comma-separated servers: "
        + ", ".join(DEFAULT_SERVERS)
        + " (default: all) and any --target",
    )
    what.add_argument(
        "--scenarios",
        type=csv_list(list(SCENARIOS)),
        default=list(SCENARIOS),
        metavar="LIST",
        help="comma-separated scenarios: " + ", ".join(SCENARIOS) + " (default: all)",
    )
    what.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny sizes and short runs (under a minute);"
        " options given explicitly still win",
    )
    what.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="also drive a server that is already running (no CPU or memory"
        " figures for it); add NAME to --servers",
    )
    load = parser.add_argument_group("presence load")
    load.add_argument(
        "--users",
        type=int_list,
        default=[25, 50, 100, 300, 500, 1000],
        metavar="LIST",
        help="user counts for the presence scenario"
        " (default: 25,50,100,300,500,1000)",
    )
    load.add_argument(
        "--rate",
        metavar="HZ",
        type=float,
        default=20.0,
        help="updates per second per user (20)",
    )
    load.add_argument(
        "--duration",
        metavar="SECONDS",
        type=float,
        default=10.0,
        help="seconds measured per run (10)",
    )
    load.add_argument(
        "--warmup",
        metavar="SECONDS",
        type=float,
        default=2.0,
        help="seconds of load before measuring (2)",
    )
    load.add_argument(
        "--grace",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help="seconds to wait for late snapshots before counting an update lost (5)",
    )
    load.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=0,
        help="load generator processes (default 0: one, or two from 300 users"
        " on a machine with more than two cores)",
    )
    load.add_argument(
        "--connect-concurrency",
        type=int,
        default=100,
        metavar="N",
        help="connections opened at once (100)",
    )
    load.add_argument(
        "--connect-deadline",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="start no new connection after this long; those left count as"
        " failed (60)",
    )
    load.add_argument(
        "--keep-going",
        action="store_true",
        help="run bigger user counts even for a server that collapsed on a smaller one",
    )
    other = parser.add_argument_group("other scenarios")
    other.add_argument(
        "--short-duration",
        metavar="SECONDS",
        type=float,
        default=5.0,
        help="seconds measured for handshake and echo (5)",
    )
    other.add_argument(
        "--short-warmup",
        metavar="SECONDS",
        type=float,
        default=1.0,
        help="seconds before measuring handshake and echo (1)",
    )
    other.add_argument(
        "--handshake-concurrency",
        type=int,
        default=20,
        metavar="N",
        help="loops opening and closing WebSockets at once (20)",
    )
    other.add_argument("--echo-clients", metavar="N", type=int, default=10, help="(10)")
    other.add_argument(
        "--echo-size",
        metavar="BYTES",
        type=int,
        default=64,
        help="echo message size in bytes (64)",
    )
    other.add_argument(
        "--join-users",
        metavar="N",
        type=int,
        default=1000,
        help="users in the join scenario (1000)",
    )
    other.add_argument(
        "--stall-users",
        metavar="N",
        type=int,
        default=20,
        help="users in the stall scenario, the stalled one included (20)",
    )
    other.add_argument(
        "--stall-duration",
        metavar="SECONDS",
        type=float,
        default=20.0,
        help="seconds measured in the stall scenario (20)",
    )
    other.add_argument(
        "--idle-connections",
        type=int,
        default=5000,
        metavar="N",
        help="connections in the idle scenario (5000)",
    )
    other.add_argument(
        "--idle-path",
        metavar="PATH",
        default="/echo",
        help="path of the idle connections; a presence path such as / adds a"
        " username per connection (default /echo: no join broadcasts)",
    )
    other.add_argument(
        "--idle-settle",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="wait this long after the idle connections are open before"
        " reading the server's RSS (2)",
    )
    run = parser.add_argument_group("servers and output")
    run.add_argument(
        "--wspractice-args",
        default="",
        metavar="ARGS",
        help='extra options for wspractice, e.g. "--broadcast-interval 5"',
    )
    run.add_argument(
        "--wspractice-root",
        default=str(ROOT),
        metavar="DIR",
        help="the checkout whose wspractice/ is benchmarked (default: this one)",
    )
    run.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="where results go (default: artifacts/bench-YYYYmmdd-HHMMSS)",
    )
    run.add_argument(
        "--from-results",
        type=Path,
        default=None,
        metavar="JSON",
        help="run nothing: print the tables of an earlier results.json and"
        " write its results.md and plot again (to --output, or beside it)",
    )
    run.add_argument(
        "--max-server-rss",
        type=int,
        default=4096,
        metavar="MIB",
        help="kill a server whose memory grows past this (4096)",
    )
    run.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a server may take to print its port (30)",
    )
    run.add_argument(
        "--generator-nice",
        type=int,
        default=-10,
        metavar="N",
        help="niceness increment for the load generator (-10: a higher priority"
        " than the server's threads, so that it is not starved; needs root,"
        " otherwise it runs at the default)",
    )
    run.add_argument(
        "--settle",
        type=float,
        default=0.3,
        metavar="SECONDS",
        help="pause between a server's startup line and the first load (0.3)",
    )
    run.add_argument(
        "--no-install",
        action="store_true",
        help="fail instead of running npm ci / pip install for missing packages",
    )
    return parser


def apply_quick(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """--quick changes the defaults, not what the user typed."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    for key, value in QUICK.items():
        if "--" + key.replace("_", "-") not in given:
            setattr(args, key, value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.from_results is not None:
        return report_again(args.from_results, args.output)
    if args.quick:
        apply_quick(args, argv)
    specs = server_specs(args)
    unknown = [name for name in args.servers if name not in specs]
    if unknown:
        raise SystemExit(f"benchmark: unknown server(s): {', '.join(unknown)}")

    node_version = check_node()
    ensure_node_packages(not args.no_install)
    needs = {m for name in args.servers for m in specs[name].needs}
    if "presence" in args.scenarios:
        needs.add("matplotlib")
    ensure_python_packages(needs, not args.no_install, frozenset({"matplotlib"}))
    biggest = max(args.idle_connections, args.join_users, max(args.users))
    raise_open_files(2 * biggest + 1024)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.output or ROOT / "artifacts" / f"bench-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, specs, args.servers, out, out / "logs")
    ctx.logs.mkdir(exist_ok=True)
    ctx.meta = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python scripts/benchmark.py " + shlex.join(argv),
        "wspractice_commit": git_commit(Path(args.wspractice_root)),
        "machine": machine_info(),
        "versions": {
            "node": node_version,
            "ws": node_package_version("ws"),
            "uuid": node_package_version("uuid"),
            "wsproto": package_version("wsproto"),
            "websockets": package_version("websockets"),
            "simple-websocket": package_version("simple-websocket"),
            "werkzeug": package_version("werkzeug"),
            "websocket-server": package_version("websocket-server"),
        },
        "servers": {name: specs[name].about for name in args.servers},
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "planned_runs": planned_runs(args, args.servers),
    }
    say(
        f"==> benchmarking {', '.join(args.servers)}"
        f" ({ctx.meta['planned_runs']} runs); results in {out}"
    )
    started = time.monotonic()
    try:
        for scenario in args.scenarios:
            SCENARIOS[scenario](ctx)
    except KeyboardInterrupt:
        say("interrupted: writing what was measured so far")
    ctx.meta["seconds"] = round(time.monotonic() - started, 1)
    ctx.save()
    write_report(ctx)
    return 0


def write_report(ctx: Context) -> None:
    """Print the tables; write results.md and the plot next to results.json."""
    report = [
        f"wspractice {ctx.meta['wspractice_commit']} on"
        f" {ctx.meta['machine']['cpu']} × {ctx.meta['machine']['cores']},"
        f" {ctx.meta['date']}; {ctx.meta['command']}",
        "",
        "÷ wsp: the server's figure divided by wspractice's. CPU in cores"
        " (1.0 = one core busy); gen: the load generator (w: worker processes).",
    ]
    summary = headline(ctx)
    for title, text in tables(ctx) + ([summary] if summary else []):
        report += ["", f"### {title}", "", text]
    print("\n".join(report))
    (ctx.out / "results.md").write_text("\n".join(report) + "\n")
    image = plot(ctx)
    say(
        f"==> done in {ctx.meta.get('seconds', 0):g} s: {ctx.out / 'results.json'},"
        f" {ctx.out / 'results.md'}" + (f", {image}" if image else "")
    )


def report_again(path: Path, output: Path | None) -> int:
    """--from-results: the tables and the plot of an earlier run, again."""
    data = json.loads(path.read_text())
    meta = data["meta"]
    args = argparse.Namespace(**meta["settings"])
    out = output or path.parent
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, {}, list(meta["servers"]), out, out / "logs")
    ctx.meta, ctx.records = meta, data["records"]
    write_report(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
