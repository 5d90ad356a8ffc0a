#!/usr/bin/env python3
"""Run the Autobahn TestSuite against wspractice's /echo and hold it to RFC 6455.

    python scripts/conformance.py                   # both runs, as CI does
    python scripts/conformance.py --run plain       # no compression: all cases
    python scripts/conformance.py --run deflate     # compression: 12.* and 13.*
    python scripts/conformance.py --run plain --fast

For each run it starts a fresh server exactly as outside tools do
(``python -m wspractice --port P --max-message-size 33554432
--no-compression``, or ``--compression``), runs the suite's ``wstest`` in
fuzzingclient mode through the Autobahn runner (``autobahn.sh``, which
installs the suite on first use), and reads the suite's own report.

The gate is stricter than the suite's colours: every case must be OK, or
INFORMATIONAL (7.1.6, 7.13.1 and 7.13.2 are informational by design), in both
``behavior`` and ``behaviorClose``. NON-STRICT, WRONG CODE, UNCLEAN and FAILED
all fail it. Without compression the permessage-deflate groups are
UNIMPLEMENTED; with compression they must be OK.

Exit status: 0 when every run passes, 1 when a case fails, 2 when the suite
could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNNER = ROOT.parent / "shared" / "tools" / "autobahn" / "autobahn.sh"
STARTUP = re.compile(r"running on port (\d+)")
MAX_MESSAGE_SIZE = 33554432  # 32 MiB: the suite's 9.* cases send up to 16 MiB.
DEFLATE_GROUPS = ("12.", "13.")
PASSING = {"OK", "INFORMATIONAL"}


@dataclass
class Run:
    name: str
    compression: bool
    cases: str
    excludes: str = ""
    #: Cases that may be UNIMPLEMENTED (deflate groups when it is off).
    may_be_unimplemented: tuple[str, ...] = ()


@dataclass
class Result:
    run: Run
    behavior: Counter[str] = field(default_factory=Counter)
    close: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    informational: list[str] = field(default_factory=list)
    cases: int = 0
    seconds: float = 0.0


def log(message: str) -> None:
    print(f"[conformance] {message}", file=sys.stderr, flush=True)


def ensure_suite(runner: Path) -> None:
    """Install the suite if needed, with its C accelerators.

    wstest is the slow side of the compression run: without wsaccel it masks
    and validates UTF-8 in pure Python. The runner's own attempt to build
    wsaccel misses the Python 2.7 header directory, so it is done here.
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
    env["CFLAGS"] = " ".join(
        f"-I{path}" for path in [include / "python2.7", *include.glob("*/python2.7")]
    )
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    built = subprocess.run(
        install + ["wsaccel==0.6.6", "ujson==2.0.3"], env=env, capture_output=True
    )
    if built.returncode != 0:
        log("warning: wsaccel did not build; the suite will run slower")


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
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(match.group(1))


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def case_matches(case_id: str, prefixes: tuple[str, ...]) -> bool:
    return any(case_id.startswith(prefix) for prefix in prefixes)


def run_suite(runner: Path, run: Run, outdir: Path, verbose: bool) -> Result:
    proc, port = start_server(run.compression)
    url = f"ws://127.0.0.1:{port}/echo"
    command = ["bash", str(runner), "-c", run.cases, "-o", str(outdir), url]
    if run.excludes:
        command[2:2] = ["-x", run.excludes]
    if run.compression:
        command.insert(2, "--require-compression")
    if verbose:
        command.insert(2, "--verbose")
    log(f"{run.name}: {' '.join(command[1:])}")
    started = time.monotonic()
    try:
        # The runner's stdout is its own summary of the run; progress goes
        # to stderr.
        completed = subprocess.run(command)
    finally:
        stop_server(proc)
    result = Result(run, seconds=time.monotonic() - started)
    index = outdir / "reports" / "index.json"
    if not index.exists():
        raise SystemExit(
            f"no report from the suite (runner exit {completed.returncode});"
            f" see {outdir}"
        )
    report = json.loads(index.read_text())
    (agent,) = report.values()
    for case_id, case in sorted(agent.items(), key=lambda kv: case_key(kv[0])):
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
    return result


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split(".") if part.isdigit())


def counts(counter: Counter[str]) -> str:
    return "  ".join(f"{name}={n}" for name, n in sorted(counter.items()))


def print_result(result: Result) -> None:
    print(f"== {result.run.name} ==")
    print(f"cases:         {result.cases}")
    print(f"behavior:      {counts(result.behavior)}")
    print(f"behaviorClose: {counts(result.close)}")
    print(f"informational: {' '.join(result.informational) or 'none'}")
    print(f"wall time:     {result.seconds:.0f} s")
    if result.bad:
        print(f"NOT OK ({len(result.bad)}):")
        for line in result.bad:
            print(f"    {line}")
    print(f"result:        {'PASS' if not result.bad else 'FAIL'}")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn TestSuite against wspractice's /echo"
        " endpoint, with and without permessage-deflate, and fail on any case"
        " that is not OK or INFORMATIONAL."
    )
    parser.add_argument(
        "--run",
        choices=["plain", "deflate", "both"],
        default="both",
        help="plain: all cases without compression; deflate: 12.* and 13.*"
        " with compression",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="plain run without the slow 9.* group",
    )
    parser.add_argument(
        "--runner",
        type=Path,
        default=Path(os.environ.get("AUTOBAHN_SH", DEFAULT_RUNNER)),
        help="the Autobahn runner script (env AUTOBAHN_SH)",
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
        help="also print the suite's log of every case as it runs",
    )
    args = parser.parse_args(argv)
    if not args.runner.exists():
        log(f"the Autobahn runner is not at {args.runner}; set AUTOBAHN_SH")
        return 2

    runs = []
    if args.run in ("plain", "both"):
        runs.append(
            Run(
                "without compression (--no-compression)",
                compression=False,
                cases="*",
                excludes="9.*" if args.fast else "",
                may_be_unimplemented=DEFLATE_GROUPS,
            )
        )
    if args.run in ("deflate", "both"):
        runs.append(Run("with compression (--compression)", True, cases="12.*,13.*"))
    ensure_suite(args.runner)
    outroot = args.outdir or Path(tempfile.mkdtemp(prefix="wspractice-autobahn-"))
    results = []
    for number, run in enumerate(runs):
        results.append(
            run_suite(args.runner, run, outroot / f"run{number}", args.verbose)
        )
    print(f"Autobahn TestSuite against wspractice /echo, {time.strftime('%Y-%m-%d')}")
    for result in results:
        print_result(result)
    print(f"reports: {outroot}")
    return 0 if all(not r.bad for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
