"""Fan-out: how one snapshot reaches hundreds of connections quickly.

Everything in wspractice that exists only for speed lives here, each part
measured on and off in docs/benchmarks.md ("Ablation") and each kept only
because it pays. The contract:

1. **Rounds** (:class:`Rounds`). A change asks for a round; a round builds
   the users map once and offers it to every connection. Changes made while a
   round is due are carried by that round (coalescing): a client may skip
   intermediate snapshots, but always receives the latest one promptly. With
   an interval of 0 every change is broadcast at once, in the thread that
   made it, as the Node tutorial does.
2. **One rule for when a round goes out** (:meth:`RoundClock.next_round`):
   at the latest of *now*, the last round's start plus ``--broadcast-interval``,
   the last round's start plus its bytes over ``--broadcast-bandwidth``, and
   the last round's end plus a pause that leaves readers their share of the
   time (pacing).
3. **The gate** (:class:`Gate`). Python runs one thread at a time, and
   hundreds of threads fighting for the interpreter lock waste a core and
   make a round wait behind every reader. Readers hold the gate while they
   handle what they read; the writer thread, which runs the rounds, goes
   first: a reader lets it in between two messages.

``Options.ablate`` (the ``WSPRACTICE_ABLATE`` environment variable of the
command line) turns a mechanism off, for the benchmark's ablation: ``gate``
or ``pacing``; ``--broadcast-bandwidth 0`` and ``--broadcast-interval 0`` turn
off the others. (``coarse-timers`` turns off the writer thread's coarse
timers, which are not part of fan-out: see :meth:`wspractice.writer.Writer.call_at`.)

Rule: the gate is only a scheduling device. Correctness never depends on it:
every connection's state is guarded by that connection's own lock, and the
users map by the presence app's lock, whether the gate is on or off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

#: Schedules ``callback(now)`` at a monotonic time (:meth:`Writer.call_at`).
Scheduler = Callable[[float, Callable[[float], "float | None"]], None]


class Gate:
    """A lock that readers share one at a time and the writer thread enters first.

    Readers use ``with gate:`` around the handling of what they read, and
    :meth:`pause` between two messages; only the writer thread uses
    :meth:`exclusive`, and never nests it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Held by the writer thread while it waits for or holds the gate:
        #: readers that arrive meanwhile wait behind it.
        self._turnstile = threading.Lock()
        #: Whether the writer thread waits for the gate. Written by the
        #: writer thread while it holds the turnstile; read by readers
        #: without a lock, as a hint (a stale read costs one turn's delay).
        self._wanted = False
        #: Seconds readers have held the gate in all (pacing reads it).
        #: Written only by the reader that holds the gate.
        self.reader_time = 0.0
        self._entered = 0.0

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
        """Let the writer thread in if it waits (a reader, between messages)."""
        if self._wanted:
            self.__exit__(None, None, None)
            self.__enter__()

    def exclusive(self) -> _Exclusive:
        """``with gate.exclusive():`` runs ahead of every waiting reader."""
        return _Exclusive(self)


class _Exclusive:
    __slots__ = ("_gate",)

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        gate = self._gate
        gate._turnstile.acquire()
        gate._wanted = True
        gate._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        gate = self._gate
        gate._wanted = False
        gate._lock.release()
        gate._turnstile.release()


class NoGate(Gate):
    """The gate turned off (``WSPRACTICE_ABLATE=gate``): nobody waits."""

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc_info: object) -> None:
        pass

    def pause(self) -> None:
        pass

    def exclusive(self) -> _Exclusive:
        return _NO_EXCLUSIVE


class _NoExclusive(_Exclusive):
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc_info: object) -> None:
        pass


_NO_EXCLUSIVE = _NoExclusive(Gate())

#: For readers of endpoints that never broadcast, and for the ablation.
NO_GATE = NoGate()


@dataclass
class RoundClock:
    """When the next broadcast round may go out. No I/O; times are given.

    ``interval_ms`` and ``bandwidth_mb_s`` are the command line's
    ``--broadcast-interval`` and ``--broadcast-bandwidth``, in their units.
    """

    interval_ms: float
    #: Megabytes of snapshots a second, all connections together; 0: no cap.
    bandwidth_mb_s: float = 0.0
    #: Pause after a round so that readers keep the share of time they need.
    pacing: bool = True
    last_start: float = -float("inf")
    last_end: float = -float("inf")
    last_bytes: int = 0
    #: The pause after the last round (pacing).
    pause: float = 0.0

    def next_round(self, now: float) -> float:
        """The rule: the earliest time the next round may start."""
        spacing = self.interval_ms / 1000
        if self.bandwidth_mb_s > 0:
            spacing = max(spacing, self.last_bytes / (self.bandwidth_mb_s * 1e6))
        return max(now, self.last_start + spacing, self.last_end + self.pause)

    def finished(
        self, start: float, end: float, sent: int, readers_busy: float
    ) -> None:
        """A round ran from ``start`` to ``end`` and handed out ``sent`` bytes.

        ``readers_busy`` is the fraction of the time since the previous round
        that readers held the gate. Broadcasting may then take ``1 - busy`` of
        the time, less a margin, and never less than a tenth: in a quiet room
        rounds follow each other closely, in a busy one they come less often
        and carry more changes each.
        """
        self.last_start, self.last_end, self.last_bytes = start, end, sent
        if self.pacing:
            share = max(0.1, 0.9 - min(1.0, readers_busy))
            self.pause = (end - start) * (1 - share) / share


class Rounds:
    """Coalesced broadcast rounds, run by the writer thread.

    :meth:`request` is the one call a change makes. The round itself is
    :attr:`broadcast`, which returns how many bytes it handed out (0 when
    there was nothing new to send).
    """

    def __init__(
        self,
        broadcast: Callable[[], int],
        clock: RoundClock,
        call_at: Scheduler,
        gate: Gate,
    ) -> None:
        #: What a round does: the presence app's ``broadcast``.
        self.broadcast = broadcast
        self.clock = clock
        self._call_at = call_at
        self._gate = gate
        #: Guards ``_due`` and the clock.
        self._lock = threading.Lock()
        #: A round has been scheduled and has not started yet.
        self._due = False
        self._paced_at = time.monotonic()
        self._paced_reader_time = 0.0

    def request(self) -> None:
        """Something changed: broadcast now, or in the round that is due."""
        if self.clock.interval_ms <= 0:
            self.broadcast()  # The tutorial's way: at once, in this thread.
            return
        with self._lock:
            if self._due:
                return  # The coming round carries this change too.
            self._due = True
            when = self.clock.next_round(time.monotonic())
        self._call_at(when, self._run)

    def _run(self, now: float) -> None:
        """A round, in the writer thread (which holds the gate exclusively)."""
        with self._lock:
            self._due = False  # Changes from now on ask for the next round.
        start = time.monotonic()
        sent = self.broadcast()
        end = time.monotonic()
        reader_time = self._gate.reader_time
        with self._lock:
            elapsed = end - self._paced_at
            busy = (reader_time - self._paced_reader_time) / elapsed if elapsed else 0.0
            self._paced_at, self._paced_reader_time = end, reader_time
            self.clock.finished(start, end, sent, busy)
