"""Real processes for the tests of a shared room: redis-server and wspractice.

``redis-server`` is Debian's (``bash scripts/test.sh`` installs it), started
on a free loopback port with persistence off, so that a restart is a Redis
that comes back empty. wspractice servers run as separate processes
(``python -m wspractice``), as they would on several machines.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import TIMEOUT

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
RUNNING = re.compile(r"WebSocket server is running on port (\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, timeout: float) -> Any:
    """Poll ``predicate`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class RedisServer:
    """A redis-server of its own, on a free loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again, on the same port): an empty Redis."""
        log = open(self.workdir / f"redis-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self.ping, f"redis-server on port {self.port}", 2 * TIMEOUT)

    def ping(self) -> bool:
        try:
            return self.client().ping()  # type: ignore[no-any-return]
        except Exception:
            return False

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, socket_timeout=TIMEOUT)

    def kill(self) -> None:
        """SIGKILL: Redis vanishes with everything it held."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()


class Wspractice:
    """``python -m wspractice`` in a process of its own."""

    def __init__(self, *args: str, workdir: Path, session: bool = False) -> None:
        self.args = list(args)
        fd, name = tempfile.mkstemp(prefix="wspractice-", suffix=".log", dir=workdir)
        self.log_path = Path(name)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wspractice", *args],
            stdout=subprocess.PIPE,
            stderr=fd,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # A session of its own: a signal to its group is a terminal's Ctrl-C.
            start_new_session=session,
        )
        os.close(fd)
        self.port = self._read_port()

    def _read_port(self) -> int:
        stdout = self.process.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(stdout.readline()),
            daemon=True,
        )
        reader.start()
        reader.join(6 * TIMEOUT)
        match = RUNNING.search(line[0]) if line else None
        if match is None:
            self.process.kill()
            raise AssertionError(
                f"wspractice {' '.join(self.args)} did not start:"
                f" {line}\n{self.log()}"
            )
        return int(match.group(1))

    def url(self, username: str) -> str:
        return f"ws://127.0.0.1:{self.port}/?username={username}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout if timeout is not None else 4 * TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(4 * TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def need_redis_server() -> None:
    if not Path(REDIS_SERVER).exists():
        message = f"{REDIS_SERVER} is missing: bash scripts/test.sh installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("redis", reason="pip install 'wspractice[redis]'")


class Watcher:
    """A presence client that keeps the latest snapshot it was sent.

    A thread reads every message: snapshots (checked: a JSON object of users)
    and error replies, which are kept apart.
    """

    def __init__(self, url: str, name: str) -> None:
        from .clients import join

        self.name = name
        self._exit = contextlib.ExitStack()
        self.ws = self._exit.enter_context(join(url))
        self.latest: dict[str, Any] | None = None
        self.first: dict[str, Any] | None = None
        self.snapshots = 0
        self.errors: list[str] = []
        #: username -> every "seq" of that user's state seen, in order.
        self.seqs: dict[str, list[int]] = {}
        self.closed: Any = None
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import json

        from websockets.exceptions import ConnectionClosed

        try:
            for text in self.ws:
                message = json.loads(text)
                with self._changed:
                    if set(message) == {"error"}:
                        self.errors.append(message["error"])
                    else:
                        self._snapshot(message)
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        with self._changed:
            self.closed = self.ws.close_code
            self._changed.notify_all()

    def _snapshot(self, snapshot: dict[str, Any]) -> None:
        if self.first is None:
            self.first = snapshot
        self.latest = snapshot
        self.snapshots += 1
        for user in snapshot.values():
            seq = user["state"].get("seq")
            if seq is not None:
                seen = self.seqs.setdefault(user["username"], [])
                if not seen or seen[-1] != seq:
                    seen.append(seq)

    def send(self, state: dict[str, Any]) -> None:
        import json

        self.ws.send(json.dumps(state))

    def wait(
        self, predicate: Callable[[dict[str, Any]], Any], what: str, timeout: float
    ) -> dict[str, Any]:
        """The first snapshot (from now on, or the latest) where ``predicate``
        holds; fails naming ``what`` if none came within ``timeout``."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self.latest is not None and predicate(self.latest), timeout
            )
            assert ok, f"{self.name} never saw {what}; last: {self.latest}"
            assert self.latest is not None
            return self.latest

    def wait_closed(self, timeout: float) -> Any:
        with self._changed:
            self._changed.wait_for(lambda: self.closed is not None, timeout)
            return self.closed

    def close(self) -> None:
        self._exit.close()
        self._thread.join(TIMEOUT)


def names(snapshot: dict[str, Any]) -> list[str]:
    """The usernames of a snapshot, in its order."""
    return [user["username"] for user in snapshot.values()]


def states(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {user["username"]: user["state"] for user in snapshot.values()}
