"""A deliberately small WebSocket client on a raw socket, for malformed input.

The bytes come from ``scripts/rawframes.py`` (frames built by hand after RFC
6455 section 5.2, independently of wsproto), which the soak test and the
benchmark use too; this module adds a blocking socket client on top, so that
tests can send exactly the bytes they mean, broken ones included. See
rawframes' docstring for why the shared module lives in ``scripts/``.
"""

from __future__ import annotations

import random
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conftest import TIMEOUT

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import rawframes  # noqa: E402
from rawframes import (  # noqa: E402
    KEY,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    accept_value,
    close_code,
    close_frame,
    frame,
    parse_response_head,
    upgrade_request,
)

__all__ = [
    "KEY",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "HTTPResponse",
    "RawClient",
    "accept_value",
    "client_frames",
    "close_frame",
    "frame",
    "parse_frame",
    "parse_frames",
    "parse_response_head",
    "read_until_closed",
    "seeded_frame",
    "upgrade_request",
]

#: A server frame as the tests compare it: (opcode, fin, payload).
ServerFrame = tuple[int, bool, bytes]


def parse_frame(buf: bytes) -> tuple[ServerFrame, bytes] | None:
    """``((opcode, fin, payload), rest)`` of the server frame that ``buf``
    starts with; None while it is incomplete. Server frames are never masked."""
    parsed = rawframes.parse_frame(buf)
    if parsed is None:
        return None
    got, used = parsed
    assert not got.masked, "server frames must not be masked"
    return (got.opcode, got.fin, got.payload), buf[used:]


def parse_frames(data: bytes) -> list[ServerFrame]:
    """Every whole server frame in ``data``, in order."""
    frames = []
    while (parsed := parse_frame(data)) is not None:
        got, data = parsed
        frames.append(got)
    assert not data, f"an incomplete frame is left: {data!r}"
    return frames


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class RawClient:
    """A socket that has (usually) completed the opening handshake."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buffer = b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def read_response(self) -> HTTPResponse:
        """Read an HTTP response head (and its body, if Content-Length says)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"EOF before a full response: {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status, headers = parse_response_head(head)
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                break
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return HTTPResponse(status, headers, body)

    def handshake(self, path: str = "/?username=Alex", **kwargs: str) -> HTTPResponse:
        self.send(upgrade_request(path, **kwargs))
        response = self.read_response()
        assert response.status == 101, response
        return response

    def read_frame(self) -> ServerFrame:
        """``(opcode, fin, payload)`` of the next frame from the server."""
        while True:
            parsed = parse_frame(self.buffer)
            if parsed is not None:
                got, self.buffer = parsed
                return got
            if not self._fill():
                raise ConnectionError("EOF while waiting for a frame")

    def read_close(self) -> tuple[int | None, str]:
        """Skip to the server's close frame; its code (None if it has none)
        and reason."""
        while True:
            opcode, _, payload = self.read_frame()
            if opcode == OP_CLOSE:
                return close_code(payload)

    def at_eof(self) -> bool:
        """Whether the server closes TCP once we have nothing more to say."""
        try:
            while self._fill():
                pass
        except (ConnectionResetError, TimeoutError):
            return False
        return True


# ------------------------------------------------------------ more helpers


def read_until_closed(
    sock: socket.socket, timeout: float = TIMEOUT
) -> tuple[bytes, str]:
    """Everything the server sends until it closes, and how it closed:
    ``"eof"``, ``"reset"``, or ``"timeout"`` when it was still open after
    ``timeout`` seconds of silence."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks), "eof"
    except ConnectionResetError:
        return b"".join(chunks), "reset"
    except TimeoutError:
        return b"".join(chunks), "timeout"


def seeded_frame(
    rng: random.Random,
    opcode: int,
    payload: bytes = b"",
    *,
    mask: bool = True,
    length_bytes: int | None = None,
    **options: Any,
) -> bytes:
    """:func:`frame` with its masking key drawn from ``rng``, so that a fuzz
    replays from its seed. ``length_bytes`` (2 or 8) writes the declared
    length in that many bytes when they can hold it, even where RFC 6455
    asks for a shorter form."""
    data = frame(opcode, payload, mask=False, **options)
    head = data[: len(data) - len(payload)]
    if length_bytes is not None:
        n = head[1] if head[1] < 126 else int.from_bytes(head[2:], "big")
        if n < 1 << (8 * length_bytes):
            marker = 126 if length_bytes == 2 else 127
            head = bytes([head[0], marker]) + n.to_bytes(length_bytes, "big")
    if not mask:
        return head + payload
    key = rng.randbytes(4)
    masked = head[1] | 0x80
    return (
        bytes([head[0], masked]) + head[2:] + key + rawframes.apply_mask(payload, key)
    )


def client_frames(data: bytes) -> list[ServerFrame]:
    """``(opcode, fin, payload)`` of each whole frame in a client's bytes,
    unmasked, up to the first incomplete one: what a server reads."""
    frames = []
    while (parsed := rawframes.parse_frame(data)) is not None:
        got, used = parsed
        frames.append((got.opcode, got.fin, got.payload))
        data = data[used:]
    return frames
