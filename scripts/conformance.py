#!/usr/bin/env python3
"""Hold wspractice to RFC 6455 with the Autobahn TestSuite: server and client.

    python scripts/conformance.py                        # all four runs, as CI does
    python scripts/conformance.py --run plain,client     # some of them
    python scripts/conformance.py --run server --fast    # leave out the slow 9.*
    python scripts/conformance.py --runner docker        # the suite's Docker image

The runs:

    plain           the server's /echo, without compression: all cases
    deflate         the server's /echo, --compression: 12.* and 13.*
    client          python -m wspractice.client --echo: all cases
    client-deflate  python -m wspractice.client --echo --compression: 12.* and 13.*

For a server run it starts a fresh server exactly as outside tools do
(``python -m wspractice --port P --max-message-size 33554432
--no-compression``, or ``--compression``) and runs the suite's ``wstest`` in
fuzzingclient mode against it. For a client run the suite is the server
(fuzzingserver mode) and ``python -m wspractice.client --echo --quiet {url}``
runs once per case.

Two ways to get the suite:

* ``--runner local`` (the default, what CI uses): the Autobahn runners beside
  the project (``../shared/tools/autobahn``: ``autobahn.sh`` for server runs,
  ``fuzzingserver.py`` for client runs), which install the suite on first use.
  Their own summaries are printed as they are.
* ``--runner docker``: the suite's usual image, ``crossbario/autobahn-testsuite``,
  run with ``docker run --network host`` (Linux), ``wstest -m fuzzingclient``
  or ``-m fuzzingserver`` with a spec file this script writes; for client runs
  this script runs the client once per case itself.

The gate is stricter than the suite's colours and the same for every run: each
case must be OK, or INFORMATIONAL (7.1.6, 7.13.1 and 7.13.2 are informational
by design), in both ``behavior`` and ``behaviorClose``, and every case the
suite selected must be in its report. NON-STRICT, WRONG CODE, UNCLEAN and
FAILED all fail it. Without compression the permessage-deflate groups are
UNIMPLEMENTED; with compression they must be OK.

By default the server runs go one after the other in one thread and the
client runs in another (``--jobs 2``): the compressed runs are CPU-bound in
one process each, so two of them fill a 2-core machine. ``--jobs 1`` runs
one at a time.

Exit status: 0 when every run passes, 1 when a case fails, 2 when the suite
could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOOLS = ROOT.parent / "shared" / "tools" / "autobahn"
DEFAULT_IMAGE = "crossbario/autobahn-testsuite"
STARTUP = re.compile(r"running on port (\d+)")
MAX_MESSAGE_SIZE = 33554432  # 32 MiB: the suite's 9.* cases send up to 16 MiB.
DEFLATE_GROUPS = ("12.", "13.")
PASSING = {"OK", "INFORMATIONAL"}
AGENT = "wspractice"
#: How long one client case may take before the client is killed (the suite's
#: own limit for its biggest compression cases is 480 s).
CASE_TIMEOUT = 480
CLIENT = [sys.executable, "-m", "wspractice.client", "--echo", "--quiet"]


@dataclass(frozen=True)
class Run:
    name: str
    title: str
    #: "server": the suite tests the server; "client": the client.
    side: str
    compression: bool
    cases: str
    excludes: str = ""
    #: Cases that may be UNIMPLEMENTED (deflate groups when it is off).
    may_be_unimplemented: tuple[str, ...] = ()

    def client_command(self) -> list[str]:
        """The client, as the suite's fuzzing server runs it ({url} per case)."""
        return CLIENT + (["--compression"] if self.compression else []) + ["{url}"]


#: In the order results are printed.
RUNS = {
    "plain": Run(
        "plain",
        "server, without compression (--no-compression)",
        "server",
        False,
        "*",
        may_be_unimplemented=DEFLATE_GROUPS,
    ),
    "deflate": Run(
        "deflate",
        "server, with compression (--compression)",
        "server",
        True,
        "12.*,13.*",
    ),
    "client": Run(
        "client",
        "client, without compression (--echo)",
        "client",
        False,
        "*",
        may_be_unimplemented=DEFLATE_GROUPS,
    ),
    "client-deflate": Run(
        "client-deflate",
        "client, offering compression (--echo --compression)",
        "client",
        True,
        "12.*,13.*",
    ),
}
GROUPS = {"server": ["plain", "deflate"], "all": list(RUNS)}
#: The longest runs first, so that two at a time finish together.
START_ORDER = ["deflate", "plain", "client-deflate", "client"]


