"""The hostile clients: one kind of misbehaviour each, and what it may see.

Clients start at a steady rate (``--connect-rate``), each of a kind drawn
with the weights of ``HostileMix.KINDS``: normal presence and echo sessions,
abrupt resets (SO_LINGER 0), half-open ones (handshake, then silence),
stalled readers (a tiny SO_RCVBUF, never read), oversize messages, garbage
instead of HTTP, garbage frames, bad JSON, deeply nested JSON, binary
messages, invalid UTF-8, message floods, refused handshakes, slowloris
heads, bulky states (over ``--max-state-size``) and crowds from one address
(more connections than ``--max-connections-per-address``). Each returns what
it saw (a close code, an HTTP status, a reset) and ``EXPECTED`` says which
outcomes are right for its kind.

Every client comes from a source address of its own in 127.0.0.0/8 (Linux
routes all of it to loopback; :meth:`HostileMix.address`), and each crowd
from one address of its own: so the server's per-address limit refuses a
crowd beyond it, and nobody else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

import rawframes
from rawframes import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, frame
from rawframes import upgrade_request
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .watch import log
from .rawclient import Outcome, Raw


def loopback(network: int, n: int) -> str:
    """The n-th address of 127.NETWORK.0.0/16 (never .0 or .255 last)."""
    n %= 256 * 254
    return f"127.{network}.{n // 254}.{1 + n % 254}"


#: The second byte of each kind of client's source addresses.
HOSTILE_NET = 1
CROWD_NET = 2
WALKER_NET = 3


@dataclass
class HostileMix:
    port: int
    options: argparse.Namespace
    stop_at: float
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    open_raw: set[Raw] = field(default_factory=set)
    connections: int = 0
    rng: random.Random = field(default_factory=random.Random)
    #: Source addresses handed out: to single clients and to crowds.
    addresses: int = 0
    crowds: int = 0

    def record(self, kind: str, outcome: str) -> None:
        self.outcomes.setdefault(kind, Counter())[outcome] += 1

    def address(self) -> str:
        """A source address for one client, not used by any other for long."""
        self.addresses += 1
        return loopback(HOSTILE_NET, self.addresses)

    async def raw(self, rcvbuf: int | None = None, source: str | None = None) -> Raw:
        client = await Raw.open(self.port, rcvbuf, source or self.address())
        self.open_raw.add(client)
        return client

    def done(self, client: Raw) -> None:
        self.open_raw.discard(client)
        client.close()

    def name(self) -> str:
        self.connections += 1
        return f"soak{self.connections}"

    # Each kind returns what the client saw (or raises Outcome).

    async def normal(self) -> str:
        url = f"ws://127.0.0.1:{self.port}/?username={self.name()}"
        # It reads no snapshot but the first: an unbounded queue keeps the
        # others from pausing its reads, which would hide the close frame.
        async with connect(
            url,
            compression=None,
            open_timeout=30,
            max_queue=None,
            local_addr=(self.address(), 0),
        ) as ws:
            await ws.recv()
            for i in range(3):
                await ws.send(json.dumps({"x": i, "y": i}))
                await asyncio.sleep(0.05)
        return f"close {ws.close_code}"

    async def echo(self) -> str:
        url = f"ws://127.0.0.1:{self.port}/echo"
        async with connect(
            url, compression=None, open_timeout=30, local_addr=(self.address(), 0)
        ) as ws:
            for message in ("héllo", b"\x00\xff" * 100):
                await ws.send(message)
                if await ws.recv() != message:
                    return "echo mismatch"
        return f"close {ws.close_code}"

    async def reset(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            await client.send(frame(OP_TEXT, b'{"x": 1}'))
            await asyncio.sleep(self.rng.random() * 0.2)
        finally:
            self.open_raw.discard(client)
            client.reset()
        return "we reset"

    async def half_open(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            hold = self.rng.uniform(1, 14)
            try:
                seen = await asyncio.wait_for(client.until_close(False), hold)
            except asyncio.TimeoutError:
                return "silent until we left"
            return f"{seen} (no pong)"
        finally:
            self.done(client)

    async def stalled(self) -> str:
        """A presence client with a tiny receive buffer that stops reading.

        The snapshots the walkers cause fill its buffers, unless they are
        too few in the time it holds on (then it is "still open").
        """
        client = await self.raw(rcvbuf=2048)
        try:
            await client.handshake(f"/?username={self.name()}")
            return await self._stall(client)
        finally:
            self.done(client)

    async def stalled_echo(self) -> str:
        """An /echo client that sends and never reads what comes back."""
        client = await self.raw(rcvbuf=2048)
        try:
            await client.handshake("/echo")
            message = frame(OP_BINARY, b"s" * min(16384, self.options.max_message_size))
            for _ in range(2 * 1024 * 1024 // len(message)):
                client.writer.write(message)  # No drain: asyncio keeps it.
            return await self._stall(client)
        finally:
            self.done(client)

    async def _stall(self, client: Raw) -> str:
        transport = client.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        await asyncio.sleep(self.options.send_timeout + self.rng.uniform(2, 5))
        transport.resume_reading()
        try:
            how = await asyncio.wait_for(client.drain(), 5)
        except asyncio.TimeoutError:
            return "still open"
        return "reset by server" if how == "reset" else f"{how} from server"

    async def oversize(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            size = self.options.max_message_size + 1
            await client.send(frame(OP_TEXT, b'{"pad": "' + b"x" * size + b'"}'))
            return await client.until_close()
        finally:
            self.done(client)

    async def garbage_http(self) -> str:
        client = await self.raw()
        try:
            await client.send(self.rng.randbytes(self.rng.randrange(1, 3000)))
            client.writer.write_eof()
            try:
                return f"http {await client.response()}"
            except Outcome as outcome:
                return str(outcome)
        finally:
            self.done(client)

    async def garbage_frames(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(
                self.rng.choice(["/echo", f"/?username={self.name()}"])
            )
            await client.send(self.rng.randbytes(self.rng.randrange(2, 2000)))
            client.writer.write_eof()  # The server must not wait for more.
            return await client.until_close(answer_pings=False)
        finally:
            self.done(client)

    async def bad_json(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            bad = ["hello", "[1]", '{"x": NaN}', '{"x": 1', "[" * 5000, "null"]
            limit = self.options.max_bad_messages or 10
            for i in range(limit):
                await client.send(frame(OP_TEXT, bad[i % len(bad)].encode()))
            return await client.until_close()
        finally:
            self.done(client)

    async def binary(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            await client.send(frame(OP_BINARY, b"\x00\x01\x02"))
            return await client.until_close()
        finally:
            self.done(client)

    async def invalid_utf8(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            await client.send(frame(OP_TEXT, b'{"x": "caf\xc3"}'))
            return await client.until_close()
        finally:
            self.done(client)

    async def flood(self) -> str:
        """Far more messages than --rate-burst, in one write: a flood that
        stays over --rate-limit however slowly this script runs."""
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            count = max(2000, 4 * self.options.rate_burst)
            await client.send(
                b"".join(frame(OP_TEXT, b'{"flood": %d}' % i) for i in range(count))
            )
            return await asyncio.wait_for(client.until_close(), 30)
        except asyncio.TimeoutError:
            return "no close (rate limit off?)"
        finally:
            self.done(client)

    async def deep_json(self) -> str:
        client = await self.raw()
        try:
            await client.handshake(f"/?username={self.name()}")
            # Accepted (400 deep) or refused as too deep (5000), but never
            # over --max-message-size: that is another kind's test.
            fits = (self.options.max_message_size - 10) // 6
            depth = min(self.rng.choice([400, 5000]), fits)
            text = '{"a":' * depth + "1" + "}" * depth
            await client.send(frame(OP_TEXT, text.encode()))
            await client.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
            return await client.until_close()
        finally:
            self.done(client)

    async def refused(self) -> str:
        client = await self.raw()
        try:
            path, extra = self.rng.choice(
                [
                    ("/", ""),
                    ("/?username=", ""),
                    ("/?username=a%00b", ""),
                    ("/?username=" + "x" * 65, ""),
                    ("/?username=Eve", "Origin: https://evil.example\r\n"),
                ]
            )
            await client.send(upgrade_request(path, extra=extra))
            return f"http {await client.response()}"
        finally:
            self.done(client)

    async def slowloris(self) -> str:
        """A request head, one byte every 0.3 s: cut at the handshake deadline."""
        started = time.monotonic()  # The server's deadline starts later.
        client = await self.raw()
        outcome = "finished its head (not dropped)"
        try:
            for byte in upgrade_request(f"/?username={self.name()}"):
                await client.send(bytes([byte]))
                await asyncio.sleep(0.3)
                if client.reader.at_eof():
                    outcome = "dropped mid-head"
                    break
        except (ConnectionResetError, BrokenPipeError):
            outcome = "dropped mid-head"
        finally:
            self.done(client)
        if time.monotonic() - started < self.options.handshake_timeout / 2:
            outcome = "dropped too early"
        return outcome

    async def bulky(self, count: int | None = None) -> str:
        """``count`` states over --max-state-size (1, 3 or --max-bad-messages).

        Each gets an error reply and leaves the state as it was (no snapshot
        ever carries a bulky one); fewer than --max-bad-messages in a row
        leave the connection open (we close it, 1000), that many close it
        with 1008.
        """
        client = await self.raw()
        name = self.name()
        most = self.options.max_bad_messages
        if count is None:
            count = self.rng.choice([1, 3, most] if most else [1, 3])
        limit = self.options.max_state_size
        biggest = min(4 * limit, self.options.max_message_size - 64)
        if biggest <= limit:
            self.done(client)
            return "no bulky state fits in a message (--max-message-size)"
        try:
            await client.handshake(f"/?username={name}")
            await client.send(frame(OP_TEXT, b'{"x": 1}'))
            for _ in range(count):
                size = self.rng.randint(limit + 1, biggest)  # {"pad":"..."}
                state = b'{"pad":"' + b"x" * (size - 10) + b'"}'
                await client.send(frame(OP_TEXT, state))
            closes = bool(most) and count >= most
            if not closes:
                await client.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
            replies, shown, code = await self._bulky_replies(client, name)
        finally:
            self.done(client)
        if shown:
            return "a bulky state was broadcast"
        if not closes and replies == count and code == 1000:
            return "error replies, then our close 1000"
        if closes and replies == count - 1 and code == 1008:
            return "error replies, then 1008"
        return f"{replies} error replies to {count} bulky states, then close {code}"

    async def _bulky_replies(
        self, client: Raw, name: str
    ) -> tuple[int, bool, int | None]:
        """Read until the close: (error replies, whether a snapshot showed a
        bulky state of ours, the close code)."""
        replies = 0
        shown = False
        while True:
            got = await client.frame()
            if got.opcode == OP_PING:
                await client.send(frame(OP_PONG, got.payload))
            elif got.opcode == OP_CLOSE:
                code, _ = rawframes.close_code(got.payload)
                with contextlib.suppress(OSError, RuntimeError):
                    await client.send(frame(OP_CLOSE, got.payload[:2]))
                return replies, shown, code
            elif got.opcode == OP_TEXT:
                message = json.loads(got.payload)
                if set(message) == {"error"}:
                    replies += 1
                    continue
                for user in message.values():
                    state = user.get("state")
                    if user.get("username") == name and isinstance(state, dict):
                        shown = shown or "pad" in state

    async def crowd(self) -> str:
        """More connections from one address than --max-connections-per-address.

        The first ``limit`` are accepted and held open while the rest try:
        each of those gets 429 with Retry-After. Everyone else goes on (the
        walkers' and the other kinds' checks).
        """
        limit = self.options.max_connections_per_address
        size = (limit or 16) + 4
        self.crowds += 1
        source = loopback(CROWD_NET, self.crowds)
        held: list[Raw] = []
        seen: Counter[str] = Counter()
        try:
            for _ in range(size):
                client = await self.raw(source=source)
                held.append(client)
                request = rawframes.upgrade_request(f"/?username={self.name()}")
                await client.send(request)
                try:
                    status, headers = await client.response_head()
                except Outcome as outcome:
                    seen[str(outcome)] += 1
                    continue
                if status == 429 and "retry-after" not in headers:
                    seen["429 without Retry-After"] += 1
                else:
                    seen[str(status)] += 1
        finally:
            for client in held:
                self.done(client)
        if not limit and seen == {"101": size}:
            return "all accepted (no limit)"
        if limit and seen == {"101": limit, "429": size - limit}:
            return "accepted up to the limit, the rest 429"
        got = ", ".join(f"{status} x{n}" for status, n in sorted(seen.items()))
        return f"{got} (limit {limit})"

    KINDS: ClassVar[dict[str, float]] = {
        "normal": 12,
        "echo": 6,
        "reset": 10,
        "half_open": 4,
        "stalled": 2,
        "stalled_echo": 1,
        "oversize": 6,
        "garbage_http": 10,
        "garbage_frames": 10,
        "bad_json": 6,
        "binary": 6,
        "invalid_utf8": 6,
        "flood": 1,
        "deep_json": 4,
        "refused": 10,
        "slowloris": 3,
        "bulky": 6,
        "crowd": 2,
    }

    async def one(self, kind: str) -> None:
        method: Callable[[], Awaitable[str]] = getattr(self, kind)
        try:
            outcome = await asyncio.wait_for(method(), 60)
        except Outcome as exc:
            outcome = str(exc)
        except asyncio.TimeoutError:
            outcome = "timed out (60 s)"
        except asyncio.IncompleteReadError:
            outcome = "eof"
        except ConnectionResetError:
            outcome = "reset by server"
        except ConnectionClosed as exc:
            outcome = f"closed {exc.rcvd.code if exc.rcvd else 'abnormally'}"
        except OSError as exc:
            outcome = f"{type(exc).__name__}"
        except Exception as exc:  # A bug in this script: shown, and a failure.
            outcome = f"soak client error: {exc!r:.100}"
        self.record(kind, outcome)

    async def run(self, rate: float, inflight_cap: int, only: list[str]) -> None:
        """Start clients at ``rate`` a second, at most ``inflight_cap`` open,
        until ``stop_at``; then end those still running."""
        kinds = only or list(self.KINDS)
        weights = [self.KINDS[kind] for kind in kinds]
        tasks: set[asyncio.Task[None]] = set()
        next_start = time.monotonic()
        while time.monotonic() < self.stop_at:
            now = time.monotonic()
            if now < next_start or len(tasks) >= inflight_cap:
                await asyncio.sleep(max(0.001, min(next_start - now, 0.01)))
                continue
            next_start = max(next_start + 1 / rate, now - 1)
            kind = self.rng.choices(kinds, weights)[0]
            task = asyncio.create_task(self.one(kind))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        log(f"hostile clients stop; {len(tasks)} still running, closing them")
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in list(self.open_raw):
            client.reset()


#: What each kind of hostile client may see; anything else fails the soak.
EXPECTED: dict[str, set[str]] = {
    "normal": {"close 1000"},
    "echo": {"close 1000"},
    "reset": {"we reset"},
    "half_open": {"silent until we left", "close 1011 (no pong)"},
    "stalled": {"reset by server", "eof from server", "still open"},
    "stalled_echo": {"reset by server", "eof from server"},
    "oversize": {"close 1009"},
    "garbage_http": {"http 400", "http 414", "http 431", "http 501", "http 505",
                     "no response", "cut response", "reset by server", "eof"},
    "garbage_frames": {"close 1002", "close 1007", "close 1008", "close 1009",
                       "close 1003", "close 1000", "close None", "eof",
                       "reset by server"},
    "bad_json": {"close 1008"},
    "binary": {"close 1003"},
    "invalid_utf8": {"close 1007"},
    "flood": {"close 1008"},
    "deep_json": {"close 1000"},
    "refused": {"http 400", "http 403"},
    "slowloris": {"dropped mid-head"},
    "bulky": {"error replies, then our close 1000", "error replies, then 1008"},
    "crowd": {"accepted up to the limit, the rest 429", "all accepted (no limit)"},
}  # fmt: skip


#: A client that the server closes must answer within --close-timeout, or
#: the server resets the connection, and a reset discards what the client
#: had not read yet, the close frame included. On a busy machine this
#: script can be that slow, so for these kinds a reset is no failure.
SERVER_CLOSES = {
    "oversize",
    "garbage_frames",
    "bad_json",
    "binary",
    "invalid_utf8",
    "flood",
    "deep_json",
    "bulky",
}


def expected(kind: str, outcome: str) -> bool:
    if kind in SERVER_CLOSES and outcome == "reset by server":
        return True
    return outcome in EXPECTED.get(kind, set())
