"""The writer thread: finishes the writes that sockets could not take at once.

Sessions never block on a write. When a socket's buffer is full, the rest of
the data waits in the session's outbox and the session asks this thread to
watch its socket. The thread sends more whenever the socket becomes writable,
drops a connection that has taken nothing for ``send_timeout`` seconds, and
drops one whose closing handshake has run past its deadline.

It is also the server's clock: :meth:`Writer.call_at` runs a callback at a
given time (keepalive pings use it), and :meth:`Writer.watch_deadline`
checks deadlines (request heads, closing handshakes) on every tick, so no
connection needs a timer thread.

Only this thread touches the selector and the timer heap; other threads hand
it work through queues and wake it with a byte on a socket pair.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .gate import Gate

if TYPE_CHECKING:
    from .session import Session

logger = logging.getLogger(__name__)


class Expiring(Protocol):
    """Something with a deadline the writer thread watches."""

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which to expire; None once no longer armed."""

    def expire(self) -> None: ...


#: A timer callback gets the current monotonic time and returns when it wants
#: to run again, or None.
TimerCallback = Callable[[float], "float | None"]

#: How often deadlines are checked, in seconds.
TICK = 0.1


class Writer(threading.Thread):
    """One thread that flushes every stalled socket."""

    def __init__(self, send_timeout: float) -> None:
        super().__init__(name="wspractice-writer", daemon=True)
        self.send_timeout = send_timeout
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._commands: deque[tuple[str, Session]] = deque()
        self._new_timers: deque[tuple[float, TimerCallback]] = deque()
        self._timers: list[tuple[float, int, TimerCallback]] = []
        self._timer_ids = itertools.count()
        self._watched: dict[int, Session] = {}
        self._fds: dict[Session, int] = {}
        self._timed: set[Expiring] = set()
        self._stopping = False
        #: The fan-out gate (see :mod:`wspractice.gate`).
        self.gate = Gate()

    # ------------------------------------------------ called from any thread

    def watch(self, session: Session) -> None:
        """Flush ``session`` whenever its socket can take more data."""
        self._commands.append(("watch", session))
        self._wake()

    def watch_deadline(self, item: Expiring) -> None:
        """Call ``item.expire()`` once ``item.deadline`` passes, unless it is
        None by then (checked on every tick; the set holds the item only
        while its deadline is armed). A request head's deadline and a
        closing handshake's are both watched this way."""
        self._timed.add(item)

    def forget(self, session: Session) -> None:
        """Stop watching ``session``; its socket is about to be closed."""
        self._commands.append(("forget", session))
        self._wake()

    def call_at(self, when: float, callback: TimerCallback) -> None:
        """Run ``callback(now)`` in this thread at monotonic time ``when``.

        The callback returns the time it wants to run again, or None.
        """
        self._new_timers.append((when, callback))
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # The pipe is full (a wake-up is pending) or closed.
            pass

    # ------------------------------------------------ the writer thread

    def run(self) -> None:
        next_tick = time.monotonic() + TICK
        while not self._stopping:
            wake_at = next_tick
            if self._timers and self._timers[0][0] < wake_at:
                wake_at = self._timers[0][0]
            timeout = max(0.0, wake_at - time.monotonic())
            ready = self._selector.select(timeout)
            writable = []
            for key, _ in ready:
                if key.data is None:
                    self._drain_wakeups()
                else:
                    writable.append(key)
            if writable:
                with self.gate.exclusive():
                    for key in writable:
                        self._flush(key.fd, key.data)
            self._run_commands()
            now = time.monotonic()
            self._run_timers(now)
            if now >= next_tick:
                self._check_deadlines(now)
                next_tick = now + TICK

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _flush(self, fd: int, session: Session) -> None:
        try:
            done = session.flush()
        except Exception:
            logger.exception("%r: error while flushing", session)
            done = True
            session.abort("internal error while writing")
        if done:
            self._unwatch(fd)

    def _unwatch(self, fd: int) -> None:
        session = self._watched.pop(fd, None)
        if session is not None:
            self._fds.pop(session, None)
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def _run_commands(self) -> None:
        while self._commands:
            command, session = self._commands.popleft()
            if command == "watch":
                fd = session.sock.fileno()
                if fd < 0 or self._watched.get(fd) is session:
                    continue
                if fd in self._watched:  # A closed socket's number, reused.
                    self._unwatch(fd)
                self._watched[fd] = session
                self._fds[session] = fd
                self._selector.register(fd, selectors.EVENT_WRITE, session)
            else:  # forget
                self._timed.discard(session)
                watched_fd = self._fds.get(session)
                if watched_fd is not None:
                    self._unwatch(watched_fd)

    def _run_timers(self, now: float) -> None:
        while self._new_timers:
            when, callback = self._new_timers.popleft()
            heapq.heappush(self._timers, (when, next(self._timer_ids), callback))
        while self._timers and self._timers[0][0] <= now:
            _, _, callback = heapq.heappop(self._timers)
            try:
                again = callback(now)
            except Exception:
                logger.exception("error in timer %r", callback)
                continue
            if again is not None:
                heapq.heappush(self._timers, (again, next(self._timer_ids), callback))

    def _check_deadlines(self, now: float) -> None:
        for item in list(self._timed):
            deadline = item.deadline
            if deadline is None:
                self._timed.discard(item)
            elif now >= deadline:
                self._timed.discard(item)
                item.expire()
        for session in list(self._watched.values()):
            since = session.stalled_since
            if since is not None and now - since > self.send_timeout:
                session.abort(
                    f"the client took no data for {self.send_timeout:g} seconds"
                )
