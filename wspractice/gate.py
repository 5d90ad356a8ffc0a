"""The fan-out gate: one thread at a time runs connection code.

The interpreter runs one thread's Python at a time anyway, and hands its lock
over at every system call. That goes badly with hundreds of threads:

- A broadcast round makes one system call per connection, and among busy
  reader threads it waits for its turn after each one. Measured here, a
  round to 300 connections took six seconds of waiting for 26 ms of work.
- Threads waiting for the interpreter lock wake every few milliseconds to
  ask for it. Ninety of them waiting at once kept a whole core busy doing
  nothing but that, measured with ``perf``.

So a thread holds the gate while it runs code for connections: a reader while
it handles what it read, the writer thread while it broadcasts a snapshot or
flushes sockets. Others wait at the gate, asleep, not at the interpreter
lock. The writer thread goes first: a reader lets it in between two messages,
and readers that arrive meanwhile wait until its round is over.

Rule: only the writer thread calls :meth:`Gate.exclusive` (and may nest it);
readers use ``with gate:`` and :meth:`Gate.pause`, and never nest them.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType


class Gate:
    """A lock for readers that lets the writer thread go first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Held by the writer thread while it waits for or holds the gate;
        #: readers that see it wanted wait on it, and pass it on when it is
        #: released.
        self._turnstile = threading.Lock()
        self._wanted = False
        self._depth = 0
        #: Seconds readers have held the gate, in all: how busy they are.
        self.reader_time = 0.0
        self._entered = 0.0

    # ------------------------------------------------------------ readers

    def __enter__(self) -> None:
        if self._wanted:
            self._turnstile.acquire()
            self._turnstile.release()
        self._lock.acquire()
        self._entered = time.monotonic()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reader_time += time.monotonic() - self._entered
        self._lock.release()

    def pause(self) -> None:
        """Let the writer thread in, if it waits (a reader, between messages).

        A reader that is behind may have read thousands of messages at once;
        it steps out between two of them rather than keep a broadcast waiting.
        """
        if self._wanted:
            self.__exit__(None, None, None)
            self.__enter__()

    # ------------------------------------------------------------ the writer

    def exclusive(self) -> _Exclusive:
        """``with gate.exclusive():`` runs ahead of every waiting reader."""
        return _Exclusive(self)

    def _acquire_first(self) -> None:
        self._depth += 1
        if self._depth > 1:
            return  # The writer thread holds it already.
        self._turnstile.acquire()
        self._wanted = True
        self._lock.acquire()

    def _release_first(self) -> None:
        self._depth -= 1
        if self._depth:
            return
        self._wanted = False
        self._lock.release()
        self._turnstile.release()


class _Exclusive:
    __slots__ = ("_gate",)

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        self._gate._acquire_first()

    def __exit__(self, *exc_info: object) -> None:
        self._gate._release_first()


class NoGate:
    """What a reader uses instead of the gate when it never broadcasts."""

    __slots__ = ()

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc_info: object) -> None:
        pass

    def pause(self) -> None:
        pass


NO_GATE = NoGate()
