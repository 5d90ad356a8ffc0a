"""Fixtures for the shared-room tests (``pytest_plugins`` of their modules):
a redis-server of the test's own, and wspractice processes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .redisproc import RedisServer, Wspractice, need_redis_server


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wspractice-redis-") as name:
        yield Path(name)


@pytest.fixture
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    need_redis_server()
    server = RedisServer(workdir)
    yield server
    server.stop()


@pytest.fixture
def start_process(workdir: Path) -> Iterator[Callable[..., Wspractice]]:
    """Start wspractice processes; all are stopped after the test."""
    processes: list[Wspractice] = []

    def start(*args: str, session: bool = False) -> Wspractice:
        process = Wspractice("--port", "0", *args, workdir=workdir, session=session)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()
