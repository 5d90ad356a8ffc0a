"""``--workers N``: N processes on one port, one room through Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
import pytest

from .conftest import TIMEOUT
from .redisproc import (
    RedisServer,
    Watcher,
    Wspractice,
    names,
    wait_for,
)

#: The fixtures redis_server, start_process and workdir.
pytest_plugins = ["tests.redisfixtures"]

Start = Callable[..., Wspractice]
LISTENING = re.compile(r"\[worker (\d+)\] .*worker \d+ \(pid (\d+)\) listening")


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    connected: list[Watcher] = []
    yield connected
    for watcher in connected:
        watcher.close()


def worker_pids(process: Wspractice) -> dict[int, int]:
    """worker number -> pid of its latest start, from the log."""
    return {int(n): int(pid) for n, pid in LISTENING.findall(process.log())}


def users_per_worker(redis_server: RedisServer) -> list[int]:
    client = redis_server.client()
    return [
        client.hlen(b"wspractice:users:" + node) - 1  # Less the "seq" field.
        for node in client.smembers("wspractice:nodes")
    ]


def test_workers_without_redis_are_refused_with_a_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wspractice", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT,
    )
    assert result.returncode == 2
    assert "--workers 2 needs --redis URL" in result.stderr
    assert "users on different workers would not see each other" in result.stderr


def test_two_workers_on_one_port_serve_one_room_of_a_dozen_users(
    redis_server: RedisServer, start_process: Start, watchers: list[Watcher]
) -> None:
    server = start_process(
        "--workers", "2", "--redis", redis_server.url, "--presence-timeout", "4"
    )
    assert sorted(worker_pids(server)) == [1, 2]
    # A dozen users; SO_REUSEPORT spreads them over the workers (more join
    # in the unlikely case that all of them landed on one).
    while len(watchers) < 12 or min(users_per_worker(redis_server), default=0) == 0:
        assert len(watchers) < 40, users_per_worker(redis_server)
        watchers.append(Watcher(server.url(f"user{len(watchers)}"), "?"))
        wait_for(
            lambda: sum(users_per_worker(redis_server)) == len(watchers),
            "every user in Redis",
            2 * TIMEOUT,
        )
    expected = sorted(f"user{n}" for n in range(len(watchers)))
    for watcher in watchers:
        watcher.wait(lambda s: sorted(names(s)) == expected, "everyone", 2 * TIMEOUT)
    orders = {tuple(w.wait(lambda s: True, "a snapshot", TIMEOUT)) for w in watchers}
    assert len(orders) == 1, "one join order everywhere"
    print(f"users per worker: {users_per_worker(redis_server)}")


def test_a_worker_that_dies_is_restarted_and_its_users_leave(
    redis_server: RedisServer, start_process: Start, watchers: list[Watcher]
) -> None:
    server = start_process(
        "--workers", "2", "--redis", redis_server.url, "--presence-timeout", "4"
    )
    pids = worker_pids(server)
    while len(watchers) < 2 or min(users_per_worker(redis_server), default=0) == 0:
        assert len(watchers) < 40
        watchers.append(Watcher(server.url(f"user{len(watchers)}"), "?"))
        wait_for(
            lambda: sum(users_per_worker(redis_server)) == len(watchers),
            "every user in Redis",
            2 * TIMEOUT,
        )
    os.kill(pids[1], signal.SIGKILL)
    wait_for(
        lambda: worker_pids(server).get(1) not in (None, pids[1]),
        "worker 1 restarted",
        4 * TIMEOUT,
    )
    assert re.search(r"worker 1 \(pid \d+\) died \(killed by SIGKILL\)", server.log())
    killed = [w for w in watchers if w.wait_closed(0.5) is not None]
    alive = [w for w in watchers if w not in killed]
    assert killed and alive
    remaining = sorted(names(alive[0].latest or {}))
    for watcher in alive:
        remaining = sorted(
            names(
                watcher.wait(
                    lambda s: len(s) == len(alive),
                    "the dead worker's users leave",
                    3 * TIMEOUT,
                )
            )
        )
    # The restarted worker serves: a newcomer sees the room.
    newcomer = Watcher(server.url("late"), "late")
    watchers.append(newcomer)
    newcomer.wait(
        lambda s: sorted(names(s)) == sorted(remaining + ["late"]),
        "the room",
        3 * TIMEOUT,
    )


def test_ctrl_c_stops_every_worker_with_exit_status_0(
    redis_server: RedisServer, start_process: Start, watchers: list[Watcher]
) -> None:
    server = start_process("--workers", "2", "--redis", redis_server.url, session=True)
    pids = worker_pids(server)
    watchers.extend(Watcher(server.url(f"user{n}"), f"user{n}") for n in range(4))
    for watcher in watchers:
        watcher.wait(lambda s: len(s) == 4, "everyone", 2 * TIMEOUT)
    os.killpg(server.process.pid, signal.SIGINT)  # What Ctrl-C does.
    assert server.wait() == 0, server.log()
    assert [w.wait_closed(TIMEOUT) for w in watchers] == [1001] * 4
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert redis_server.client().smembers("wspractice:nodes") == set()
    assert "Traceback" not in server.log(), server.log()


def test_sigterm_to_the_supervisor_stops_every_worker(
    redis_server: RedisServer, start_process: Start, watchers: list[Watcher]
) -> None:
    server = start_process("--workers", "2", "--redis", redis_server.url)
    pids = worker_pids(server)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0, server.log()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
