"""The fan-out gate, with real threads."""

from __future__ import annotations

import threading
import time

from wspractice.gate import Gate

from .conftest import TIMEOUT


def test_one_thread_at_a_time() -> None:
    gate = Gate()
    inside, most = 0, 0
    lock = threading.Lock()

    def reader() -> None:
        nonlocal inside, most
        for _ in range(200):
            with gate:
                with lock:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert most == 1


def test_the_writer_goes_ahead_of_waiting_readers() -> None:
    gate = Gate()
    order: list[str] = []
    reader_in = threading.Event()
    writer_waiting = threading.Event()

    def first_reader() -> None:
        with gate:
            reader_in.set()
            writer_waiting.wait(TIMEOUT)
            time.sleep(0.05)  # The writer now waits for this reader.
            gate.pause()  # Between two messages: the writer goes first.
            order.append("first reader, after its pause")

    def writer() -> None:
        reader_in.wait(TIMEOUT)
        writer_waiting.set()
        with gate.exclusive():
            with gate.exclusive():  # The writer thread may nest.
                order.append("writer")
            time.sleep(0.05)

    def late_reader() -> None:
        writer_waiting.wait(TIMEOUT)
        time.sleep(0.02)
        with gate:
            order.append("late reader")

    threads = [threading.Thread(target=f) for f in (first_reader, writer, late_reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert order[0] == "writer"
    assert sorted(order[1:]) == ["first reader, after its pause", "late reader"]


def test_pause_without_a_waiting_writer_keeps_the_gate() -> None:
    gate = Gate()
    with gate:
        gate.pause()
        assert not gate._lock.acquire(blocking=False)  # Still held.


def test_reader_time_counts_how_long_readers_held_it() -> None:
    gate = Gate()
    with gate:
        time.sleep(0.05)
    with gate.exclusive():
        time.sleep(0.05)  # The writer's time is not readers' time.
    assert 0.04 < gate.reader_time < 0.5
