"""``--workers N``: N server processes on one port, sharing the room through Redis.

One wspractice process uses one core (a thread per connection, one
interpreter lock). To use more, run several: each worker is a whole
wspractice :class:`~wspractice.server.Server` in its own process, bound to
the same port with ``SO_REUSEPORT`` (Linux spreads new connections over
them), and ``--redis`` makes their users one room.

This process, the supervisor, serves nothing itself. It reserves the port
(so that ``--port 0`` gives every worker the same one), starts the workers,
prints the ready-to-paste URL once they all listen, restarts a worker that
dies (and logs it), and on Ctrl-C or SIGTERM stops them all: each closes its
clients with 1001 and takes its users out of the room, and the supervisor
exits with status 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from types import FrameType
from typing import Any

from .config import Options
from .server import Server, server_url

logger = logging.getLogger("wspractice.workers")

#: How long the workers may take to start listening.
START_TIMEOUT = 30.0
#: A worker that dies sooner than this after it started is restarted only
#: after a pause, growing up to MAX_RESTART_DELAY (a worker that cannot run
#: must not spin).
STABLE_AFTER = 5.0
MAX_RESTART_DELAY = 5.0

_context = multiprocessing.get_context("fork")


class _Worker:
    def __init__(self, index: int, options: Options) -> None:
        self.index = index
        self.ready = _context.Event()
        self.process: Any = _context.Process(
            target=_serve,
            args=(index, options, self.ready),
            name=f"wspractice-worker-{index}",
        )
        self.started = time.monotonic()
        self.process.start()

    @property
    def pid(self) -> int:
        return int(self.process.pid)


def run_workers(options: Options, count: int) -> int:
    """Serve with ``count`` worker processes until Ctrl-C or SIGTERM."""
    try:
        reserved = _reserve_port(options)
    except OSError as exc:
        logger.error("cannot listen on %s port %s: %s", options.host, options.port, exc)
        return 1
    port = reserved.getsockname()[1]
    options = options.replace(port=port, reuse_port=True)
    stopping = _Flag()
    signal.signal(signal.SIGTERM, stopping.set)
    signal.signal(signal.SIGINT, stopping.set)
    workers = {index: _Worker(index, options) for index in range(1, count + 1)}
    try:
        if not _wait_ready(workers, stopping):
            return 0 if stopping else 1
        print(
            f"WebSocket server is running on port {port}: {server_url(options, port)}"
            f" ({count} worker processes)",
            flush=True,
        )
        delays: dict[int, float] = {}
        while not stopping:
            sentinels = {w.process.sentinel: w for w in workers.values()}
            for sentinel in multiprocessing.connection.wait(list(sentinels), 0.5):
                worker = sentinels[sentinel]
                worker.process.join()
                if stopping:
                    break
                workers[worker.index] = _restart(worker, options, delays)
        logger.info("stopping %d worker processes", len(workers))
        return 0
    finally:
        _stop_all(list(workers.values()), options)
        reserved.close()


class _Flag:
    """Set by a signal handler (Ctrl-C, SIGTERM), read by the loop."""

    def __init__(self) -> None:
        self._set = False

    def set(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._set = True

    def __bool__(self) -> bool:
        return self._set


def _reserve_port(options: Options) -> socket.socket:
    """A socket bound (not listening) to the port, with SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((options.host, options.port))
    except OSError:
        sock.close()
        raise
    return sock


def _wait_ready(workers: dict[int, _Worker], stopping: _Flag) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    for worker in workers.values():
        while not worker.ready.wait(0.1):
            if stopping:
                return False
            if not worker.process.is_alive():
                logger.error(
                    "worker %d (pid %d) exited while starting, status %s",
                    worker.index,
                    worker.pid,
                    worker.process.exitcode,
                )
                return False
            if time.monotonic() > deadline:
                logger.error("worker %d did not start in time", worker.index)
                return False
    return True


def _restart(worker: _Worker, options: Options, delays: dict[int, float]) -> _Worker:
    lived = time.monotonic() - worker.started
    logger.warning(
        "worker %d (pid %d) died (%s) after %.1f s; restarting it",
        worker.index,
        worker.pid,
        _status(worker.process.exitcode),
        lived,
    )
    delay = 0.0
    if lived < STABLE_AFTER:
        delay = min(MAX_RESTART_DELAY, max(0.25, delays.get(worker.index, 0) * 2))
        delays[worker.index] = delay
        time.sleep(delay)
    else:
        delays.pop(worker.index, None)
    replacement = _Worker(worker.index, options)
    logger.info("worker %d restarted as pid %d", worker.index, replacement.pid)
    return replacement


def _status(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _stop_all(workers: list[_Worker], options: Options) -> None:
    for worker in workers:
        if worker.process.is_alive():
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + options.close_timeout + 5
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            logger.warning("worker %d did not stop in time: killing it", worker.index)
            worker.process.kill()
            worker.process.join()


# ------------------------------------------------------------ in a worker


def _serve(index: int, options: Options, ready: Any) -> None:
    """A worker's life: a whole server, until SIGTERM or SIGINT."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s %(levelname)-7s [worker {index}] %(message)s"
            )
        )
    signal.signal(signal.SIGTERM, _interrupt_once)
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        server = Server(options)
    except (OSError, RuntimeError) as exc:
        logger.error("cannot start: %s", exc)
        sys.exit(1)
    logger.info(
        "worker %d (pid %d) listening on port %d", index, os.getpid(), server.port
    )
    ready.set()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close_connections()
        server.server_close()
    sys.exit(0)


def _interrupt_once(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C reaches the workers and the supervisor forwards a SIGTERM: the
    # second signal must not interrupt the shutdown the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt
