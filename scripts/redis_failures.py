#!/usr/bin/env python3
"""What clients see when a room shared through Redis loses a part: measured.

    python scripts/redis_failures.py                 # every case, --presence-timeout 10
    python scripts/redis_failures.py --cases kill,stop --presence-timeout 4

Each case starts a fresh ``redis-server`` (persistence off) and two
wspractice processes, A and B, sharing a room through it, with two users on
each (A1, A2, B1, B2) moving at 20 Hz with a sequence number in their state.
Then it breaks something and reports what the clients saw, with the times
measured from the moment it broke it:

kill     SIGKILL process B: when A's clients stop seeing B's users
stop     SIGTERM process B: the same, and the close code B's clients got
down     kill Redis: whether A's users keep seeing each other move, and when
         B's users leave A's view
restart  kill Redis, start it again empty: when everyone sees everyone moving
slow     put a proxy that delays every byte by --delay-ms each way between
         process B and Redis: latency of an update within a process and across

docs/scaling.md ("When things fail") has a run's figures. Needs
``pip install -e '.[redis]'`` and Debian's ``redis-server``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.scenarios.shared import RedisProcess
from serverproc import ServerProcess
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
CASES = ["kill", "stop", "down", "restart", "slow"]
RATE = 20.0


class User:
    """A client that moves at RATE and keeps what every snapshot showed."""

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self._exit = contextlib.ExitStack()
        self.ws: ClientConnection = self._exit.enter_context(
            connect(f"{url}/?username={name}", compression=None)
        )
        self.sent: dict[int, float] = {}
        self.seq = 0
        #: username -> (seq, time first seen), every new seq.
        self.seen: dict[str, list[tuple[int, float]]] = {}
        self.latest: dict[str, Any] = {}
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._move, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _move(self) -> None:
        while not self._stop.wait(1 / RATE):
            self.seq += 1
            self.sent[self.seq] = time.monotonic()
            try:
                self.ws.send(json.dumps({"seq": self.seq}))
            except ConnectionClosed:
                return

    def _read(self) -> None:
        try:
            for text in self.ws:
                now = time.monotonic()
                snapshot = json.loads(text)
                if "error" in snapshot:
                    continue
                with self._lock:
                    self.latest = {
                        u["username"]: u["state"].get("seq", 0)
                        for u in snapshot.values()
                    }
                    for name, seq in self.latest.items():
                        seen = self.seen.setdefault(name, [])
                        if not seen or seen[-1][0] < seq:
                            seen.append((seq, now))
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self.closed_at = time.monotonic()

    def names(self) -> set[str]:
        with self._lock:
            return set(self.latest)

    def sees(self, name: str) -> int:
        with self._lock:
            return int(self.latest.get(name, -1))

    def close(self) -> None:
        self._stop.set()
        self._exit.close()


def wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``predicate`` held (polled every 10 ms); None: never."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def latencies(sender: User, observer: User, since: float) -> list[float]:
    """ms from sender's update to observer first seeing it (or a later one)."""
    out = []
    for seq, seen_at in observer.seen.get(sender.name, []):
        sent = sender.sent.get(seq)
        if sent is not None and sent >= since:
            out.append((seen_at - sent) * 1000)
    return out


def summary(values: list[float]) -> str:
    if not values:
        return "no updates"
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values):.1f} ms, p99 {p99:.1f} ms ({len(values)})"


