"""The HTTP request handler: where an HTTP request becomes a WebSocket.

In the Node tutorial, ``new WebSocketServer({ server })`` listens for the
HTTP server's ``upgrade`` event. Here the request handler does the same job:
:meth:`RequestHandler.do_GET` recognises an upgrade request, checks it with
:mod:`wspractice.handshake`, answers ``101 Switching Protocols`` and then runs
the connection's :class:`~wspractice.session.Session` in this same thread,
the one :class:`~socketserver.ThreadingMixIn` started for the request.
Everything else is plain HTTP.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, cast

from . import __version__, assets, trace
from .errors import HandshakeError
from .handshake import accept, check_upgrade, is_websocket_request
from .session import RECV_SIZE
from .tls import TLSFile, TLSLayer

if TYPE_CHECKING:
    from .server import WebSocketServer

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("wspractice.access")

_NOT_FOUND = (
    "Not found. This is a WebSocket server: connect a WebSocket client to"
    " ws://HOST:PORT/?username=NAME, or to ws://HOST:PORT/echo."
)


class HeadTooLarge(Exception):
    """The request head is over ``max_header_size``."""


class _HeadReader:
    """``rfile`` while http.server reads the headers: counts every byte."""

    def __init__(self, rfile: io.BufferedIOBase, budget: int) -> None:
        self._rfile = rfile
        self._budget = budget

    def readline(self, limit: int = -1) -> bytes:
        if limit < 0 or limit > self._budget + 1:
            limit = self._budget + 1
        line = self._rfile.readline(limit)
        self._budget -= len(line)
        if self._budget < 0:
            raise HeadTooLarge
        return line


class _HeadDeadline:
    """The deadline for the request head being read on one connection.

    The writer thread checks it on its tick while it is armed (see
    :meth:`Writer.watch_deadline`) and forgets it once it is cancelled, so
    nothing of the connection is kept after its head has arrived.
    """

    __slots__ = ("_sock", "_peer", "number", "deadline", "_timeout", "__weakref__")

    def __init__(self, sock: socket.socket, peer: object) -> None:
        self._sock = sock
        self._peer = peer
        #: How many heads have been awaited on this connection.
        self.number = 0
        #: Monotonic time by which the head must be in; None when not armed.
        self.deadline: float | None = None
        self._timeout = 0.0

    def arm(self, timeout: float) -> None:
        """Start waiting for the next head."""
        self.number += 1
        self._timeout = timeout
        self.deadline = time.monotonic() + timeout

    def cancel(self) -> None:
        self.deadline = None

    def expire(self) -> None:
        """The deadline passed (writer thread): drop the connection."""
        self.deadline = None
        logger.info(
            "%s: no complete request within %g s; dropping it",
            self._peer,
            self._timeout,
        )
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class RequestHandler(BaseHTTPRequestHandler):
    """Serves one TCP connection: HTTP requests, or one WebSocket."""

    server: WebSocketServer
    raw_requestline: bytes
    protocol_version = "HTTP/1.1"
    server_version = f"wspractice/{__version__}"
    #: TLS for this connection when the server serves wss:// and https://.
    tls: TLSLayer | None = None
    _head_deadline: _HeadDeadline

    def version_string(self) -> str:
        return self.server_version

    # ---------------------------------------------------------- connection

    def setup(self) -> None:
        """Arm the handshake deadline, then set up TLS and the files."""
        self._head_deadline = _HeadDeadline(self.request, self.client_address[0])
        self._arm_head_deadline()
        super().setup()
        self.connection.settimeout(self.server.options.handshake_timeout)
        context = self.server.tls_context
        if context is not None:
            self.tls = TLSLayer(context)
            try:
                self.tls.handshake(self.connection)
            except BaseException:
                self._head_deadline.cancel()
                self.rfile.close()  # Or it would keep the socket open.
                raise
            self.rfile = io.BufferedReader(TLSFile(self.connection, self.tls))
            self.wfile = cast(io.BufferedIOBase, TLSFile(self.connection, self.tls))

    def finish(self) -> None:
        self._head_deadline.cancel()
        super().finish()

    def handle_one_request(self) -> None:
        if self._head_deadline.number:  # The first was armed in setup().
            self._arm_head_deadline()
        super().handle_one_request()

    def _arm_head_deadline(self) -> None:
        """Drop the connection unless a whole request head arrives in time.

        A socket timeout alone would let a client send a byte every few
        seconds forever; this is a deadline for the whole head.
        """
        self._head_deadline.arm(self.server.options.handshake_timeout)
        self.server.writer.watch_deadline(self._head_deadline)

    def parse_request(self) -> bool:
        """http.server's parsing, with a cap on the size of the whole head."""
        limit = self.server.options.max_header_size
        if len(self.raw_requestline) > limit:
            self.command, self.requestline = "", ""
            self.request_version = "HTTP/1.1"
            self.reject(
                HTTPStatus.REQUEST_URI_TOO_LONG,
                f"the request line is longer than {limit} bytes",
            )
            return False
        rfile = self.rfile
        budget = limit - len(self.raw_requestline)
        self.rfile = cast(io.BufferedIOBase, _HeadReader(rfile, budget))
        try:
            parsed = super().parse_request()
        except HeadTooLarge:
            parsed = False
            self.rfile = rfile
            self.reject(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"the request line and headers are larger than {limit} bytes",
            )
        finally:
            self.rfile = rfile
        self._head_deadline.cancel()
        return parsed

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """http.server's own errors, as plain text like every other refusal."""
        status = HTTPStatus(code)
        reason = message or status.phrase
        logger.warning("%s: %d %s", self.address_string(), code, reason)
        if self.request_version == "HTTP/0.9":
            # The request line was unreadable, so http.server assumed HTTP/0.9,
            # whose responses have no status line. Answer in HTTP/1.1.
            self.request_version = "HTTP/1.1"
        self.reject(status, reason)

    # ---------------------------------------------------------- plain HTTP

    def do_GET(self) -> None:
        headers = self.headers.items()
        if is_websocket_request(headers):
            self.handle_upgrade(headers)
        else:
            self.serve_asset()

    def do_HEAD(self) -> None:
        self.serve_asset()

    def serve_asset(self) -> None:
        """The demo page at ``/`` and its files under ``/static/``; else 404."""
        asset = assets.find(self.path)
        if asset is None:
            self.reject(HTTPStatus.NOT_FOUND, _NOT_FOUND)
            return
        self.send_response(HTTPStatus.OK)
        for name, value in assets.headers(asset):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(asset.body)

    def method_not_allowed(self) -> None:
        self.reject(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"method {self.command} is not allowed; use GET",
            (("Allow", "GET, HEAD"),),
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = method_not_allowed
    do_OPTIONS = do_TRACE = do_CONNECT = method_not_allowed

    def reject(
        self,
        status: HTTPStatus,
        reason: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer with ``status`` and ``reason`` as a plain-text body."""
        body = (reason + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # ---------------------------------------------------------- WebSocket

    def handle_upgrade(self, headers: list[tuple[str, str]]) -> None:
        """``wsServer.on("connection")``: accept the WebSocket, then run it."""
        options = self.server.options
        tracer = None
        if options.trace:
            host, port = self.client_address[:2]
            tracer = trace.ConnectionTracer(
                f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            )
            tracer.request(self.requestline, headers)
        try:
            upgrade = check_upgrade(
                self.request_version, self.path, headers, options.allowed_origins
            )
        except HandshakeError as exc:
            logger.warning(
                "rejected handshake from %s for %r: %d %s",
                self.address_string(),
                self.path,
                exc.status,
                exc.reason,
            )
            self.reject(exc.status, exc.reason, exc.headers)
            return
        refusal = self.server.admit()
        if refusal is not None:
            logger.warning(
                "refused a WebSocket from %s: %s", self.address_string(), refusal
            )
            self.reject(
                HTTPStatus.SERVICE_UNAVAILABLE, refusal, (("Retry-After", "5"),)
            )
            return
        try:
            response_headers, extensions = accept(upgrade, options.compression)
            self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
            for name, value in response_headers:
                self.send_header(name, value)
            if tracer is not None:
                # What end_headers() is about to write (http.server's buffer).
                head = b"".join(getattr(self, "_headers_buffer", [])) + b"\r\n"
                tracer.accepted(upgrade.key, head, compressed=bool(extensions))
            self.end_headers()
            self.close_connection = True
            trailing = self._take_buffered_bytes()
            if tracer is not None:
                if trailing:
                    tracer.received(trailing)
                trace.attach(self.connection, tracer)
            self.server.run_session(
                self.connection,
                upgrade,
                extensions,
                trailing,
                peer=self.address_string(),
                tls=self.tls,
            )
        finally:
            self.server.release()

    def _take_buffered_bytes(self) -> bytes:
        """What the client sent after its handshake, already in ``rfile``.

        http.server reads the request through a buffered file, which may
        hold the first frames too if they came in the same packet. Reading
        it once without blocking hands them over to wsproto; the socket is
        read directly from then on.
        """
        sock: socket.socket = self.connection
        sock.setblocking(False)
        chunks = []
        try:
            while chunk := self.rfile.read1(RECV_SIZE):
                chunks.append(chunk)
        except OSError:
            pass
        finally:
            sock.setblocking(True)
        self.rfile.close()  # Frees its buffer for the life of the connection.
        return b"".join(chunks)

    # ---------------------------------------------------------- logging

    def log_message(self, format: str, *args: object) -> None:
        """http.server's access log, through :mod:`logging`."""
        access_logger.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: object) -> None:
        logger.warning("%s %s", self.address_string(), format % args)
