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


def test_a_short_soak_passes_every_check() -> None:
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
    assert result.returncode == 0, report + result.stderr[-3000:]
    assert "result: PASS" in report
    assert "lost 0, out of order 0, invalid 0" in report
    for kind in ("normal", "reset", "oversize", "garbage_http", "bad_json"):
        assert f"\n  {kind} " in report
    assert "[soak] t=" in result.stderr  # Progress goes to stderr.
