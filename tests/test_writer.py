"""The writer thread: the server's clock, and the writes sockets could not take.

A real :class:`Writer` thread with real sockets; what it flushes is a small
:class:`Flushable` that records its calls. How connections use it (partial
writes, send timeouts, keepalive) is in test_connection.py and
test_protocol.py.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from wspractice.fanout import Gate
from wspractice.writer import TICK, Writer

from .conftest import TIMEOUT


@pytest.fixture
def writer() -> Iterator[Writer]:
    thread = Writer(Gate())
    thread.start()
    yield thread
    thread.stop()


class Flushable:
    """A connection whose socket is always writable; done after ``writes``."""

    def __init__(self, sock: socket.socket, writes: int = 1, fail: bool = False):
        self.sock = sock
        self.writes = writes
        self.fail = fail
        self.flushes = 0
        self.aborted: list[str] = []
        self.done = threading.Event()

    def fileno(self) -> int:
        return self.sock.fileno()

    def flush(self) -> bool:
        self.flushes += 1
        if self.fail:
            raise RuntimeError("a bug while writing")
        finished = self.flushes >= self.writes
        if finished:
            self.done.set()
        return finished

    def abort(self, reason: str) -> None:
        self.aborted.append(reason)
        self.done.set()


@pytest.fixture
def sock() -> Iterator[socket.socket]:
    a, b = socket.socketpair()
    yield a
    a.close()
    b.close()


def run_in_writer(writer: Writer, callback: object = None) -> float:
    """Wait until the writer thread has run one more timer; when it ran."""
    ran: list[float] = []
    event = threading.Event()

    def timer(now: float) -> None:
        ran.append(now)
        event.set()

    writer.call_at(time.monotonic(), timer)
    assert event.wait(TIMEOUT), "the writer thread ran no timer"
    return ran[0]


# ---------------------------------------------------------------- timers


def test_timers_run_in_the_writer_thread_in_the_order_of_their_times(
    writer: Writer,
) -> None:
    ran: list[tuple[str, str]] = []
    last = threading.Event()

    def timer(name: str) -> object:
        def run(now: float) -> None:
            ran.append((name, threading.current_thread().name))
            if name == "late":
                last.set()

        return run

    now = time.monotonic()
    writer.call_at(now + 0.2, timer("late"))  # type: ignore[arg-type]
    writer.call_at(now + 0.1, timer("early"))  # type: ignore[arg-type]
    writer.call_at(now - 1.0, timer("overdue"))  # type: ignore[arg-type]
    assert last.wait(TIMEOUT), f"not every timer ran: {ran}"
    assert [name for name, _ in ran] == ["overdue", "early", "late"]
    assert {thread for _, thread in ran} == {"wspractice-writer"}


def test_a_timer_runs_again_at_the_time_it_returns(writer: Writer) -> None:
    calls: list[float] = []
    finished = threading.Event()

    def tick(now: float) -> float | None:
        calls.append(now)
        if len(calls) == 3:
            finished.set()
            return None
        return now + 0.05

    writer.call_at(time.monotonic(), tick)
    assert finished.wait(TIMEOUT), f"the timer ran {len(calls)} times, not 3"
    assert all(b >= a + 0.05 for a, b in zip(calls, calls[1:])), calls
    run_in_writer(writer)  # Returning None ended it.
    assert len(calls) == 3


def test_an_error_in_a_timer_is_logged_and_the_others_run(
    writer: Writer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(now: float) -> None:
        raise RuntimeError("a bug in a timer")

    with caplog.at_level(logging.ERROR, logger="wspractice.writer"):
        writer.call_at(time.monotonic(), broken)
        run_in_writer(writer)
    assert any(
        record.exc_info and "a bug in a timer" in str(record.exc_info[1])
        for record in caplog.records
    )


# ---------------------------------------------------------------- writes


def test_a_watched_connection_is_flushed_until_it_is_done(
    writer: Writer, sock: socket.socket
) -> None:
    connection = Flushable(sock, writes=3)
    writer.watch(connection)
    assert connection.done.wait(TIMEOUT), "the writer never finished flushing"
    # Its socket stays writable: had it not been forgotten once done, the
    # writer would have flushed it again before running the next timer.
    run_in_writer(writer)
    assert connection.flushes == 3


def test_a_forgotten_connection_is_not_flushed(
    writer: Writer, sock: socket.socket
) -> None:
    connection = Flushable(sock, writes=1_000_000)
    writer.watch(connection)
    writer.forget(connection)
    run_in_writer(writer)
    flushes = connection.flushes
    run_in_writer(writer)
    assert connection.flushes == flushes


def test_an_error_while_flushing_aborts_that_connection(
    writer: Writer, sock: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    connection = Flushable(sock, fail=True)
    with caplog.at_level(logging.ERROR, logger="wspractice.writer"):
        writer.watch(connection)
        assert connection.done.wait(TIMEOUT), "the connection was never aborted"
        run_in_writer(writer)
    assert connection.aborted == ["internal error while writing"]
    assert connection.flushes == 1  # Not flushed again after the abort.


def test_stop_ends_the_thread(sock: socket.socket) -> None:
    writer = Writer(Gate())
    writer.start()
    run_in_writer(writer)
    writer.stop()
    assert not writer.is_alive()


class CountingWriter(Writer):
    """A real writer thread that counts the wake-ups asked of it."""

    wakeups = 0

    def _wake(self) -> None:
        self.wakeups += 1
        super()._wake()


@pytest.mark.parametrize("coarse_timers", [True, False])
def test_coarse_timers_cost_no_wakeup_and_run_together_on_the_tick(
    coarse_timers: bool,
) -> None:
    # A request head's deadline is armed for every HTTP request: it must not
    # wake the writer thread each time, and those due in one tick run in one
    # pass (one `now`). With the mechanism ablated, each wakes the thread.
    writer = CountingWriter(Gate(), coarse_timers=coarse_timers)
    writer.start()
    try:
        ran: list[float] = []
        done = threading.Event()

        def timer(now: float) -> None:
            ran.append(now)
            if len(ran) == 50:
                done.set()

        grid = math.ceil(time.monotonic() / TICK) * TICK + 3 * TICK
        before = writer.wakeups
        for i in range(50):  # All within the tick that ends at `grid`.
            writer.call_at(grid - TICK + 0.001 * (i + 1), timer, coarse=True)
        wakeups = writer.wakeups - before
        assert done.wait(TIMEOUT), f"{len(ran)} of 50 coarse timers ran"
    finally:
        writer.stop()
    if coarse_timers:
        assert wakeups == 0
        assert len(set(ran)) == 1, "the tick's timers ran in more than one pass"
        assert ran[0] >= grid - 1e-9
    else:
        assert wakeups == 50
