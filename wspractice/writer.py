"""The writer thread: the server's clock, and the writes sockets could not take.

Connections never block on a write. When a socket's buffer is full, the rest
waits in the connection's outbox and the connection asks this thread to
:meth:`~Writer.watch` its socket; the thread flushes it whenever the socket
becomes writable.

It is also the server's clock: :meth:`Writer.call_at` runs a callback at a
given time. Broadcast rounds, keepalive pings, closing-handshake and send
deadlines, and request-head deadlines all go through it, so no connection
needs a timer thread of its own.

The thread runs its work with the fan-out gate to itself (see
:mod:`wspractice.fanout`). Only this thread touches the selector and the
timer heap; other threads hand it work through three queues (sockets to
watch, sockets to forget, new timers) and wake it with a byte on a socket
pair, except for coarse timers, which it finds on its next tick.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .fanout import Gate

logger = logging.getLogger(__name__)

#: A timer callback gets the current monotonic time and returns when it wants
#: to run again, or None.
TimerCallback = Callable[[float], "float | None"]

#: The grid of coarse timers, in seconds: the thread looks for new ones at
#: least this often, and runs them at the next multiple of it.
TICK = 0.1


class Flushable(Protocol):
    """What the writer thread needs of a connection it watches."""

    def fileno(self) -> int: ...

    def flush(self) -> bool:
        """Write what the socket takes; True once nothing is left to write."""

    def abort(self, reason: str) -> None: ...


class Writer(threading.Thread):
    """One thread that flushes every full socket and runs every timer."""

    def __init__(self, gate: Gate, *, coarse_timers: bool = True) -> None:
        super().__init__(name="wspractice-writer", daemon=True)
        self._gate = gate
        #: False: every timer is exact and wakes the thread (the ablation).
        self._coarse_timers = coarse_timers
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        # Work handed over by other threads (deques: append and popleft are
        # thread-safe, and only this thread pops).
        self._to_watch: deque[Flushable] = deque()
        self._to_forget: deque[Flushable] = deque()
        self._new_timers: deque[tuple[float, TimerCallback]] = deque()
        # This thread's own.
        self._timers: list[tuple[float, int, TimerCallback]] = []
        self._timer_ids = itertools.count()
        self._watched: dict[int, Flushable] = {}
        self._fds: dict[Flushable, int] = {}
        self._stopping = threading.Event()

    # ------------------------------------------------ called from any thread

    def watch(self, connection: Flushable) -> None:
        """Flush ``connection`` whenever its socket can take more data."""
        self._to_watch.append(connection)
        self._wake()

    def forget(self, connection: Flushable) -> None:
        """Stop watching ``connection``: its socket is about to be closed."""
        self._to_forget.append(connection)
        self._wake()

    def call_at(
        self, when: float, callback: TimerCallback, *, coarse: bool = False
    ) -> None:
        """Run ``callback(now)`` in this thread at monotonic time ``when``.

        The callback returns the time it wants to run again, or None.

        A ``coarse`` timer, for a timeout of seconds (a request head,
        keepalive, a closing handshake), may run up to :data:`TICK` late, in
        return for costing no wake-up: the thread finds it on its next tick,
        and runs it at the next multiple of :data:`TICK`, together with every
        other timer due then. A broadcast round is not coarse.
        """
        if coarse and self._coarse_timers:
            self._new_timers.append((math.ceil(when / TICK) * TICK, callback))
        else:
            self._new_timers.append((when, callback))
            self._wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # The socket pair is full (a wake-up is pending) or closed.
            pass

    # ------------------------------------------------ the writer thread

    def run(self) -> None:
        while not self._stopping.is_set():
            timeout = TICK  # Coarse timers come without a wake-up.
            if self._timers:
                timeout = min(TICK, max(0.0, self._timers[0][0] - time.monotonic()))
            writable = []
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    self._drain_wakeups()
                else:
                    writable.append((key.fd, key.data))
            self._take_new_work()
            due = self._timers and self._timers[0][0] <= time.monotonic()
            if writable or due:
                with self._gate.exclusive():
                    for fd, connection in writable:
                        self._flush(fd, connection)
                    self._run_timers()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _take_new_work(self) -> None:
        while self._to_watch:
            connection = self._to_watch.popleft()
            fd = connection.fileno()
            if fd < 0 or self._watched.get(fd) is connection:
                continue
            if fd in self._watched:  # A closed socket's number, reused.
                self._unwatch(fd)
            self._watched[fd] = connection
            self._fds[connection] = fd
            self._selector.register(fd, selectors.EVENT_WRITE, connection)
        while self._to_forget:
            fd = self._fds.get(self._to_forget.popleft(), -1)
            if fd >= 0:
                self._unwatch(fd)
        while self._new_timers:
            when, callback = self._new_timers.popleft()
            heapq.heappush(self._timers, (when, next(self._timer_ids), callback))

    def _flush(self, fd: int, connection: Flushable) -> None:
        try:
            done = connection.flush()
        except Exception:
            logger.exception("%r: error while writing", connection)
            connection.abort("internal error while writing")
            done = True
        if done and self._watched.get(fd) is connection:
            self._unwatch(fd)

    def _unwatch(self, fd: int) -> None:
        connection = self._watched.pop(fd, None)
        if connection is not None:
            self._fds.pop(connection, None)
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def _run_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, callback = heapq.heappop(self._timers)
            try:
                again = callback(now)
            except Exception:
                logger.exception("error in timer %r", callback)
                continue
            if again is not None:
                heapq.heappush(self._timers, (again, next(self._timer_ids), callback))
