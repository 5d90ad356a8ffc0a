"""A one-connection WebSocket server on a raw socket, for testing clients.

The test drives it step by step and it sends exactly the bytes the test
gives, broken ones included: a frame in the same packet as the 101, reserved
bits, a masked frame, no answer to a close. Frames are built by hand
(:func:`tests.rawws.frame` with ``mask=False``) and the client's frames are
parsed here, independently of wsproto.
"""

from __future__ import annotations

import socket
import ssl
import struct

from .conftest import TIMEOUT
from .rawws import OP_CLOSE, accept_value, frame

import rawframes  # noqa: E402 (on sys.path through tests.rawws)


def server_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0
) -> bytes:
    """A frame as a server sends it: unmasked."""
    return frame(opcode, payload, fin=fin, rsv=rsv, mask=False)


def server_close(code: int, reason: str = "") -> bytes:
    return server_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())


class RawServer:
    """Listens on a free loopback port; :meth:`accept` takes one client."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.buffer = b""
        self.headers: dict[str, str] = {}
        self.request_line = ""

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ handshake

    def accept(self, tls: ssl.SSLContext | None = None) -> dict[str, str]:
        """Take the client's connection and read its upgrade request."""
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(TIMEOUT)
        if tls is not None:
            self.conn = tls.wrap_socket(self.conn, server_side=True)
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"EOF before a full request: {self.buffer!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.request_line = lines[0]
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        return self.headers

    def switching_protocols(self, extra: str = "") -> bytes:
        """The 101 response to the request :meth:`accept` read."""
        key = self.headers["sec-websocket-key"]
        return (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_value(key)}\r\n"
            f"{extra}"
            "\r\n"
        ).encode("latin-1")

    # ------------------------------------------------------------ I/O

    def send(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(data)

    def _fill(self) -> bool:
        assert self.conn is not None
        data = self.conn.recv(65536)
        self.buffer += data
        return bool(data)

    def read_frame(self) -> tuple[int, bool, bytes]:
        """``(opcode, fin, payload)`` of the client's next frame, unmasked."""
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            if not self._fill():
                raise ConnectionError(f"EOF while waiting for a frame: {self.buffer!r}")

    def _parse(self) -> tuple[int, bool, bytes] | None:
        parsed = rawframes.parse_frame(self.buffer)
        if parsed is None:
            return None
        got, used = parsed
        assert got.rsv == 0, f"reserved bits set by the client: {self.buffer[:2]!r}"
        assert got.masked, "client frames must be masked"
        self.buffer = self.buffer[used:]
        return got.opcode, got.fin, got.payload

    def read_close(self) -> tuple[int, str]:
        """The client's next frame, which must be a close frame: code, reason."""
        opcode, fin, payload = self.read_frame()
        assert (opcode, fin) == (OP_CLOSE, True), (opcode, fin, payload)
        (code,) = struct.unpack("!H", payload[:2])
        return code, payload[2:].decode("utf-8")

    def at_eof(self) -> bool:
        """Whether the client closes TCP (within TIMEOUT), dropping the rest."""
        try:
            while self._fill():
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True
