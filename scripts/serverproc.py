"""A server under test, as a child process: started, found, watched, stopped.

The benchmark and the soak test start every server the same way: a command
that listens on ``--port 0`` (a free port the kernel picks) and prints a
startup line containing ``running on port N``, which is how the port is
found. The process's output (stdout and stderr together) goes to a log file.
While it runs, a sampler thread reads its memory from /proc every
``sample_every`` seconds, keeps the peak, and kills the process if it grows
past ``max_rss_kib``, so that a runaway server cannot take the machine down.

    server = ServerProcess(["python", "-m", "wspractice", "--port", "0"],
                           log_path=Path("server.log"))
    server.start(timeout=30)
    ...  # drive ws://127.0.0.1:{server.port}; server.usage() reads /proc
    server.stop()
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import procstat

#: The startup line every server prints: "... running on port N ...".
PORT_LINE = re.compile(r"running on port (\d+)")


class ServerError(Exception):
    """The server did not start, or did not say on which port."""


class ServerProcess:
    """One server process, started with a fresh log on a free port."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        max_rss_kib: int | None = None,
        sample_every: float = 0.2,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.cwd = cwd
        #: Added to this process's environment (with PYTHONUNBUFFERED=1).
        self.env = dict(env or {})
        self.max_rss_kib = max_rss_kib
        self.sample_every = sample_every
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.peak_rss_kib = 0
        self.killed_for: str | None = None
        self._log: IO[bytes] | None = None
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float) -> int:
        """Start the process and wait for its startup line; its port."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Its own group: killed with its children.
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = PORT_LINE.search(self.log_text())
            if match:
                self.port = int(match.group(1))
                break
            if self.proc.poll() is not None:
                self.stop()
                tail = self.log_tail(3).replace("\n", " / ")
                raise ServerError(
                    f"exited with {self.proc.returncode} at startup: {tail}"
                )
            time.sleep(0.05)
        else:
            self.stop()
            raise ServerError(f"printed no port within {timeout:g} s")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self.port

    def _sample(self) -> None:
        """Track the peak RSS; kill a server that eats more than allowed."""
        while not self._stop_sampling.wait(self.sample_every):
            rss = self.rss_kib()
            if rss is None:
                return
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            if self.max_rss_kib is not None and rss > self.max_rss_kib:
                self.killed_for = f"RSS {rss // 1024} MiB over the limit"
                self._kill()
                return

    def usage(self) -> procstat.Usage | None:
        return procstat.usage(self.pid) if self.pid else None

    def cpu_seconds(self) -> float | None:
        return procstat.cpu_seconds(self.pid) if self.pid else None

    def rss_kib(self) -> int | None:
        return procstat.rss_kib(self.pid) if self.pid else None

    def exit_status(self) -> str | None:
        """Why the server is gone, if it is."""
        if self.proc is None or self.proc.poll() is None:
            return None
        if self.killed_for:
            return f"killed: {self.killed_for}"
        return f"exited with {self.proc.returncode} during the run"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 5) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status, or None
        if it had to be killed."""
        self._stop_sampling.set()
        code: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    code = self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._kill()
                    self.proc.wait()
            else:
                code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
