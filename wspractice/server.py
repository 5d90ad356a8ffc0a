"""The server: :class:`http.server.ThreadingHTTPServer` with WebSockets on top.

The Node tutorial's ``http.createServer()`` followed by
``new WebSocketServer({ server })``. One thread per TCP connection (from
:class:`~socketserver.ThreadingMixIn`) reads HTTP requests; a request that
upgrades to a WebSocket keeps its thread for the life of the connection.
One more thread, the :class:`~wspractice.writer.Writer`, finishes writes
that sockets could not take at once.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

from wsproto.connection import Connection, ConnectionType
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason

from .app import EchoApp, PresenceApp
from .config import Options
from .handler import RequestHandler
from .handshake import Upgrade
from .session import Endpoint, Session
from .tls import TLSLayer, server_context
from .writer import Writer

logger = logging.getLogger(__name__)

#: SO_SNDBUF for every connection (Linux doubles it for bookkeeping).
SEND_BUFFER_SIZE = 256 * 1024


class WebSocketServer(ThreadingHTTPServer):
    """The presence app, ``/echo`` and plain HTTP on one port."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    #: The listen backlog; http.server's default of 5 drops bursts of clients.
    request_queue_size = 1024

    def __init__(
        self,
        options: Options | None = None,
        handler: type[RequestHandler] = RequestHandler,
    ) -> None:
        self.options = options if options is not None else Options()
        if ":" in self.options.host:
            self.address_family = socket.AF_INET6
        self.writer = Writer(self.options.send_timeout)
        self.presence = PresenceApp(
            self.writer.call_at,
            self.writer.gate,
            self.options.broadcast_interval / 1000,
            self.options.max_bad_messages,
            self.options.rate_limit,
            self.options.rate_burst,
            self.options.broadcast_bandwidth * 1e6,
        )
        self.echo = EchoApp()
        #: TLS for wss:// and https://, when a certificate is configured.
        self.tls_context: ssl.SSLContext | None = None
        if self.options.certfile:
            self.tls_context = server_context(
                self.options.certfile, self.options.keyfile
            )
        self.sessions: set[Session] = set()
        self._sessions_changed = threading.Condition()
        #: WebSockets admitted (sessions, and handshakes about to become one).
        self._admitted = 0
        #: Every TCP connection being served, WebSocket or not.
        self.connections: set[socket.socket] = set()
        #: Set when shutting down: new upgrades get 503.
        self.shutting_down = False
        super().__init__((self.options.host, self.options.port), handler)
        self.writer.start()

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can stall
        # for seconds without DNS; the address is all we need.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        # Snapshots are small and latency matters: no Nagle delay.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A fixed kernel buffer instead of autotuning up to megabytes: a slow
        # client then holds little stale data in the kernel, gets the latest
        # snapshot sooner, and is noticed (send_timeout) sooner.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_SIZE)
        return sock, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._sessions_changed:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._sessions_changed:
            self.connections.discard(request)
            self._sessions_changed.notify_all()
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        """A connection failed outside a WebSocket: log it, briefly if expected."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ssl.SSLError)):
            logger.info("%s: connection failed: %s", client_address, exc)
        else:
            logger.exception("%s: error while serving a request", client_address)

    @property
    def port(self) -> int:
        """The port the server listens on (useful with ``port=0``)."""
        return self.server_port

    def url(self, path: str = "/?username=Alex") -> str:
        """A ready-to-paste WebSocket URL for this server."""
        host = self.options.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        scheme = "ws" if self.tls_context is None else "wss"
        return f"{scheme}://{host}:{self.port}{path}"

    # ---------------------------------------------------------- sessions

    def endpoint(self, upgrade: Upgrade) -> Endpoint:
        return self.echo if upgrade.endpoint == "echo" else self.presence

    def admit(self) -> str | None:
        """Take a WebSocket slot; the reason for a 503 if there is none.

        Every admitted handshake must be followed by :meth:`release`.
        """
        with self._sessions_changed:
            if self.shutting_down:
                return "the server is shutting down"
            limit = self.options.max_connections
            if self._admitted >= limit:
                return f"the server is full: {limit} WebSockets are open"
            self._admitted += 1
            return None

    def release(self) -> None:
        with self._sessions_changed:
            self._admitted -= 1

    def run_session(
        self,
        sock: socket.socket,
        upgrade: Upgrade,
        extensions: list[Extension],
        trailing_data: bytes,
        *,
        peer: str,
        tls: TLSLayer | None = None,
    ) -> None:
        """Run one WebSocket connection to its end, in the calling thread."""
        ws = Connection(ConnectionType.SERVER, extensions, trailing_data)
        session = Session(
            sock,
            ws,
            self.endpoint(upgrade),
            self.options,
            self.writer,
            peer=peer,
            username=upgrade.username,
            compressed=bool(extensions),
            tls=tls,
        )
        with self._sessions_changed:
            self.sessions.add(session)
        try:
            session.run()
        finally:
            with self._sessions_changed:
                self.sessions.discard(session)
                self._sessions_changed.notify_all()

    def close_sessions(
        self,
        code: int = CloseReason.GOING_AWAY,
        reason: str = "server shutting down",
        timeout: float | None = None,
    ) -> None:
        """Close every WebSocket with ``code``, then every other connection.

        New upgrades get 503 from now on, handshakes in flight included.
        WebSockets still open after ``timeout`` seconds (default:
        ``close_timeout``) are dropped, and so are idle HTTP connections and
        unfinished requests. Returns once every connection's thread is done,
        or after two more seconds.
        """
        self.shutting_down = True
        if timeout is None:
            timeout = self.options.close_timeout
        with self._sessions_changed:
            sessions = list(self.sessions)
        if sessions:
            logger.info("closing %d connection(s) with %d", len(sessions), code)
        for session in sessions:
            session.close(code, reason)
        deadline = time.monotonic() + timeout
        with self._sessions_changed:
            while self.sessions and time.monotonic() < deadline:
                self._sessions_changed.wait(deadline - time.monotonic())
            late = list(self.sessions)
        for session in late:
            session.abort("it did not close in time")
        with self._sessions_changed:
            others = list(self.connections)
        for sock in others:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._sessions_changed:
            self._sessions_changed.wait_for(
                lambda: not self.sessions and not self.connections, timeout=2.0
            )

    def server_close(self) -> None:
        super().server_close()
        self.writer.stop()

    def stop(self) -> None:
        """Stop serving (from another thread than ``serve_forever``'s).

        Stops accepting, closes every WebSocket with 1001 and closes the
        listening socket.
        """
        self.shutting_down = True
        self.shutdown()
        self.close_sessions()
        self.server_close()
