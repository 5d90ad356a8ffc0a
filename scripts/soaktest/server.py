"""The server under soak: ``python -m wspractice`` and what it logged.

It is started and sampled by the runner the benchmark uses too
(``scripts/serverproc.py``, reading /proc through ``scripts/procstat.py``);
its output goes to a log file, read at the end for its log levels, its
ERROR lines and any traceback.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from procstat import Usage
from serverproc import ServerProcess

ROOT = Path(__file__).resolve().parent.parent.parent
LOG_LEVEL = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


@dataclass
class ServerLog:
    """What the server logged: lines per level (and tracebacks), ERRORs."""

    levels: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, text: str, keep: int = 20) -> ServerLog:
        found = cls()
        for line in text.splitlines():
            match = LOG_LEVEL.match(line)
            if match:
                found.levels[match.group(1)] += 1
                if match.group(1) in ("ERROR", "CRITICAL") and len(found.errors) < keep:
                    found.errors.append(line.rstrip())
            elif line.startswith("Traceback"):
                found.levels["Traceback"] += 1
        return found

    @property
    def bad(self) -> int:
        """ERROR and CRITICAL lines and tracebacks."""
        return sum(self.levels[k] for k in ("ERROR", "CRITICAL", "Traceback"))


class SoakServer(ServerProcess):
    """wspractice from this checkout, with ``args``, logging to ``log_path``."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        command = [sys.executable, "-m", "wspractice", "--port", "0", *args]
        super().__init__(command, log_path=log_path, cwd=ROOT)

    def sample(self) -> Usage:
        """The server's threads, descriptors, memory and CPU (it must run)."""
        usage = self.usage()
        if usage is None:
            raise OSError("the server is gone")
        return usage

    def read_log(self) -> ServerLog:
        return ServerLog.read(self.log_text())
