"""A deliberately small WebSocket client on a raw socket, for malformed input.

It builds frames by hand (RFC 6455 section 5.2), independently of wsproto,
so that tests can send exactly the bytes they mean, broken ones included.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import struct
from dataclasses import dataclass
from typing import Any

from .conftest import TIMEOUT

KEY = "dGhlIHNhbXBsZSBub25jZQ=="

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def upgrade_request(
    path: str = "/?username=Alex",
    *,
    host: str = "127.0.0.1",
    key: str = KEY,
    extra: str = "",
    version: str = "13",
) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: {version}\r\n"
        f"{extra}"
        "\r\n"
    ).encode("latin-1")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame; ``length`` overrides the declared payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())


def parse_frame(buf: bytes) -> tuple[tuple[int, bool, bytes], bytes] | None:
    """``((opcode, fin, payload), rest)`` of the server frame that ``buf``
    starts with; None while it is incomplete. Server frames are never masked."""
    if len(buf) < 2:
        return None
    fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
    assert not buf[1] & 0x80, "server frames must not be masked"
    n, offset = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        (n,), offset = struct.unpack("!H", buf[2:4]), 4
    elif n == 127:
        if len(buf) < 10:
            return None
        (n,), offset = struct.unpack("!Q", buf[2:10]), 10
    if len(buf) < offset + n:
        return None
    return (opcode, fin, buf[offset : offset + n]), buf[offset + n :]


def parse_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """Every whole server frame in ``data``, in order."""
    frames = []
    while (parsed := parse_frame(data)) is not None:
        frame, data = parsed
        frames.append(frame)
    assert not data, f"an incomplete frame is left: {data!r}"
    return frames


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
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
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

    def read_frame(self) -> tuple[int, bool, bytes]:
        """``(opcode, fin, payload)`` of the next frame from the server."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            if not self._fill():
                raise ConnectionError("EOF while waiting for a frame")

    def _parse(self) -> tuple[int, bool, bytes] | None:
        parsed = parse_frame(self.buffer)
        if parsed is None:
            return None
        frame, self.buffer = parsed
        return frame

    def read_close(self) -> tuple[int, str]:
        """Skip to the server's close frame; return its code and reason."""
        while True:
            opcode, _, payload = self.read_frame()
            if opcode == OP_CLOSE:
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode("utf-8")

    def at_eof(self) -> bool:
        """Whether the server closes TCP once we have nothing more to say."""
        try:
            while self._fill():
                pass
        except (ConnectionResetError, TimeoutError):
            return False
        return True


def accept_value(key: str) -> str:
    import hashlib

    digest = hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
    return base64.b64encode(digest.digest()).decode()


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
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([head[0], head[1] | 0x80]) + head[2:] + key + masked


def client_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """``(opcode, fin, payload)`` of each whole frame in a client's bytes,
    unmasked, up to the first incomplete one: what a server reads."""
    frames = []
    while len(data) >= 2:
        if not data[1] & 0x80:  # Unmasked: read as a server frame is.
            parsed = parse_frame(data)
            if parsed is None:
                break
            frames.append(parsed[0])
            data = parsed[1]
            continue
        offset = 2 + {126: 2, 127: 8}.get(data[1] & 0x7F, 0)
        key = data[offset : offset + 4]
        parsed = parse_frame(
            bytes([data[0], data[1] & 0x7F]) + data[2:offset] + data[offset + 4 :]
        )
        if parsed is None or len(key) < 4:
            break
        (opcode, fin, payload), data = parsed
        frames.append(
            (opcode, fin, bytes(b ^ key[i % 4] for i, b in enumerate(payload)))
        )
    return frames
