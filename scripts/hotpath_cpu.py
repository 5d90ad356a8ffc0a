#!/usr/bin/env python3
"""Server CPU per message, on /echo and on the presence app, for checkouts.

Starts each checkout's server as a child process (its own ``wspractice``
package first on ``PYTHONPATH``), connects one raw-socket client and plays a
ping-pong of ``--messages`` messages: send one, wait for its answer (the
echo, or the snapshot that carries the new state). The server's CPU time
(user + system, all threads, from ``/proc/PID/stat``) is read before and
after the loop; the figure is that difference over the message count.

A machine shared with other work is noisy, so runs of the checkouts are
interleaved (A B C, then C B A, ...) and every run is printed, with the
median per checkout at the end: compare medians, and look at the spread.

    python scripts/hotpath_cpu.py --checkout before=/tmp/base \\
        --checkout after=. --rounds 6 --messages 20000

The clock behind ``/proc/PID/stat`` ticks 100 times a second: a run of
20,000 messages measures CPU to about 10 ms in a few hundred.

``--protocol-only`` measures less but more steadily: the per-message path of
:class:`wspractice.protocol.Protocol` alone (a frame in, the message out, an
echo frame queued and taken for the socket), in a fresh interpreter per
checkout and round, with no socket, thread or server; the figure is the best
of five passes over ``--messages`` messages, in nanoseconds per message.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procstat  # noqa: E402
from rawframes import OP_TEXT, frame, parse_frame, upgrade_request  # noqa: E402
from serverproc import ServerProcess  # noqa: E402

#: The presence app would drop most of a fast ping-pong at its default rate.
SERVER_ARGS = ["--port", "0", "--log-level", "warning", "--rate-limit", "0"]


class Client:
    """A blocking WebSocket client on a raw socket (frames from rawframes)."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.sock.sendall(upgrade_request(path))
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101 "):
            raise RuntimeError(f"handshake refused: {head!r}")

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def send(self, text: str) -> None:
        self.sock.sendall(frame(OP_TEXT, text.encode()))

    def recv(self) -> bytes:
        while True:
            parsed = parse_frame(self.buffer)
            if parsed is not None:
                got, used = parsed
                self.buffer = self.buffer[used:]
                return got.payload
            self._fill()

    def close(self) -> None:
        self.sock.close()


def ping_pong(port: int, endpoint: str, messages: int, pid: int) -> float:
    """Server CPU seconds for ``messages`` round trips."""
    if endpoint == "echo":
        client = Client(port, "/echo")
        client.send("warm-up")
        client.recv()
        before = procstat.cpu_seconds(pid)
        for i in range(messages):
            client.send(f'{{"x":{i},"y":{i}}}')
            client.recv()
    else:
        client = Client(port, "/?username=Bench")
        client.recv()  # The first snapshot: this user alone.
        before = procstat.cpu_seconds(pid)
        for i in range(messages):
            client.send(f'{{"x":{i},"y":{i}}}')
            want = f'"x":{i},'.encode()
            while want not in client.recv():  # Coalesced: wait for this state.
                pass
    after = procstat.cpu_seconds(pid)
    client.close()
    assert before is not None and after is not None
    return after - before


def run_one(name: str, checkout: Path, endpoint: str, messages: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(
            [sys.executable, "-m", "wspractice", *SERVER_ARGS],
            log_path=Path(tmp) / f"{name}.log",
            cwd=checkout,
            env={"PYTHONPATH": str(checkout)},
        )
        server.start(timeout=30)
        try:
            assert server.pid is not None
            return ping_pong(server.port, endpoint, messages, server.pid)
        finally:
            server.stop()


#: Runs in the checkout's interpreter: prints ns per message, best of 5.
PROTOCOL_LOOP = """
import sys, time
sys.path.insert(0, sys.argv[2])
from rawframes import OP_TEXT, frame
from wspractice.config import Options
from wspractice.protocol import Protocol
n = int(sys.argv[1])
frames = [frame(OP_TEXT, ('{"x":%d,"y":%d}' % (i, i)).encode()) for i in range(n)]
best = float("inf")
for _ in range(5):
    protocol = Protocol(Options(), 0.0)
    start = time.process_time()
    for data in frames:
        protocol.receive_data(data, 0.0)
        message = protocol.next_message()
        protocol.send_text(message)
        chunk = protocol.data_to_send()
        protocol.data_sent(len(chunk), 0.0)
    best = min(best, time.process_time() - start)
print(best / n * 1e9)
"""


def protocol_only(checkout: Path, messages: int) -> float:
    """Nanoseconds per message through ``Protocol`` alone, in ``checkout``."""
    done = subprocess.run(
        [sys.executable, "-c", PROTOCOL_LOOP, str(messages), str(SCRIPTS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=checkout,
        env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"},
    )
    return float(done.stdout)


SCRIPTS = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkout",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a source tree to measure (repeatable)",
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--endpoint", choices=["echo", "presence", "both"], default="both"
    )
    parser.add_argument("--json", metavar="FILE", help="also write every run here")
    parser.add_argument(
        "--protocol-only",
        action="store_true",
        help="time Protocol's per-message path alone, in ns (see above)",
    )
    args = parser.parse_args(argv)
    checkouts = []
    for spec in args.checkout:
        name, _, path = spec.partition("=")
        checkouts.append((name, Path(path).resolve()))
    if args.protocol_only:
        return protocol_main(checkouts, args.messages, args.rounds)
    endpoints = ["echo", "presence"] if args.endpoint == "both" else [args.endpoint]
    results: dict[str, dict[str, list[float]]] = {
        e: {n: [] for n, _ in checkouts} for e in endpoints
    }
    print(
        f"server CPU per message, {args.messages} round trips a run,"
        f" {args.rounds} rounds, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    for round_number in range(args.rounds):
        order = checkouts if round_number % 2 == 0 else checkouts[::-1]
        for endpoint in endpoints:
            line = []
            for name, path in order:
                cpu = run_one(name, path, endpoint, args.messages)
                micro = cpu / args.messages * 1e6
                results[endpoint][name].append(micro)
                line.append(f"{name} {micro:6.1f}")
            print(f"round {round_number + 1} {endpoint:8} us/msg: " + "  ".join(line))
    print("median (min-max) us/msg:")
    for endpoint in endpoints:
        parts = []
        for name, _ in checkouts:
            runs = results[endpoint][name]
            median = statistics.median(runs)
            parts.append(f"{name} {median:.1f} ({min(runs):.1f}-{max(runs):.1f})")
        print(f"  {endpoint:8} " + "  ".join(parts))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def protocol_main(checkouts: list[tuple[str, Path]], messages: int, rounds: int) -> int:
    runs: dict[str, list[float]] = {name: [] for name, _ in checkouts}
    print(f"Protocol alone, ns per message (best of 5 x {messages}), {rounds} rounds")
    for round_number in range(rounds):
        order = checkouts if round_number % 2 == 0 else checkouts[::-1]
        line = []
        for name, path in order:
            ns = protocol_only(path, messages)
            runs[name].append(ns)
            line.append(f"{name} {ns:7.0f}")
        print(f"round {round_number + 1} ns/msg: " + "  ".join(line))
    print(
        "median (min-max) ns/msg: "
        + "  ".join(
            f"{name} {statistics.median(r):.0f} ({min(r):.0f}-{max(r):.0f})"
            for name, r in runs.items()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
