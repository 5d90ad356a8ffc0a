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

import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from . import __version__, assets, trace
from .errors import HandshakeError
from .handshake import accept, check_upgrade, is_websocket_request
from .session import RECV_SIZE

if TYPE_CHECKING:
    from .server import WebSocketServer

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("wspractice.access")

_NOT_FOUND = (
    "Not found. This is a WebSocket server: connect a WebSocket client to"
    " ws://HOST:PORT/?username=NAME, or to ws://HOST:PORT/echo."
)


class RequestHandler(BaseHTTPRequestHandler):
    """Serves one TCP connection: HTTP requests, or one WebSocket."""

    server: WebSocketServer
    protocol_version = "HTTP/1.1"
    server_version = f"wspractice/{__version__}"

    def version_string(self) -> str:
        return self.server_version

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
        if self.server.shutting_down:
            self.reject(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the server is shutting down",
                (("Retry-After", "5"),),
            )
            return
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
        )

    def _take_buffered_bytes(self) -> bytes:
        """What the client sent after its handshake, already in ``rfile``.

        http.server reads the request through a buffered file, which may
        hold the first frames too if they came in the same packet. Reading
        it once without blocking hands them over to wsproto; the socket is
        read directly from then on.
        """
        sock: socket.socket = self.connection
        sock.setblocking(False)
        try:
            data = self.rfile.read1(RECV_SIZE) or b""
        except OSError:
            data = b""
        finally:
            sock.setblocking(True)
        return data

    # ---------------------------------------------------------- logging

    def log_message(self, format: str, *args: object) -> None:
        """http.server's access log, through :mod:`logging`."""
        access_logger.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: object) -> None:
        logger.warning("%s %s", self.address_string(), format % args)
