"""WebSocket bytes built and read by hand (RFC 6455 sections 4.1 and 5.2).

The tests, the soak test and the benchmark all need to send exactly the
bytes they mean, broken ones included (a wrong length, a reserved bit, an
unmasked client frame), and to read the server's frames without a WebSocket
library in between. This module does that and nothing else: no sockets, no
I/O, only the standard library, independently of wsproto.

It lives in ``scripts/`` and the tests import it (through
``tests/rawws.py``, which adds a blocking socket client on top), rather than
the other way round, because the scripts are tools in their own right: the
benchmark and the soak test run where only wspractice and the ``bench``
dependency group are installed, without pytest or the test suite's fixtures.
A script run as ``python scripts/NAME.py`` finds this module beside it;
``tests/rawws.py`` puts ``scripts/`` on ``sys.path`` to import it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass

#: The Sec-WebSocket-Key of RFC 6455's example (section 1.3).
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def upgrade_request(
    path: str = "/?username=Alex",
    *,
    host: str = "127.0.0.1",
    key: str = KEY,
    extra: str = "",
    version: str = "13",
) -> bytes:
    """An opening handshake request; ``extra`` holds more header lines,
    each ending with CRLF."""
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


def accept_value(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer ``key`` with."""
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (masking and unmasking)."""
    if not data:
        return b""
    n = len(data)
    keys = (key * (n // 4 + 1))[:n]
    masked = int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")
    return masked.to_bytes(n, "big")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame, masked as a client's must be unless ``mask`` is False;
    ``length`` overrides the declared payload length."""
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
    return head + key + apply_mask(payload, key)


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())


@dataclass(frozen=True)
class Frame:
    opcode: int
    fin: bool
    payload: bytes
    #: The three reserved bits (RSV1 is set on compressed messages).
    rsv: int = 0
    masked: bool = False


def parse_frame(data: bytes) -> tuple[Frame, int] | None:
    """The first frame in ``data`` and the number of bytes it took, or None
    if ``data`` does not hold a whole frame yet. A masked frame is unmasked."""
    if len(data) < 2:
        return None
    masked = bool(data[1] & 0x80)
    n, offset = data[1] & 0x7F, 2
    if n == 126:
        if len(data) < 4:
            return None
        (n,), offset = struct.unpack("!H", data[2:4]), 4
    elif n == 127:
        if len(data) < 10:
            return None
        (n,), offset = struct.unpack("!Q", data[2:10]), 10
    key = b""
    if masked:
        key, offset = data[offset : offset + 4], offset + 4
    if len(data) < offset + n:
        return None
    payload = data[offset : offset + n]
    if masked:
        payload = apply_mask(payload, key)
    parsed = Frame(
        opcode=data[0] & 0x0F,
        fin=bool(data[0] & 0x80),
        payload=payload,
        rsv=(data[0] >> 4) & 0x7,
        masked=masked,
    )
    return parsed, offset + n


def close_code(payload: bytes) -> tuple[int | None, str]:
    """The code and reason of a close frame's payload (None: no code)."""
    if len(payload) < 2:
        return None, ""
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode("utf-8", "replace")


def response_status(head: bytes) -> int:
    """The status code of an HTTP response head (``HTTP/1.1 101 ...``)."""
    return int(head.split(b" ", 2)[1])


def parse_response_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names lower-cased) of a response head, without
    its final blank line."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers
