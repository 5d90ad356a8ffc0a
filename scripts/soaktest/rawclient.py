"""One hostile connection over asyncio streams, speaking raw bytes.

The bytes come from ``scripts/rawframes.py``, shared with the tests and the
benchmark; this module only moves them over a socket and says what the
server did: an HTTP status, a close code, an end of file or a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct

import rawframes
from rawframes import OP_CLOSE, OP_PING, OP_PONG, frame


class Outcome(Exception):
    """What a hostile client saw; ends its run."""


class Raw:
    """One raw connection: send bytes, read a response, frames, the end."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = b""

    @classmethod
    async def open(
        cls, port: int, rcvbuf: int | None = None, source: str | None = None
    ) -> Raw:
        """Connect to the server on 127.0.0.1 from ``source`` (an address of
        127.0.0.0/8, all of which Linux routes to loopback) if given."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            if source is not None:
                sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> int:
        """Read an HTTP response; its status (its body is skipped)."""
        status, _ = await self.response_head()
        return status

    async def response_head(self) -> tuple[int, dict[str, str]]:
        """Read an HTTP response; its status and headers (lower-case names;
        its body is skipped)."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise Outcome("no response" if not exc.partial else "cut response")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length:
            await self.reader.readexactly(int(length.group(1)))
        return rawframes.parse_response_head(head)

    async def handshake(self, path: str, extra: str = "") -> None:
        await self.send(rawframes.upgrade_request(path, extra=extra))
        status = await self.response()
        if status != 101:
            raise Outcome(f"http {status}")

    async def frame(self) -> rawframes.Frame:
        """The server's next frame (IncompleteReadError at end of file)."""
        while True:
            parsed = rawframes.parse_frame(self.buffer)
            if parsed is not None:
                got, used = parsed
                self.buffer = self.buffer[used:]
                return got
            data = await self.reader.read(65536)
            if not data:
                raise asyncio.IncompleteReadError(self.buffer, None)
            self.buffer += data

    async def until_close(self, answer_pings: bool = True) -> str:
        """Read frames until the server's close; what it was."""
        while True:
            got = await self.frame()
            if got.opcode == OP_PING and answer_pings:
                await self.send(frame(OP_PONG, got.payload))
            if got.opcode == OP_CLOSE:
                code, reason = rawframes.close_code(got.payload)
                if code == 1011 and "internal" in reason:
                    return "close 1011 (internal error)"
                with contextlib.suppress(OSError, RuntimeError):
                    await self.send(frame(OP_CLOSE, got.payload[:2]))  # Polite.
                return f"close {code}"

    async def drain(self) -> str:
        """Read until the server closes TCP: ``eof`` or ``reset``."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionResetError:
            return "reset"
        return "eof"

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), not a FIN."""
        sock = self.writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()
