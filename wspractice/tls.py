"""TLS for ``wss://`` and ``https://``, as a layer the connection drives.

:class:`TLSLayer` wraps :class:`ssl.SSLObject` over two memory BIOs: raw
bytes from the socket go in, plaintext comes out, and the other way round.
It never touches the socket itself (except :meth:`TLSLayer.handshake`), so
the connection keeps its own rules: writes never block, and every call on the
TLS object happens under the connection's lock, as every wsproto call does.
An ``ssl.SSLSocket`` could not give that: it is not safe to read and write
one from two threads, and its writes may block.

:class:`TLSFile` lets :mod:`http.server` read the request and write the
response through the layer before the upgrade.
"""

from __future__ import annotations

import io
import socket
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

READ_SIZE = 16 * 1024


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server context with Python's secure defaults (TLS 1.2 or newer)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    # No TLS 1.3 session tickets. They arrive after the handshake, while a
    # client may already be sending its request; Python clients that read and
    # write one ssl.SSLSocket from two threads (websockets' sync client does)
    # then sometimes never send it. Without resumption, a reconnecting
    # client pays one full handshake, about a millisecond of CPU.
    context.num_tickets = 0
    return context


class TLSLayer:
    """One connection's TLS state, with no I/O of its own."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        #: The client ended TLS (close_notify, or EOF).
        self.closed = False

    def handshake(self, sock: socket.socket) -> None:
        """Run the TLS handshake over ``sock`` (blocking, with its timeout)."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send(sock)
                data = sock.recv(READ_SIZE)
                if not data:
                    raise ConnectionError("the client closed during the TLS handshake")
                self._incoming.write(data)
        self._send(sock)

    def _send(self, sock: socket.socket) -> None:
        data = self._outgoing.read()
        if data:
            sock.sendall(data)

    def feed(self, data: bytes) -> bytes:
        """Decrypt: raw bytes in (``b""`` at EOF), the plaintext now readable out.

        The plaintext may be empty while a record is incomplete. Afterwards
        :attr:`closed` says whether the client has ended TLS.
        """
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        return self.read_buffered()

    def read_buffered(self) -> bytes:
        """The plaintext of the records already received, without new bytes.

        The client's first request often arrives in the same packet as the
        end of its handshake, so it waits here, not in the socket.
        """
        chunks = []
        while True:
            try:
                chunk = self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def encrypt(self, data: ReadableBuffer) -> bytes:
        """Encrypt plaintext; returns the records to send, in order."""
        self._tls.write(data)
        return self._outgoing.read()

    def outgoing(self) -> bytes:
        """Records TLS wants to send on its own (e.g. after reading a key update)."""
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        """The close_notify alert that ends TLS cleanly."""
        try:
            self._tls.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        return self._outgoing.read()


class TLSFile(io.RawIOBase):
    """A file over a TLS connection, for http.server's ``rfile`` and ``wfile``.

    Reads return ``None`` when a non-blocking socket has nothing, like
    :class:`socket.SocketIO`.
    """

    def __init__(self, sock: socket.socket, layer: TLSLayer) -> None:
        super().__init__()
        self._sock = sock
        self._layer = layer
        self._plain = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int | None:
        view = memoryview(buffer).cast("B")
        if not self._plain:
            self._plain = self._layer.read_buffered()
        while not self._plain:
            if self._eof:
                return 0
            try:
                data = self._sock.recv(READ_SIZE)
            except BlockingIOError:
                return None
            self._plain = self._layer.feed(data)
            pending = self._layer.outgoing()
            if pending:
                self._sock.sendall(pending)
            self._eof = not data or self._layer.closed
        size = min(len(view), len(self._plain))
        view[:size] = self._plain[:size]
        self._plain = self._plain[size:]
        return size

    def write(self, data: ReadableBuffer) -> int:
        size = memoryview(data).nbytes
        self._sock.sendall(self._layer.encrypt(data))
        return size