class DelayProxy:
    """TCP proxy that forwards every byte after ``delay`` seconds."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.delay = delay
        self.upstream = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        pending: list[tuple[float, bytes]] = []
        cond = threading.Condition()
        done = threading.Event()

        def send() -> None:
            while True:
                with cond:
                    while not pending and not done.is_set():
                        cond.wait()
                    if not pending:
                        break
                    due, data = pending.pop(0)
                time.sleep(max(0.0, due - time.monotonic()))
                try:
                    dst.sendall(data)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=send, daemon=True).start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with cond:
                if not data:
                    done.set()
                    cond.notify()
                    return
                pending.append((time.monotonic() + self.delay, data))
                cond.notify()

    def close(self) -> None:
        self.listener.close()


class Room:
    """redis-server, processes A and B, users A1, A2, B1, B2."""

    def __init__(self, workdir: Path, timeout: float, delay_ms: float = 0) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.redis = RedisProcess(workdir / "redis.log")
        self.proxy = DelayProxy(self.redis.port, delay_ms / 1000) if delay_ms else None
        b_port = self.proxy.port if self.proxy else self.redis.port
        self.a = self._server("A", self.redis.port)
        self.b = self._server("B", b_port)
        self.users = {
            name: User(server.url, name)
            for name, server in (
                ("A1", self.a),
                ("A2", self.a),
                ("B1", self.b),
                ("B2", self.b),
            )
        }
        everyone = set(self.users)
        for user in self.users.values():
            if wait(lambda u=user: u.names() == everyone, 10) is None:
                raise SystemExit(f"{user.name} never saw everyone: {user.names()}")
        time.sleep(1)  # Moving for a while.

    def _server(self, name: str, redis_port: int) -> ServerProcess:
        server = ServerProcess(
            [sys.executable, "-m", "wspractice", "--port", "0", "--redis"]
            + [f"redis://127.0.0.1:{redis_port}/0"]
            + ["--presence-timeout", str(self.timeout)],
            log_path=self.workdir / f"{name}.log",
            cwd=ROOT,
        )
        server.start(30)
        return server

    def __getitem__(self, name: str) -> User:
        return self.users[name]

    def close(self) -> None:
        for user in self.users.values():
            user.close()
        for server in (self.a, self.b):
            server.stop()
        if self.proxy:
            self.proxy.close()
        self.redis.stop()


@contextlib.contextmanager
def room(timeout: float, delay_ms: float = 0) -> Iterator[Room]:
    with tempfile.TemporaryDirectory(prefix="wspractice-failures-") as name:
        r = Room(Path(name), timeout, delay_ms)
        try:
            yield r
        finally:
            r.close()


def case_kill(args: argparse.Namespace) -> list[str]:
    with room(args.presence_timeout) as r:
        assert r.b.proc is not None
        r.b.proc.send_signal(signal.SIGKILL)
        gone = wait(
            lambda: not r["A1"].names() & {"B1", "B2"}, 3 * args.presence_timeout
        )
        b1 = r["B1"]
        wait(lambda: b1.close_code is not None, 5)
        return [
            f"B's users left A1's view after {fmt_s(gone)}",
            f"B1's connection: close code {b1.close_code} (1006: no close frame)",
            "A's users kept seeing each other: "
            + summary(latencies(r["A2"], r["A1"], 0)),
        ]


def case_stop(args: argparse.Namespace) -> list[str]:
    with room(args.presence_timeout) as r:
        assert r.b.proc is not None
        r.b.proc.send_signal(signal.SIGTERM)
        gone = wait(
            lambda: not r["A1"].names() & {"B1", "B2"}, 3 * args.presence_timeout
        )
        b1 = r["B1"]
        wait(lambda: b1.close_code is not None, 10)
        return [
            f"B's users left A1's view after {fmt_s(gone)}",
            f"B1's connection: close code {b1.close_code}",
        ]


def case_down(args: argparse.Namespace) -> list[str]:
    with room(args.presence_timeout) as r:
        broke = time.monotonic()
        r.redis.stop()
        gone = wait(
            lambda: not r["A1"].names() & {"B1", "B2"}, 3 * args.presence_timeout
        )
        local = latencies(r["A2"], r["A1"], broke)
        dropped = [u.name for u in r.users.values() if u.close_code is not None]
        return [
            f"A1 kept seeing A2 move while Redis was down: {summary(local)}",
            f"B's users left A1's view after {fmt_s(gone)}",
            f"connections dropped: {dropped or 'none'}",
        ]


def case_restart(args: argparse.Namespace) -> list[str]:
    with room(args.presence_timeout) as r:
        port = r.redis.port
        r.redis.stop()
        time.sleep(args.outage)
        r.redis = RedisProcess(r.workdir / "redis.log", port=port)
        back = time.monotonic()
        mark = {name: user.seq for name, user in r.users.items()}

        def moving_again() -> bool:
            return all(
                observer.sees(name) > mark[name]
                for observer in r.users.values()
                for name in r.users
            )

        converged = wait(moving_again, 6 * args.presence_timeout)
        dropped = [u.name for u in r.users.values() if u.close_code is not None]
        time.sleep(2)
        cross = latencies(r["B1"], r["A1"], back + (converged or 0) + 0.5)
        return [
            f"Redis down {args.outage:g} s, back empty: everyone saw everyone moving"
            f" again after {fmt_s(converged)}",
            f"connections dropped: {dropped or 'none'}",
            f"then B1 -> A1: {summary(cross)}",
        ]


def case_slow(args: argparse.Namespace) -> list[str]:
    with room(args.presence_timeout, args.delay_ms) as r:
        start = time.monotonic()
        time.sleep(5)
        return [
            f"a proxy delays every byte between B and Redis by {args.delay_ms:g} ms"
            " each way",
            f"B1 -> B2 (same process): {summary(latencies(r['B1'], r['B2'], start))}",
            f"A1 -> A2 (same process): {summary(latencies(r['A1'], r['A2'], start))}",
            f"B1 -> A1 (across): {summary(latencies(r['B1'], r['A1'], start))}",
            f"A1 -> B1 (across): {summary(latencies(r['A1'], r['B1'], start))}",
        ]


def fmt_s(seconds: float | None) -> str:
    return "never (timed out)" if seconds is None else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--presence-timeout", type=float, default=10.0)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--outage", type=float, default=3.0, help="seconds (restart)")
    args = parser.parse_args(argv)
    cases: dict[str, Callable[[argparse.Namespace], list[str]]] = {
        "kill": case_kill,
        "stop": case_stop,
        "down": case_down,
        "restart": case_restart,
        "slow": case_slow,
    }
    for name in args.cases.split(","):
        print(f"{name}:", flush=True)
        for line in cases[name](args):
            print(f"  {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
