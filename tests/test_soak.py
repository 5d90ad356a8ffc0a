"""scripts/soak.py, run briefly so that it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "scripts" / "soak.py"


def test_soak_help_explains_the_run() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--duration", "--walkers", "--rate", "--connect-rate", "--kinds"):
        assert option in result.stdout
    assert "Arguments after -- go to the server" in result.stdout
    assert "stalled readers" in result.stdout  # The whole description.


#: Checks that hold however busy the machine is.
ALWAYS = (
    "no snapshot out of order",
    "every snapshot valid",
    "threads back to the baseline",
    "fds back to the baseline",
    "no ERROR or traceback in the server log",
    "clean shutdown (exit 0)",
)
#: Checks that a starved load generator can fail on its own (its requests
#: arrive after the handshake deadline, its walkers miss the keepalive
#: window): required only when the report says the generator kept up.
WHEN_IT_KEPT_UP = (
    "no update lost",
    "walkers connected until the shutdown closed them with 1001",
    "every hostile client saw an expected outcome",
)


def test_a_short_soak_passes_its_checks() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--duration",
            "5",
            "--walkers",
            "3",
            "--connect-rate",
            "20",
            "--progress",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    report = result.stdout
    explain = report + result.stderr[-3000:]
    assert result.returncode in (0, 1), explain
    checks = {
        line[8:]: line[2:6]
        for line in report.splitlines()
        if line.startswith(("  PASS  ", "  FAIL  "))
    }
    for name in ALWAYS:
        assert checks.get(name) == "PASS", f"{name}\n{explain}"
    if checks.get("the load generator kept up (event-loop lag under 1 s)") == "PASS":
        for name in WHEN_IT_KEPT_UP:
            assert checks.get(name) == "PASS", f"{name}\n{explain}"
    assert ("result: PASS" in report) == (result.returncode == 0)
    for kind in ("normal", "reset", "oversize", "garbage_http", "bad_json"):
        assert f"\n  {kind} " in report
    assert "[soak] t=" in result.stderr  # Progress goes to stderr.
