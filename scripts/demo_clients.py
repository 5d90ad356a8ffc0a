#!/usr/bin/env python3
"""Simulated users for the demo page: N cursors moving on smooth paths.

    python scripts/demo_clients.py --users 5
    python scripts/demo_clients.py --url ws://127.0.0.1:8000/ --users 20 --rate 20

Each user connects to the presence app as ``Ada``, ``Grace``, ... and sends
its cursor position ``--rate`` times a second, as the demo page and the Node
tutorial's client do (``{"x": ..., "y": ...}``), tracing a Lissajous curve
of its own inside a ``--width`` x ``--height`` area. Open the demo page
(http://127.0.0.1:8000/) to watch them. Ctrl-C (or ``--duration``) closes
every connection with 1000 and exits 0.

It needs nothing beyond what ``pip install -e .`` installs: asyncio streams
carry the bytes and a wsproto state machine (wspractice's one dependency)
makes and reads the frames, as in the server, here on the client's side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import ssl
import sys
import time
import urllib.parse

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from wspractice.cli import positive_int

NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Radia"]

#: How long to wait for the server's answer to our close frame.
CLOSE_TIMEOUT = 5.0


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


class Refused(Exception):
    """The server answered the opening handshake with an HTTP error."""


class Closed(Exception):
    """The server closed the connection."""


class Client:
    """A WebSocket client: asyncio moves the bytes, wsproto frames them."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        #: The server's close frame (code, reason), once it came.
        self.closed_with: tuple[int, str] | None = None

    @classmethod
    async def connect(cls, url: str) -> Client:
        """Open the connection and complete the opening handshake."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"not a ws:// or wss:// URL: {url}")
        secure = parts.scheme == "wss"
        reader, writer = await asyncio.open_connection(
            parts.hostname,
            parts.port or (443 if secure else 80),
            ssl=ssl.create_default_context() if secure else None,
        )
        client = cls(reader, writer)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        client.send(Request(host=parts.netloc, target=target))
        try:
            await client.handshake()
        except BaseException:
            writer.close()
            raise
        return client

    def send(self, event: Event) -> None:
        self.writer.write(self.ws.send(event))

    async def handshake(self) -> None:
        status, body = 0, b""
        while True:
            for event in await self.receive():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise Refused(f"HTTP {status}")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        reason = body.decode("utf-8", "replace").strip()
                        raise Refused(f"HTTP {status}: {reason}")

    async def receive(self) -> list[Event]:
        """The events in the next bytes from the server; Closed at EOF."""
        data = await self.reader.read(65536)
        self.ws.receive_data(data or None)
        events = list(self.ws.events())
        if not data and not events:
            raise Closed("1006, no close frame")
        return events

    async def send_text(self, text: str) -> None:
        self.send(TextMessage(data=text))
        await self.writer.drain()

    async def read_until_closed(self) -> None:
        """Read (and drop) the snapshots, so that the server never waits on
        us; answer pings; return once the server's close frame came."""
        while self.closed_with is None:
            for event in await self.receive():
                if isinstance(event, Ping):
                    self.send(event.response())
                elif isinstance(event, CloseConnection):
                    self.closed_with = (event.code, event.reason or "")
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:
                        self.send(event.response())  # The server closed first.
            await self.writer.drain()

    async def close(self, reader: asyncio.Task[None]) -> None:
        """Send a close frame (1000) and wait for the server's answer."""
        if self.ws.state is ConnectionState.OPEN:
            self.send(CloseConnection(code=1000))
            await self.writer.drain()
        try:
            await asyncio.wait_for(reader, CLOSE_TIMEOUT)
        except (Closed, OSError, asyncio.TimeoutError):
            pass
        self.writer.close()


async def user(index: int, args: argparse.Namespace, stop: asyncio.Event) -> int:
    """One simulated user, until ``stop``: 0, or 1 after printing what broke."""
    name = username(index)
    path = Path(random.Random(args.seed * 1000 + index), args.width, args.height)
    try:
        client = await Client.connect(user_url(args.url, name))
    except Refused as exc:
        return fail(f"{name}: handshake refused: {exc}", stop)
    except OSError as exc:
        return fail(f"{name}: cannot connect to {args.url}: {exc}", stop)
    reader = asyncio.create_task(client.read_until_closed())
    start = time.monotonic()
    period = 1 / args.rate
    ticks = 0
    try:
        while not stop.is_set() and not reader.done():
            await client.send_text(json.dumps(path.at(time.monotonic() - start)))
            ticks += 1
            delay = start + ticks * period - time.monotonic()
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, delay))
            except asyncio.TimeoutError:
                pass
    except OSError as exc:
        reader.cancel()
        return fail(f"{name}: the server closed the connection: {exc}", stop)
    if reader.done():
        client.writer.close()
        error = reader.exception()
        code, reason = client.closed_with or (None, str(error))
        return fail(f"{name}: the server closed the connection: {code} {reason}", stop)
    await client.close(reader)
    return 0


def fail(message: str, stop: asyncio.Event) -> int:
    print(message, file=sys.stderr)
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
    if urllib.parse.urlsplit(args.url).scheme not in ("ws", "wss"):
        parser.error(f"--url must start with ws:// or wss://, got {args.url}")
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
