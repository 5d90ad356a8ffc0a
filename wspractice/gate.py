"""The fan-out gate: one thread at a time runs the server's connection code.

The interpreter runs one thread's Python at a time anyway, but it hands its
lock over at every system call. A broadcast makes one call per connection;
among hundreds of busy reader threads, it then waits for its turn after each
one. Measured here, a round to 300 connections took six seconds of waiting
for 26 ms of work, and the readers that took its turns fell behind anyway.

So every thread holds the gate while it runs code for connections: a reader
while it handles what it read, a broadcast for its whole round, the writer
thread while it flushes sockets and runs timers. A broadcast round then runs
at the speed of its system calls. Readers that have data wait at the gate,
which costs them nothing they would not have waited for the interpreter.

The gate prefers the broadcast: a thread that enters with ``priority=True``
(the writer thread, a broadcast) goes ahead of readers that are waiting, so
snapshots never queue behind a crowd of readers. It is reentrant: a reader
that triggers a broadcast already holds it.
"""

from __future__ import annotations

import threading
from types import TracebackType


class Gate:
    """A reentrant lock that lets priority holders go before the others."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        #: Clear while a priority holder waits or holds the gate.
        self._open = threading.Event()
        self._open.set()
        self._priority = 0
        self._count_lock = threading.Lock()
        self._held = threading.local()

    def __enter__(self) -> None:
        # A reader lets a waiting broadcast go first. (Checked without a
        # lock: a reader that slips in just before only delays it by one
        # reader's turn.) A thread that already holds the gate goes on.
        depth = getattr(self._held, "depth", 0)
        if self._priority and not depth:
            self._open.wait()
        self._lock.acquire()
        self._held.depth = depth + 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._held.depth -= 1
        self._lock.release()

    def priority(self) -> _Priority:
        """``with gate.priority():`` enters ahead of waiting readers."""
        return _Priority(self)

    def _enter_priority(self) -> None:
        with self._count_lock:
            self._priority += 1
            self._open.clear()
        self._lock.acquire()
        self._held.depth = getattr(self._held, "depth", 0) + 1

    def _exit_priority(self) -> None:
        self._held.depth -= 1
        self._lock.release()
        with self._count_lock:
            self._priority -= 1
            if not self._priority:
                self._open.set()


class _Priority:
    __slots__ = ("_gate",)

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        self._gate._enter_priority()

    def __exit__(self, *exc_info: object) -> None:
        self._gate._exit_priority()
