#!/usr/bin/env python3
"""Simulated users for the demo page: N cursors moving on smooth paths.

    python scripts/demo_clients.py --users 5
    python scripts/demo_clients.py --url ws://127.0.0.1:8000/ --users 20 --rate 20

Each user connects to the presence app as ``Bot 1``, ``Bot 2``, ... and sends
its cursor position ``--rate`` times a second, as the demo page and the Node
tutorial's client do (``{"x": ..., "y": ...}``), tracing a Lissajous curve
of its own inside a ``--width`` x ``--height`` area. Open the demo page
(http://127.0.0.1:8000/) to watch them. Ctrl-C (or ``--duration``) closes
every connection with 1000 and exits 0.

Uses the websockets library (the test extra), as an independent client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import sys
import time
import urllib.parse

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wspractice.cli import positive_int

NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia"]


def username(index: int) -> str:
    """Ada, Grace, ..., then Ada 2, Grace 2, ..."""
    name = NAMES[index % len(NAMES)]
    round_ = index // len(NAMES)
    return f"{name} {round_ + 1}" if round_ else name


def user_url(base: str, name: str) -> str:
    parts = urllib.parse.urlsplit(base)
    query = urllib.parse.urlencode({"username": name})
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path or "/", query, "")
    )


class Path:
    """A smooth closed curve: x and y are sines of different frequencies."""

    def __init__(self, rng: random.Random, width: int, height: int) -> None:
        self.cx, self.cy = width / 2, height / 2
        self.ax = rng.uniform(0.25, 0.45) * width
        self.ay = rng.uniform(0.25, 0.45) * height
        self.fx = rng.choice([1, 2, 3]) * rng.uniform(0.08, 0.12)
        self.fy = rng.choice([1, 2, 3]) * rng.uniform(0.08, 0.12)
        self.phase = rng.uniform(0, 2 * math.pi)

    def at(self, t: float) -> dict[str, int]:
        x = self.cx + self.ax * math.sin(2 * math.pi * self.fx * t + self.phase)
        y = self.cy + self.ay * math.sin(2 * math.pi * self.fy * t)
        return {"x": round(x), "y": round(y)}


async def drain(ws: ClientConnection) -> None:
    """Read (and drop) the snapshots, so that the server never waits on us."""
    async for _ in ws:
        pass


async def user(index: int, args: argparse.Namespace, stop: asyncio.Event) -> int:
    name = username(index)
    path = Path(random.Random(args.seed * 1000 + index), args.width, args.height)
    try:
        async with connect(user_url(args.url, name), compression=None) as ws:
            reader = asyncio.create_task(drain(ws))
            start = time.monotonic()
            period = 1 / args.rate
            ticks = 0
            while not stop.is_set():
                await ws.send(json.dumps(path.at(time.monotonic() - start)))
                ticks += 1
                delay = start + ticks * period - time.monotonic()
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, delay))
                except asyncio.TimeoutError:  # Not TimeoutError before 3.11.
                    pass
            reader.cancel()
        return 0
    except InvalidStatus as exc:
        print(f"{name}: handshake refused: {exc}", file=sys.stderr)
    except ConnectionClosed as exc:
        print(f"{name}: the server closed the connection: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"{name}: cannot connect to {args.url}: {exc}", file=sys.stderr)
    stop.set()
    return 1


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C lets every user close cleanly, on every Python version (3.10's
    # asyncio.run() raises KeyboardInterrupt inside whichever task runs), and
    # also when a script started us in the background with SIGINT ignored.
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if args.duration:
        loop.call_later(args.duration, stop.set)
    tasks = [asyncio.create_task(user(i, args, stop)) for i in range(args.users)]
    print(
        f"{args.users} users moving at {args.rate:g} messages a second each;"
        " Ctrl-C stops them",
        flush=True,
    )
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:  # Let every user close cleanly.
        stop.set()
        await asyncio.wait(tasks)
    return max(task.result() for task in tasks)


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Simulated users moving their cursors, to fill the demo page.",
    )
    parser.add_argument(
        "--url",
        default="ws://127.0.0.1:8000/",
        help="the server; ?username= is added (default: %(default)s)",
    )
    parser.add_argument(
        "--users", type=positive_int, default=5, help="how many (default: 5)"
    )
    parser.add_argument(
        "--rate",
        type=positive_float,
        default=20.0,
        help="messages a second per user (default: 20, the page's 50 ms throttle)",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    parser.add_argument("--width", type=positive_int, default=900)
    parser.add_argument("--height", type=positive_int, default=600)
    parser.add_argument("--seed", type=int, default=1, help="for other paths")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
