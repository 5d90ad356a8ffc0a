"""The server as a whole: shutdown, and a raw-bytes fuzz of a live server.

Shutdown closes every WebSocket with 1001, refuses handshakes in flight with
503, ends even with a reader that stalls, and leaves no thread behind.

The fuzz: hostile connections, built from a seeded random generator, hit a
real server (in this process) over real sockets: garbage instead of HTTP,
broken and truncated handshakes, oversized heads, random and truncated
frames, huge declared lengths, control frames between fragments, invalid
UTF-8, random close codes, bad JSON, resets. Meanwhile two ``websockets``
clients move at 20 Hz with a sequence number in their state.

What must hold:

* everything the server sends is well formed: an HTTP status line with a
  4xx/5xx or 101, then unmasked frames with legal opcodes, close codes the
  server may send (or the client's own, echoed) and UTF-8 reasons; on the
  presence app every text message is a JSON object;
* the server closes every connection whose client has gone (no hang), and
  drops idle ones at its deadlines;
* nothing is logged at ERROR (a traceback is a bug), and no thread dies of
  an exception;
* the well-behaved clients stay connected, every snapshot they get is valid,
  no update of theirs is lost and none goes backwards;
* once every hostile connection is closed, the server's threads and file
  descriptors (it runs in this process: ``threading.active_count()`` and
  ``/proc/self/fd``) are back to what they were, and no user is left over.

Size and seed: ``WSPRACTICE_FUZZ_CASES`` (default 150 connections per server
configuration) and ``WSPRACTICE_FUZZ_SEED`` (default: random, printed on
failure). ``WSPRACTICE_FUZZ_CASES=5000 pytest tests/test_server.py -k hostile -s``
runs a long fuzz and prints what the hostile clients saw.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .clients import (
    join,
    read_until_closed as read_ws_until_closed,
    recv_json,
    recv_until,
)
from .conftest import TIMEOUT, threads_left
from .rawws import (
    KEY,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    client_frames,
    parse_frame,
    read_until_closed,
    seeded_frame,
    upgrade_request,
)
from .strictjson import strict_json

CASES = int(os.environ.get("WSPRACTICE_FUZZ_CASES", "150"))
SEED = int(os.environ.get("WSPRACTICE_FUZZ_SEED", str(random.randrange(1 << 32))))
WORKERS = 4
MAX_MESSAGE_SIZE = 4096
MAX_HEADER_SIZE = 4096
#: Close codes the server itself sends (RFC 6455 section 7.4.1).
SERVER_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011}
#: Statuses the server may refuse a request with.
STATUSES = {400, 403, 404, 405, 414, 426, 431, 501, 503, 505}

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------ shutdown


def test_shutdown_closes_every_websocket_with_1001(start_server: Any) -> None:
    server = start_server()
    with join(server.url("/?username=Alex")) as alex, join(server.url("/echo")) as echo:
        recv_json(alex)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        for ws in (alex, echo):
            read_ws_until_closed(ws)
        assert (alex.close_code, alex.close_reason) == (1001, "server shutting down")
        assert (echo.close_code, echo.close_reason) == (1001, "server shutting down")
        stopper.join(TIMEOUT)
        assert not stopper.is_alive(), "Server.stop() did not return"


def test_shutdown_answers_handshakes_in_flight_with_503_and_leaves_no_thread(
    start_server: Any,
) -> None:
    before = set(threading.enumerate())
    server = start_server(handshake_timeout=5)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        partial = RawClient(server.port)
        request = upgrade_request("/?username=Late")
        partial.send(request[:-2])  # The head is not finished yet.
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        time.sleep(0.2)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        read_ws_until_closed(alex)
        assert alex.close_code == 1001
        try:
            partial.send(request[-2:])
            status = partial.read_response().status
        except OSError:
            status = None  # Cut before it finished: also a refusal.
        assert status in (503, None)
        stopper.join(3 * TIMEOUT)
        assert not stopper.is_alive(), "Server.stop() did not return"
        partial.close()
        idle.close()
    assert threads_left(before) == []


def test_shutdown_with_a_stalled_reader_still_ends_and_leaves_no_thread(
    start_server: Any,
) -> None:
    before = set(threading.enumerate())
    server = start_server(
        broadcast_interval=0,
        rate_limit=0,
        send_timeout=30,
        close_timeout=0.5,
        max_state_size=32768,
    )
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        stalled = RawClient(server.port)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.handshake("/?username=Stalled")  # ...and never reads again.
        recv_until(alex, lambda s: len(s) == 2)
        pad = "x" * 8000
        connection = next(
            c
            for c in server.server.websockets.clients
            if getattr(c.context, "username", None) == "Stalled"
        )
        deadline = time.monotonic() + 3 * TIMEOUT
        while not connection.protocol.pending_bytes:  # Until its buffers are full.
            assert time.monotonic() < deadline, "Stalled's buffers never filled"
            alex.send(f'{{"pad": "{pad}"}}')
            recv_json(alex)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        read_ws_until_closed(alex)
        assert alex.close_code == 1001
        stopper.join(3 * TIMEOUT)
        assert not stopper.is_alive(), "Server.stop() did not return"
        stalled.close()
    assert threads_left(before) == []


# ------------------------------------------------------------ the fuzz: inputs


def frame(
    rng: random.Random,
    opcode: int,
    payload: bytes,
    *,
    wide: bool = False,
    **options: Any,
) -> bytes:
    """A frame from rawws, reproducible from the seed; ``wide`` writes its
    length in more bytes than needed (which RFC 6455 forbids)."""
    length_bytes = rng.choice([2, 8]) if wide else None
    return seeded_frame(rng, opcode, payload, length_bytes=length_bytes, **options)


INVALID_UTF8 = [
    b"\xff",
    b"caf\xc3",  # cut in the middle of a character
    b"\xc0\xaf",  # overlong
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b'{"x": "\xfe"}',
]
HOSTILE_TEXT = [
    "hello",
    "",
    "[1, 2]",
    "null",
    '"text"',
    '{"x": NaN}',
    '{"x": -Infinity}',
    '{"x": 1e400}',  # bug 4: a number too large for a double
    '{"x": 1' + "0" * 5000 + "}",
    "[" * 3000,
    '{"a":' * 900 + "1" + "}" * 900,
    '{"s": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"a": 1, "a": 2}',
    "\ufeff{}",
    '{"x": 1}\x00',
    '{"label": "\u2028<script>\u202e"}',
    '{"x": 1',
]
CLOSE_CODES = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
    0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
    3000, 3999, 4000, 4999, 5000, 65535,
]  # fmt: skip


def payload(rng: random.Random, opcode: int) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return b""
    if kind == 1:
        return rng.randbytes(rng.randrange(1, 200))
    if kind == 2:
        return rng.choice(INVALID_UTF8)
    if kind == 3:
        return rng.choice(HOSTILE_TEXT).encode("utf-8", "surrogatepass")
    if kind == 4:
        return rng.randbytes(rng.choice([125, 126, MAX_MESSAGE_SIZE + 1, 3000]))
    if opcode in (OP_PING, OP_PONG):
        return rng.randbytes(rng.randrange(0, 126))
    return json.dumps({"x": rng.randrange(1000), "y": rng.random()}).encode()


def close_payload(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return b""
    if kind == 1:
        return b"\x03"  # one byte: not a code
    code = struct.pack("!H", rng.choice(CLOSE_CODES))
    if kind == 2:
        return code + rng.choice(INVALID_UTF8)
    if kind == 3:
        return code + b"r" * 124  # longer than a control frame allows
    return code + "bye é".encode()


def random_frames(rng: random.Random) -> bytes:
    """A sequence of frames: scripted trouble, or frames at random."""
    kind = rng.randrange(9)
    if kind == 0:  # a message in fragments with control frames between
        parts = [
            rng.randbytes(rng.randrange(0, 50)) for _ in range(rng.randrange(2, 6))
        ]
        out = frame(rng, rng.choice([OP_TEXT, OP_BINARY]), parts[0], fin=False)
        for part in parts[1:-1]:
            out += frame(rng, rng.choice([OP_PING, OP_PONG]), rng.randbytes(5))
            out += frame(rng, OP_CONT, part, fin=False)
        return out + frame(rng, OP_CONT, parts[-1], fin=rng.random() < 0.8)
    if kind == 1:  # a huge declared length
        n = rng.choice([1 << 63, (1 << 63) - 1, 1 << 40, 1 << 32, MAX_MESSAGE_SIZE + 1])
        opcode = rng.choice([OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
        return frame(rng, opcode, rng.randbytes(rng.randrange(0, 64)), length=n)
    if kind == 2:  # a frame cut short
        whole = frame(rng, OP_TEXT, rng.choice(HOSTILE_TEXT).encode("utf-8", "replace"))
        return whole[: rng.randrange(1, max(2, len(whole)))]
    if kind == 3:  # too many fragments
        out = frame(rng, OP_TEXT, b"", fin=False)
        return out + frame(rng, OP_CONT, b"", fin=False) * rng.randrange(200, 400)
    if kind == 4:  # a message over the limit, in pieces
        chunk = b"a" * 1000
        out = frame(rng, OP_TEXT, chunk, fin=False)
        return out + b"".join(frame(rng, OP_CONT, chunk, fin=False) for _ in range(5))
    if kind == 5:  # bad messages in a row
        return b"".join(
            frame(rng, OP_TEXT, rng.choice(HOSTILE_TEXT).encode("utf-8", "replace"))
            for _ in range(rng.randrange(1, 12))
        )
    if kind == 6:  # ping flood
        return frame(rng, OP_PING, b"p") * rng.randrange(10, 300)
    out = b""
    for _ in range(rng.randrange(1, 8)):
        opcode = rng.choice(
            [OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG]
            + [OP_TEXT] * 4
            + [3, 7, 11, 15]
        )
        body = close_payload(rng) if opcode == OP_CLOSE else payload(rng, opcode)
        out += frame(
            rng,
            opcode,
            body,
            fin=rng.random() < 0.85,
            rsv=rng.choice([0] * 12 + [1, 2, 4, 7]),
            mask=rng.random() < 0.95,
            wide=rng.random() < 0.1,
        )
    if kind == 8 and out:  # bytes flipped in flight
        data = bytearray(out)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        out = bytes(data)
    return out


def request(rng: random.Random, path: str, compression_offer: bool) -> bytes:
    extra = ""
    if compression_offer:
        extra += "Sec-WebSocket-Extensions: " + rng.choice(
            [
                "permessage-deflate",
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=9",
                "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; client_max_window_bits=8",
            ]
        )
        extra += "\r\n"
    if rng.random() < 0.2:
        extra += "Origin: http://localhost:3000\r\n"
    return upgrade_request(path, extra=extra)


def broken_request(rng: random.Random) -> bytes:
    """A request head that is garbage, damaged, oversized or refused."""
    kind = rng.randrange(10)
    good = request(rng, "/?username=Fuzz", rng.random() < 0.5)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 2000))
    if kind == 1:
        return good[: rng.randrange(len(good))]
    if kind == 2:
        data = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 3:
        return good.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"p" * 5000 + b"\r\n\r\n")
    if kind == 4:
        return good.replace(b"/?username=Fuzz", b"/?username=" + b"a" * 5000)
    if kind == 5:
        return good.replace(b"\r\n\r\n", b"\r\n" + b"X-A: b\r\n" * 120 + b"\r\n")
    if kind == 6:
        target = rng.choice(
            [
                b"/?username=",
                b"/?username=a%00b",
                b"/?username=%C3",
                b"/?username=a&username=b",
                b"/?username=%E7%8E%8B",
                b"/?username=" + "王".encode() * 3,
                b"/" + rng.randbytes(10).replace(b" ", b"_").replace(b"\n", b"_"),
                b"*",
                b"http://127.0.0.1/echo",
            ]
        )
        return good.replace(b"/?username=Fuzz", target, 1)
    if kind == 7:
        header = rng.choice(
            [
                (b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
                (b"Sec-WebSocket-Version: 13\r\n", b""),
                (b"Upgrade: websocket", b"Upgrade: h2c"),
                (b"Connection: Upgrade", b"Connection: close"),
                (b"Host: 127.0.0.1\r\n", b""),
                (b"Host: 127.0.0.1", b"Host: 127.0.0.1\r\nHost: b"),
                (KEY.encode(), b"short"),
                (
                    b"Host: 127.0.0.1",
                    b"Host: 127.0.0.1\r\nOrigin: https://evil.example",
                ),
                (b"HTTP/1.1", b"HTTP/1.0"),
                (b"HTTP/1.1", b"HTTP/2.0"),
                (b"GET ", b"POST "),
                (b"GET ", b"BREW "),
                (b"\r\n", b"\n"),
            ]
        )
        return good.replace(*header, 1)
    if kind == 8:
        return b"GET /\r\n\r\n"  # HTTP/0.9
    return good + good  # pipelined


# ------------------------------------------------------------ the oracle


def check_snapshot(text: str, problems: list[str], where: str) -> dict[str, Any]:
    """A presence message must be a JSON object: a snapshot or an error."""
    try:
        value = strict_json(text)
    except ValueError:
        problems.append(f"{where}: not JSON: {text[:200]!r}")
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: not an object: {text[:200]!r}")
        return {}
    if set(value) == {"error"}:
        if not isinstance(value["error"], str) or not value["error"]:
            problems.append(f"{where}: empty error reply")
        return value
    for key, user in value.items():
        if uuid.UUID(key).version != 4 or str(uuid.UUID(key)) != key:
            problems.append(f"{where}: key is not a uuid4: {key!r}")
        if not isinstance(user, dict) or set(user) != {"username", "state"}:
            problems.append(f"{where}: bad entry {user!r:.200}")
        elif not isinstance(user["username"], str) or not isinstance(
            user["state"], dict
        ):
            problems.append(f"{where}: bad entry {user!r:.200}")
    return value


@dataclass
class Seen:
    """What one hostile client saw, checked as it is parsed."""

    where: str
    presence: bool
    problems: list[str]
    close_codes_sent: set[int] = field(default_factory=set)
    outcome: str = "nothing"
    http09: bool = False
    deflate: bool = False

    def response(self, data: bytes) -> bytes | None:
        """Check the HTTP response; return what follows a 101, else None."""
        if not data:
            return None
        match = STATUS_LINE.match(data)
        if match is None and self.http09:
            # An HTTP/0.9 request ("GET /"): http.server answers as HTTP/0.9
            # did, with the body alone.
            self.outcome = "HTTP/0.9 body"
            return None
        if match is None:
            if not b"HTTP/1.1".startswith(data[:8]):
                self.problems.append(f"{self.where}: not HTTP/1.1: {data[:80]!r}")
            return None
        status = int(match.group(1))
        self.outcome = f"http {status}"
        head, _, rest = data.partition(b"\r\n\r\n")
        if status == 101:
            self.deflate = b"permessage-deflate" in head.lower()
            return rest
        if status == 200:  # A plain GET of the demo page or one of its files.
            return None
        if status not in STATUSES:
            self.problems.append(f"{self.where}: status {status}")
        elif b"\r\n\r\n" in data and b"text/plain; charset=utf-8" not in head:
            self.problems.append(f"{self.where}: {status} is not plain text")
        return None

    def frames(self, data: bytes) -> None:
        """Check every whole frame the server sent after its 101."""
        inflate = zlib.decompressobj(-15) if self.deflate else None
        closed = False
        self.outcome = "frames, no close"
        while len(data) >= 2:
            if data[1] & 0x80:
                self.problems.append(f"{self.where}: masked server frame")
                return
            rsv = (data[0] >> 4) & 7
            parsed = parse_frame(data)
            if parsed is None:
                return  # Cut by our own reset: nothing to judge.
            (opcode, fin, body), data = parsed
            if closed:
                self.problems.append(f"{self.where}: a frame after the close frame")
            if opcode not in (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
                self.problems.append(f"{self.where}: server opcode {opcode}")
            if not fin:
                self.problems.append(f"{self.where}: fragmented server message")
            if rsv and not (rsv == 4 and inflate and opcode in (OP_TEXT, OP_BINARY)):
                self.problems.append(f"{self.where}: rsv bits {rsv}")
            if rsv == 4 and inflate is not None:
                body = inflate.decompress(body + b"\x00\x00\xff\xff")
            if opcode == OP_CLOSE:
                closed = True
                self.close(body)
            elif opcode == OP_TEXT:
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    self.problems.append(f"{self.where}: text is not UTF-8")
                    continue
                if self.presence:
                    check_snapshot(text, self.problems, self.where)
            elif opcode == OP_BINARY and self.presence:
                self.problems.append(f"{self.where}: binary from the presence app")

    def close(self, body: bytes) -> None:
        if not body:
            self.outcome = "close (no code)"
            return
        if len(body) < 2:
            self.problems.append(f"{self.where}: 1-byte close payload")
            return
        (code,) = struct.unpack("!H", body[:2])
        self.outcome = f"close {code}"
        if code not in SERVER_CODES and code not in self.close_codes_sent:
            self.problems.append(f"{self.where}: close code {code}")
        try:
            reason = body[2:].decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(f"{self.where}: close reason is not UTF-8")
            return
        if code == 1011 and "internal server error" in reason:
            self.problems.append(f"{self.where}: 1011, a bug in the server")


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def run_case(number: int, port: int, compression: bool, problems: list[str]) -> str:
    """One hostile connection; returns what it saw, e.g. ``close 1002``."""
    rng = random.Random(SEED * 1_000_003 + number)
    where = f"case {number} (seed {SEED})"
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    kind = rng.randrange(10)
    presence = rng.random() < 0.7
    path = f"/?username=Fuzz{number}" if presence else "/echo"
    seen = Seen(where, presence, problems)
    if kind < 3:
        data = broken_request(rng)
        upgrade = False
        words = data.split(b"\n", 1)[0].split()
        seen.http09 = len(words) == 2 and words[0] == b"GET"
    else:
        head = request(rng, path, compression and rng.random() < 0.7)
        upgrade = True
        frames = b"".join(random_frames(rng) for _ in range(rng.randrange(1, 4)))
        data = head + frames
        # The server echoes the client's close code: know which were sent.
        seen.close_codes_sent.update(
            struct.unpack("!H", payload[:2])[0]
            for opcode, _, payload in client_frames(frames)
            if opcode == OP_CLOSE and len(payload) >= 2
        )
    ending = rng.choices(["half-close", "reset", "close"], [7, 2, 1])[0]
    try:
        split = rng.randrange(len(data) + 1) if rng.random() < 0.5 else len(data)
        sock.sendall(data[:split])
        if split < len(data):
            time.sleep(rng.random() * 0.01)
            sock.sendall(data[split:])
        if ending == "half-close":
            sock.shutdown(socket.SHUT_WR)
    except OSError as exc:  # The server may close first: it owes us nothing.
        sock.close()
        return f"send failed ({type(exc).__name__})"
    if ending == "reset":
        reset(sock)
        return "we reset"
    if ending == "close":
        sock.close()
        return "we closed"
    received, how = read_until_closed(sock, 3 * TIMEOUT)
    sock.close()
    if how == "timeout":
        problems.append(f"{where}: the server did not close after our EOF")
    rest = seen.response(received)
    if rest is not None:
        seen.frames(rest)
    elif upgrade and not received and how == "eof":
        seen.outcome = "no response"
    return seen.outcome if how == "eof" else f"{seen.outcome}, then reset"


# ------------------------------------------------------------ observers


class Walker:
    """A well-behaved client: moves at 20 Hz, checks every snapshot it gets."""

    def __init__(self, url: str, name: str, problems: list[str]) -> None:
        self.name = name
        self.exit = contextlib.ExitStack()
        self.ws: ClientConnection = self.exit.enter_context(
            join(url + f"/?username={name}")
        )
        self.problems = problems
        self.sent = 0
        #: Highest sequence number seen per walker, in this one's snapshots.
        self.seen: dict[str, int] = {}
        self.snapshots = 0
        self.users = 0
        self.stop = threading.Event()
        self.moving = threading.Event()
        self.moving.set()
        self.thread = threading.Thread(target=self.run, name=f"walker-{name}")
        self.thread.start()

    def run(self) -> None:
        next_move = time.monotonic()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if self.moving.is_set() and now >= next_move:
                    self.sent += 1
                    self.ws.send(json.dumps({"seq": self.sent, "x": self.sent % 800}))
                    next_move = now + 0.05
                try:
                    text = self.ws.recv(timeout=max(0.0, next_move - now))
                except TimeoutError:
                    continue
                assert isinstance(text, str)
                self.receive(text)
        except ConnectionClosed as exc:
            self.problems.append(f"walker {self.name} was disconnected: {exc}")

    def receive(self, text: str) -> None:
        where = f"walker {self.name}"
        snapshot = check_snapshot(text, self.problems, where)
        if "error" in snapshot:
            self.problems.append(f"{where} got an error: {snapshot['error']}")
            return
        self.snapshots += 1
        self.users = len(snapshot)
        for user in snapshot.values():
            name, state = user["username"], user["state"]
            if not name.startswith("walker-"):
                continue
            seq = state.get("seq", 0)
            if seq < self.seen.get(name, 0):
                self.problems.append(
                    f"{where}: {name} went back from {self.seen[name]} to {seq}"
                )
            self.seen[name] = max(seq, self.seen.get(name, 0))
        if self.name not in self.seen:
            self.problems.append(f"{where}: a snapshot without me")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(3 * TIMEOUT)
        self.exit.close()


# ------------------------------------------------------------ the fuzz


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate"])
def test_hostile_bytes_never_hurt_the_server_or_other_clients(
    start_server: Any, caplog: pytest.LogCaptureFixture, compression: bool
) -> None:
    caplog.set_level(logging.ERROR, logger="wspractice")
    thread_errors: list[str] = []
    previous_hook = threading.excepthook

    def hook(args: Any) -> None:
        thread_errors.append(
            f"{args.thread}: {args.exc_type.__name__}: {args.exc_value}"
        )
        previous_hook(args)

    running = start_server(
        compression=compression,
        max_message_size=MAX_MESSAGE_SIZE,
        max_header_size=MAX_HEADER_SIZE,
        max_bad_messages=5,
        handshake_timeout=1.0,
        close_timeout=0.5,
        send_timeout=1.0,
        ping_interval=0.5,
        ping_timeout=0.5,
    )
    server = running.server
    problems: list[str] = []
    base_url = f"ws://127.0.0.1:{running.port}"
    walkers = [Walker(base_url, f"walker-{n}", problems) for n in (1, 2)]
    deadline = time.monotonic() + 3 * TIMEOUT
    while not all(len(w.seen) == 2 for w in walkers):
        assert time.monotonic() < deadline, problems
        time.sleep(0.05)
    threads_before, fds_before = set(threading.enumerate()), fd_count()

    # Connections the server's deadlines must end: a head that never ends,
    # nothing at all, and a WebSocket that never answers a ping.
    address = ("127.0.0.1", running.port)
    idle = [socket.create_connection(address, timeout=TIMEOUT) for _ in range(3)]
    idle[0].sendall(b"GET /?username=Slow HTTP/1.1\r\nHost: x\r\n")
    idle[2].sendall(request(random.Random(0), "/echo", False))

    threading.excepthook = hook
    outcomes: Counter[str] = Counter()
    try:
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="fuzz") as pool:
            for outcome in pool.map(
                lambda n: run_case(n, running.port, compression, problems),
                range(CASES),
            ):
                outcomes[outcome] += 1

        for sock, expected in zip(idle, ["no response", "no response", "close 1011"]):
            received, how = read_until_closed(sock, 3 * TIMEOUT)
            sock.close()
            seen = Seen("idle", False, problems)
            rest = seen.response(received)
            if rest is not None:
                seen.frames(rest)
            outcome = seen.outcome if received else "no response"
            assert (
                how != "timeout"
            ), f"an idle connection was never dropped ({expected})"
            assert outcome == expected, (outcome, received[:200])

        # Every hostile connection is closed: the server is back to where it
        # was, with the two walkers.
        deadline = time.monotonic() + 3 * TIMEOUT
        while time.monotonic() < deadline and (
            len(server.connections) > 2
            or len(server.websockets.clients) > 2
            or any(t not in threads_before for t in threading.enumerate())
            or fd_count() > fds_before
        ):
            time.sleep(0.05)
        threads_after, fds_after = threads_left(threads_before), fd_count()
        users = len(server.presence.users)

        # The walkers stop, make one last move each, and must see both.
        for walker in walkers:
            walker.moving.clear()
        time.sleep(0.1)
        for walker in walkers:
            walker.sent += 1
            walker.ws.send(json.dumps({"seq": walker.sent, "x": 0}))
        finals = {w.name: w.sent for w in walkers}
        deadline = time.monotonic() + 3 * TIMEOUT
        while any(w.seen != finals for w in walkers) and time.monotonic() < deadline:
            time.sleep(0.05)
        lost = {
            (w.name, name): finals[name] - w.seen.get(name, 0)
            for w in walkers
            for name in finals
            if w.seen.get(name, 0) < finals[name]
        }
        last_users = [w.users for w in walkers]
        left = (len(server.connections), len(server.websockets.clients), users)
    finally:
        threading.excepthook = previous_hook
        for walker in walkers:
            walker.close()

    tracebacks = Counter()
    for record in caplog.records:
        exc = record.exc_info[1] if record.exc_info else None
        text = f"{record.getMessage()} {exc!r}"
        tracebacks[text[:300]] += 1
    summary = "\n".join(
        [f"seed {SEED}, {CASES} cases, compression={compression}"]
        + [f"  {n:5} {outcome}" for outcome, n in outcomes.most_common()]
        + [f"  logged: {n} x {what}" for what, n in tracebacks.items()]
        + [
            f"  walkers: {[w.snapshots for w in walkers]} snapshots,"
            f" sent {finals}, lost {lost}"
        ]
    )
    print(summary)
    assert not problems, "\n".join(problems[:30]) + "\n" + summary
    assert not thread_errors, thread_errors
    assert not tracebacks, summary
    assert not lost, summary
    assert last_users == [2, 2], summary
    assert left == (2, 2, 2), "connections, sessions and users left over"
    assert threads_after == [], "threads left over"
    assert fds_after == fds_before, sorted(os.listdir("/proc/self/fd"))