class SuiteError(Exception):
    """The suite could not run (exit status 2)."""


@dataclass
class Result:
    run: Run
    command: str = ""
    #: The runner's own summary (its standard output), printed as it is.
    summary: str = ""
    behavior: Counter[str] = field(default_factory=Counter)
    close: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    informational: list[str] = field(default_factory=list)
    unimplemented: int = 0
    cases: int = 0
    expected: int | None = None
    seconds: float = 0.0
    #: CPU seconds by process group (local runner only).
    cpu: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and not self.bad and self.expected == self.cases


_log_lock = threading.Lock()


def log(message: str) -> None:
    with _log_lock:
        print(f"[conformance] {message}", file=sys.stderr, flush=True)


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split(".") if part.isdigit())


def case_matches(case_id: str, prefixes: tuple[str, ...]) -> bool:
    return any(case_id.startswith(prefix) for prefix in prefixes)


def split_cases(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def judge(result: Result, report: dict[str, Any]) -> None:
    """Hold one agent's cases in the suite's index.json to the gate."""
    if len(report) != 1:
        raise SuiteError(f"expected one agent in the report, got {sorted(report)}")
    (cases,) = report.values()
    run = result.run
    for case_id, case in sorted(cases.items(), key=lambda kv: case_key(kv[0])):
        behavior, close = case["behavior"], case["behaviorClose"]
        result.cases += 1
        result.behavior[behavior] += 1
        result.close[close] += 1
        allowed = set(PASSING)
        if case_matches(case_id, run.may_be_unimplemented):
            allowed.add("UNIMPLEMENTED")
        if behavior not in allowed or close not in allowed:
            result.bad.append(f"{case_id} ({behavior}, close {close})")
        elif behavior == "INFORMATIONAL":
            result.informational.append(case_id)
        elif behavior == "UNIMPLEMENTED":
            result.unimplemented += 1


def read_report(index: Path) -> dict[str, Any]:
    if not index.exists():
        raise SuiteError(f"no report from the suite at {index}")
    report: dict[str, Any] = json.loads(index.read_text())
    return report


# ---------------------------------------------------------------- processes


def stream(pipe: IO[str], prefix: str, sink: IO[str] | None = None) -> threading.Thread:
    """Copy a child's output line by line, to the log or to a file."""

    def copy() -> None:
        for line in pipe:
            if sink is not None:
                sink.write(line)
                sink.flush()
            else:
                log(f"{prefix}: {line.rstrip()}")

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def reap(proc: subprocess.Popen[str], timeout: float | None = None) -> float:
    """Wait for a child; the CPU seconds it and its reaped descendants used.

    The runners wait for wstest and for every client they start, so their
    figure covers the suite and the clients; on a busy machine it says more
    about the work than the wall time does.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        assert deadline is not None
        if time.monotonic() > deadline:
            proc.kill()
            deadline = None
        else:
            time.sleep(0.05)


def run_command(
    command: Sequence[str], name: str, **kwargs: Any
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a runner: its stdout (the summary) is kept, its stderr logged.

    Returns the CPU seconds it used (with what it waited for) too.
    """
    proc = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors = stream(proc.stderr, name)
    out = proc.stdout.read()
    cpu = reap(proc)
    errors.join()
    return subprocess.CompletedProcess(list(command), proc.returncode, out, ""), cpu


def start_server(compression: bool) -> tuple[subprocess.Popen[str], int]:
    flag = "--compression" if compression else "--no-compression"
    command = [
        sys.executable,
        "-m",
        "wspractice",
        "--port",
        "0",
        "--max-message-size",
        str(MAX_MESSAGE_SIZE),
        flag,
        "--log-level",
        "warning",
    ]
    log("starting " + " ".join(command[1:]))
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = STARTUP.search(line)
    if not match:
        proc.kill()
        raise SuiteError(f"the server did not start: {line!r}")
    return proc, int(match.group(1))


def stop_process(proc: subprocess.Popen[str]) -> float:
    """Stop a server (SIGTERM, then SIGKILL after 10 s); its CPU seconds."""
    proc.terminate()
    return reap(proc, timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------- the local runner


class LocalRunner:
    """The runners beside the project: autobahn.sh and fuzzingserver.py."""

    name = "local"

    def __init__(self, tools: Path, verbose: bool = False) -> None:
        self.tools = tools
        self.verbose = verbose

    def describe(self) -> str:
        return f"local ({self.tools})"

    def prepare(self) -> None:
        for script in ("autobahn.sh", "fuzzingserver.py"):
            if not (self.tools / script).exists():
                raise SuiteError(
                    f"the Autobahn runner {script} is not in {self.tools};"
                    " set --tools (AUTOBAHN_TOOLS), or use --runner docker"
                )
        ensure_suite(self.tools / "autobahn.sh")

    def server_command(self, run: Run, url: str, outdir: Path) -> list[str]:
        command = ["bash", str(self.tools / "autobahn.sh"), "-c", run.cases]
        if run.excludes:
            command += ["-x", run.excludes]
        if run.compression:
            command.append("--require-compression")
        if self.verbose:
            command.append("--verbose")
        return command + ["--agent", AGENT, "-o", str(outdir), url]

    def client_command(self, run: Run, outdir: Path) -> list[str]:
        command = [sys.executable, str(self.tools / "fuzzingserver.py")]
        command += ["-c", run.cases]
        if run.excludes:
            command += ["-x", run.excludes]
        if run.compression:
            command.append("--require-compression")
        command += ["--agent", AGENT, "--case-timeout", str(CASE_TIMEOUT)]
        return command + ["-o", str(outdir), "--"] + run.client_command()

    def run_server(self, run: Run, outdir: Path, result: Result) -> None:
        proc, port = start_server(run.compression)
        command = self.server_command(run, f"ws://127.0.0.1:{port}/echo", outdir)
        result.command = shlex.join(command)
        log(f"{run.name}: {result.command}")
        server_cpu = 0.0
        try:
            completed, cpu = run_command(command, run.name)
        finally:
            server_cpu = stop_process(proc)
        result.cpu = {"suite": cpu, "server": server_cpu}
        result.summary = completed.stdout
        if completed.returncode == 2:
            raise SuiteError(f"autobahn.sh could not run (exit 2); see {outdir}")
        expected = outdir / "expected-cases.txt"
        if expected.exists():
            result.expected = len(expected.read_text().split())
        judge(result, read_report(outdir / "reports" / "index.json"))

    def run_client(self, run: Run, outdir: Path, result: Result) -> None:
        command = self.client_command(run, outdir)
        result.command = shlex.join(command)
        log(f"{run.name}: {result.command}")
        completed, cpu = run_command(command, run.name, cwd=ROOT)
        result.cpu = {"suite and clients": cpu}
        result.summary = completed.stdout
        if completed.returncode == 2:
            raise SuiteError(f"fuzzingserver.py could not run (exit 2); see {outdir}")
        # The runner logs each case it starts; each must be in the report.
        started = re.findall(
            r"^== case (\d+):", (outdir / "clients.log").read_text(), re.M
        )
        result.expected = len(set(started))
        judge(result, read_report(outdir / "reports" / "index.json"))


def ensure_suite(runner: Path) -> None:
    """Install the suite if needed, with its C accelerators.

    wstest is the slow side of the compression runs: without wsaccel it masks
    and validates UTF-8 in pure Python. The runner's own attempt to build
    wsaccel misses one of the Python 2.7 header directories, so it is done
    here.
    """
    subprocess.run(["bash", str(runner), "--setup"], check=True)
    root = Path(
        os.environ.get("AUTOBAHN_VENV", Path.home() / ".cache" / "wsp-autobahn-venv")
    )
    python = root / "env" / "bin" / "python"
    include = root / "py27" / "usr" / "include"
    libdirs = sorted((root / "py27" / "usr" / "lib").glob("*-linux-gnu"))
    if not python.exists() or not libdirs:
        return
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(
        [str(libdirs[0])] + [p for p in [env.get("LD_LIBRARY_PATH", "")] if p]
    )
    check = [str(python), "-c", "import wsaccel, ujson"]
    if subprocess.run(check, env=env, capture_output=True).returncode == 0:
        return
    log("building wsaccel and ujson for wstest (it runs several times faster)")
    # pyconfig.h includes <x86_64-linux-gnu/python2.7/pyconfig.h>: the
    # include directory itself is needed as well as the python2.7 ones.
    env["CFLAGS"] = " ".join(
        f"-I{path}"
        for path in [include, include / "python2.7", *include.glob("*/python2.7")]
    )
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    built = subprocess.run(
        install + ["wsaccel==0.6.6", "ujson==2.0.3"], env=env, capture_output=True
    )
    if built.returncode != 0:
        log("warning: wsaccel did not build; the suite will run slower")


# ---------------------------------------------------------------- the Docker image


class DockerRunner:
    """The suite's usual image, crossbario/autobahn-testsuite, with docker.

    As the image's README runs it: the spec file in a directory mounted on
    /config, the reports written under /reports. ``--network host`` lets the
    suite reach a server on the host's loopback (server runs) and the client
    reach the suite's port (client runs); it works as such on Linux.
    """

    name = "docker"

    def __init__(self, image: str = DEFAULT_IMAGE, docker: str = "docker") -> None:
        self.image = image
        self.docker = docker

    def describe(self) -> str:
        return f"docker ({self.image})"

    def prepare(self) -> None:
        if shutil.which(self.docker) is None:
            raise SuiteError(f"{self.docker} is not installed (--runner docker)")

    # The parts below build files and command lines only; they are what the
    # unit tests check.

    @staticmethod
    def server_spec(run: Run, url: str) -> dict[str, Any]:
        """wstest -m fuzzingclient's spec: the suite connects to ``url``."""
        return {
            "outdir": "/reports/servers",
            "servers": [{"agent": AGENT, "url": url}],
            "cases": split_cases(run.cases),
            "exclude-cases": split_cases(run.excludes),
            "exclude-agent-cases": {},
        }

    @staticmethod
    def client_spec(run: Run, port: int) -> dict[str, Any]:
        """wstest -m fuzzingserver's spec: the suite listens on ``port``."""
        return {
            "url": f"ws://127.0.0.1:{port}",
            "outdir": "/reports/clients",
            "cases": split_cases(run.cases),
            "exclude-cases": split_cases(run.excludes),
            "exclude-agent-cases": {},
        }

    def command(
        self, mode: str, spec: str, outdir: Path, name: str, detach: bool = False
    ) -> list[str]:
        """``docker run`` for ``wstest -m MODE -s /config/SPEC``."""
        command = [self.docker, "run", "--rm"]
        if detach:
            command.append("--detach")
        command += [
            "--name",
            name,
            "--network",
            "host",
            "--volume",
            f"{outdir / 'config'}:/config:ro",
            "--volume",
            f"{outdir / 'reports'}:/reports",
            self.image,
            "wstest",
            "--mode",
            mode,
            "--spec",
            f"/config/{spec}",
        ]
        if mode == "fuzzingserver":
            # Its embedded web server for the reports would take port 8080
            # of the host's network; nothing here needs it.
            command += ["--webport", "0"]
        return command

    @staticmethod
    def write_spec(outdir: Path, filename: str, spec: dict[str, Any]) -> Path:
        (outdir / "config").mkdir(parents=True, exist_ok=True)
        (outdir / "reports").mkdir(parents=True, exist_ok=True)
        path = outdir / "config" / filename
        path.write_text(json.dumps(spec, indent=2) + "\n")
        return path

    def run_server(self, run: Run, outdir: Path, result: Result) -> None:
        proc, port = start_server(run.compression)
        spec = self.server_spec(run, f"ws://127.0.0.1:{port}/echo")
        self.write_spec(outdir, "fuzzingclient.json", spec)
        name = f"wspractice-{run.name}-{os.getpid()}"
        command = self.command("fuzzingclient", "fuzzingclient.json", outdir, name)
        result.command = shlex.join(command)
        log(f"{run.name}: {result.command}")
        try:
            with open(outdir / "wstest.log", "w") as wstest_log:
                completed = subprocess.run(
                    command, stdout=wstest_log, stderr=subprocess.STDOUT
                )
        finally:
            stop_process(proc)
        if completed.returncode != 0:
            raise SuiteError(
                f"docker run exited {completed.returncode}; see {outdir}/wstest.log"
            )
        judge(result, read_report(outdir / "reports" / "servers" / "index.json"))
        result.expected = result.cases  # wstest runs every case it selected.

    def run_client(self, run: Run, outdir: Path, result: Result) -> None:
        port = free_port()
        self.write_spec(outdir, "fuzzingserver.json", self.client_spec(run, port))
        name = f"wspractice-{run.name}-{os.getpid()}"
        command = self.command(
            "fuzzingserver", "fuzzingserver.json", outdir, name, detach=True
        )
        result.command = (
            shlex.join(command) + "  # then: " + shlex.join(run.client_command())
        )
        log(f"{run.name}: {result.command}")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        try:
            with open(outdir / "clients.log", "w") as clients_log:
                count = drive_client_cases(
                    port, run.client_command(), clients_log, progress=run.name
                )
        finally:
            subprocess.run(
                [self.docker, "stop", name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        result.expected = count
        judge(result, read_report(outdir / "reports" / "clients" / "index.json"))


def control(port: int, path: str, timeout: float = 120.0) -> list[str]:
    """Ask the fuzzing server something; the text messages it answers with.

    Its control endpoints (/getCaseCount, /updateReports) answer and close;
    wspractice's own client asks.
    """
    url = f"ws://127.0.0.1:{port}{path}"
    completed = subprocess.run(
        [sys.executable, "-m", "wspractice.client", url, "--wait", str(timeout)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
        cwd=ROOT,
    )
    lines = completed.stdout.splitlines()
    if not lines or not lines[0].startswith("Connected"):
        raise SuiteError(
            f"no answer from the fuzzing server at {url}: {completed.stderr}"
        )
    return [line[2:] for line in lines if line.startswith("< ")]


def wait_for_port(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SuiteError(
                    f"the fuzzing server did not listen on {port} in {timeout:g} s"
                ) from None
            time.sleep(0.5)


def drive_client_cases(
    port: int,
    client: Sequence[str],
    clients_log: IO[str],
    progress: str = "client",
    agent: str = AGENT,
) -> int:
    """Run the client once per case against a fuzzing server; the case count.

    What the fuzzing server expects of a testee: connect to
    ``/runCase?case=N&agent=A`` for N in 1..count, then ask it to write the
    reports with ``/updateReports?agent=A``.
    """
    wait_for_port(port)
    (answer,) = control(port, "/getCaseCount")
    count = int(answer)
    for case in range(1, count + 1):
        url = f"ws://127.0.0.1:{port}/runCase?case={case}&agent={agent}"
        command = [part.replace("{url}", url) for part in client]
        clients_log.write(f"== case {case}: {shlex.join(command)}\n")
        clients_log.flush()
        try:
            subprocess.run(
                command,
                stdout=clients_log,
                stderr=subprocess.STDOUT,
                timeout=CASE_TIMEOUT,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            clients_log.write(f"== case {case}: killed after {CASE_TIMEOUT} s\n")
        if case % 50 == 0:
            log(f"{progress}: {case}/{count} cases")
    control(port, f"/updateReports?agent={agent}")
    return count


# ---------------------------------------------------------------- the runs


def execute(runner: LocalRunner | DockerRunner, run: Run, outdir: Path) -> Result:
    result = Result(run)
    started = time.monotonic()
    try:
        if run.side == "server":
            runner.run_server(run, outdir, result)
        else:
            runner.run_client(run, outdir, result)
    except SuiteError as exc:
        result.error = str(exc)
    except (OSError, subprocess.SubprocessError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.monotonic() - started
    log(f"{run.name}: done in {result.seconds:.0f} s")
    return result


def counts(counter: Counter[str]) -> str:
    return "  ".join(f"{name}={n}" for name, n in sorted(counter.items())) or "none"


def print_result(result: Result) -> None:
    print(f"== {result.run.name}: {result.run.title} ==")
    if result.command:
        print(f"command:       {result.command}")
    if result.summary:
        print(result.summary.rstrip())
        print("-- the gate (every case OK or INFORMATIONAL) --")
    if result.error:
        print(f"error:         {result.error}")
    print(f"cases:         {result.cases} in the report / {result.expected} selected")
    print(f"behavior:      {counts(result.behavior)}")
    print(f"behaviorClose: {counts(result.close)}")
    print(f"informational: {' '.join(result.informational) or 'none'}")
    print(f"wall time:     {result.seconds:.0f} s")
    if result.cpu:
        parts = ", ".join(f"{name} {cpu:.0f} s" for name, cpu in result.cpu.items())
        print(f"cpu time:      {parts}")
    if result.bad:
        print(f"NOT OK ({len(result.bad)}):")
        for line in result.bad:
            print(f"    {line}")
    print(f"result:        {'PASS' if result.passed else 'FAIL'}")
    print(flush=True)


def select_runs(names: Sequence[str], fast: bool) -> list[Run]:
    chosen: list[str] = []
    for name in names:
        for part in split_cases(name):
            for run_name in GROUPS.get(part, [part]):
                if run_name not in RUNS:
                    raise ValueError(part)
                if run_name not in chosen:
                    chosen.append(run_name)
    runs = []
    for name in chosen:
        run = RUNS[name]
        if fast and run.cases == "*":
            run = replace(run, excludes="9.*")
        runs.append(run)
    return runs


def run_names(text: str) -> str:
    for part in split_cases(text):
        if part not in RUNS and part not in GROUPS:
            raise argparse.ArgumentTypeError(
                f"unknown run {part!r}; choose from" f" {', '.join([*RUNS, *GROUPS])}"
            )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn TestSuite against wspractice's /echo endpoint"
        " and its command-line client, with and without permessage-deflate, and"
        " fail on any case that is not OK or INFORMATIONAL.",
        epilog="runs: plain and deflate (the server), client and client-deflate"
        " (python -m wspractice.client --echo); 'server' is plain,deflate and"
        " 'all' is every run.",
    )
    parser.add_argument(
        "--run",
        action="append",
        type=run_names,
        metavar="RUNS",
        help="comma-separated runs: plain, deflate, client, client-deflate,"
        " server, all (default: all); repeatable",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="leave out the slow 9.* group from the runs without compression",
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        choices=[1, 2],
        default=2,
        help="2 (default): the server runs beside the client runs, one core"
        " each; 1: one run at a time",
    )
    parser.add_argument(
        "--runner",
        choices=["local", "docker"],
        default="local",
        help="local: the Autobahn runners in --tools (default; CI); docker: the"
        " suite's image, crossbario/autobahn-testsuite",
    )
    parser.add_argument(
        "--tools",
        type=Path,
        default=Path(os.environ.get("AUTOBAHN_TOOLS", DEFAULT_TOOLS)),
        help="the directory of autobahn.sh and fuzzingserver.py for --runner"
        " local (env AUTOBAHN_TOOLS; default: ../shared/tools/autobahn)",
    )
    parser.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help=f"the image for --runner docker (default: {DEFAULT_IMAGE})",
    )
    parser.add_argument(
        "--docker",
        default="docker",
        metavar="COMMAND",
        help="the docker command for --runner docker (default: docker)",
    )
    parser.add_argument(
        "--outdir",
        type=Path,
        help="where reports go (default: a new temporary directory)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log the suite's own log of every case of server runs",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = select_runs(args.run or ["all"], args.fast)
    runner: LocalRunner | DockerRunner
    if args.runner == "docker":
        runner = DockerRunner(args.image, args.docker)
    else:
        runner = LocalRunner(args.tools, args.verbose)
    try:
        runner.prepare()
    except (SuiteError, subprocess.CalledProcessError) as exc:
        log(f"the suite cannot run: {exc}")
        return 2
    outroot = args.outdir or Path(tempfile.mkdtemp(prefix="wspractice-autobahn-"))
    outroot.mkdir(parents=True, exist_ok=True)
    log(f"runs: {', '.join(r.name for r in runs)}; --jobs {args.jobs}; {outroot}")
    started = time.monotonic()
    # Two lanes: the server runs one after the other beside the client runs
    # (never two client runs at once: the local wstest fuzzing server also
    # takes port 8080 for its web pages).
    ordered = sorted(runs, key=lambda r: START_ORDER.index(r.name))
    lanes = [[r for r in ordered if r.side == side] for side in ("server", "client")]
    if args.jobs == 1:
        lanes = [ordered]
    done: dict[str, Result] = {}

    def run_lane(lane: list[Run]) -> None:
        for run in lane:
            done[run.name] = execute(runner, run, outroot / run.name)

    threads = [threading.Thread(target=run_lane, args=(lane,)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = [done[run.name] for run in runs]
    wall = time.monotonic() - started

    print(
        f"Autobahn TestSuite against wspractice, {time.strftime('%Y-%m-%d')},"
        f" runner: {runner.describe()}"
    )
    print()
    for result in results:
        print_result(result)
    together = "server and client runs side by side" if args.jobs == 2 else "in turn"
    print(f"all runs: {wall:.0f} s wall time ({together})")
    for result in results:
        verdict = "PASS" if result.passed else "FAIL"
        print(f"    {result.run.name:15} {verdict}  {result.seconds:5.0f} s")
    print(f"reports: {outroot}")
    if any(result.error for result in results):
        return 2
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
