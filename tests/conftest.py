"""Fixtures: a real wspractice server on a free loopback port, in a thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from wspractice import Options, Server

#: Every wait in the tests is a multiple of this; raise it on a slow machine
#: with WSPRACTICE_TEST_TIMEOUT=10.
TIMEOUT = float(os.environ.get("WSPRACTICE_TEST_TIMEOUT", "5"))


def threads_left(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started since ``before`` was taken that are still alive, once
    none is or after TIMEOUT (threads that ended meanwhile do not count)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = [t for t in threading.enumerate() if t not in before]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class RunningServer:
    """A server serving in a background thread."""

    def __init__(self, options: Options) -> None:
        self.server = Server(options)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "/?username=Alex") -> str:
        return self.server.url(path)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.stop()
            self.thread.join(TIMEOUT)


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    """Start servers with given options; all are stopped after the test."""
    servers: list[RunningServer] = []

    def start(**changes: object) -> RunningServer:
        options = Options(port=0).replace(**changes)
        running = RunningServer(options)
        servers.append(running)
        return running

    yield start
    for running in servers:
        running.stop()


@pytest.fixture
def server(start_server: Callable[..., RunningServer]) -> RunningServer:
    """A server with the default options (port 0)."""
    return start_server()
