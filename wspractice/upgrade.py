"""The WebSocket server: turns an HTTP upgrade request into a connection.

This is the Node tutorial's ``new WebSocketServer({ server })``. In Node, the
``ws`` package listens for the HTTP server's ``'upgrade'`` event and runs
``handleUpgrade`` → ``completeUpgrade`` → ``'connection'``. Here the HTTP
request handler calls :meth:`WebSocketServer.handle_upgrade`, which:

1. checks the request against RFC 6455 (:func:`~wspractice.handshake.check_upgrade`)
   and the endpoint's own rules (the presence app's ``username``);
2. admits it (``--max-connections-per-address``, ``--max-connections``, not
   while shutting down);
3. answers ``101 Switching Protocols``, with ``Sec-WebSocket-Accept`` and
   permessage-deflate as wsproto negotiates them;
4. makes the :class:`~wspractice.connection.Connection` and runs it in the
   request's own thread: the endpoint's ``handle_connection`` is the
   tutorial's ``wsServer.on("connection")``.

Endpoints are found by path: ``/echo`` is the echo endpoint and any other
path the presence app, unless :meth:`WebSocketServer.add_endpoint` adds more.
An endpoint that broadcasts comes with the fan-out gate its readers take turns
at (see :mod:`wspractice.fanout`); the others need none.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

from wsproto.frame_protocol import CloseReason

from .config import Options
from .connection import Connection, Endpoint
from .errors import HandshakeError
from .fanout import NO_GATE, Gate
from .handshake import accept, check_upgrade
from .protocol import Protocol as WebSocketProtocol
from .protocol import Seal
from .trace import ConnectionTracer
from .writer import Writer

if TYPE_CHECKING:
    from .tls import TLSLayer

logger = logging.getLogger(__name__)

Header = tuple[str, str]


class Exchange(Protocol):
    """What the WebSocket server needs of the HTTP request being upgraded
    (the request handler; Node's ``request``, ``socket`` and ``head``)."""

    requestline: str
    request_version: str
    path: str

    @property
    def peer(self) -> str:
        """The client's address and port, as logs show it."""

    @property
    def address(self) -> str:
        """The client's address, as per-address limits count it."""

    @property
    def tls(self) -> TLSLayer | None:
        """The connection's TLS layer, when the server serves wss://."""

    def header_items(self) -> list[Header]: ...

    def reject(
        self, status: HTTPStatus, reason: str, headers: tuple[Header, ...] = ()
    ) -> bytes:
        """Answer with ``status`` and ``reason`` as a plain-text body; the
        response as sent."""

    def switch_protocols(
        self, headers: list[Header]
    ) -> tuple[socket.socket, bytes, bytes]:
        """Send the 101 with ``headers``; the socket, the response head as
        sent, and the bytes the client sent after its request."""


class WebSocketServer:
    """Endpoints by path, and every WebSocket connection open on them."""

    def __init__(
        self,
        options: Options,
        writer: Writer,
        default: Endpoint,
        *,
        gate: Gate = NO_GATE,
    ) -> None:
        self.options = options
        self._writer = writer
        #: The endpoint for every path not added, and its gate.
        self._default = (default, gate)
        self._endpoints: dict[str, tuple[Endpoint, Gate]] = {}
        #: Guards ``clients``, ``_admitted``, ``_per_address`` and
        #: ``shutting_down``.
        self._lock = threading.Condition()
        #: Every open connection (Node's ``wsServer.clients``).
        self.clients: set[Connection] = set()
        #: Upgrades admitted: open connections and handshakes about to be.
        self._admitted = 0
        #: The same, by client address.
        self._per_address: dict[str, int] = {}
        #: Set by :meth:`close_all`: new upgrades get 503.
        self.shutting_down = False

    def add_endpoint(
        self, path: str, endpoint: Endpoint, *, gate: Gate = NO_GATE
    ) -> None:
        """Serve ``endpoint`` at ``path`` (exactly; the query string aside).

        An endpoint that broadcasts passes its fan-out gate.
        """
        self._endpoints[path] = (endpoint, gate)

    def endpoint(self, path: str) -> tuple[Endpoint, Gate]:
        """The endpoint that serves ``path``, and its gate."""
        return self._endpoints.get(path, self._default)

    # ------------------------------------------------------------ upgrade

    def handle_upgrade(self, exchange: Exchange) -> None:
        """Accept the WebSocket and serve it until it closes; or refuse it."""
        options = self.options
        headers = exchange.header_items()
        tracer = None
        if options.trace:
            tracer = ConnectionTracer(exchange.peer)
            tracer.request(exchange.requestline, headers)
        try:
            request = check_upgrade(
                exchange.request_version,
                exchange.path,
                headers,
                options.allowed_origins,
                exchange.peer,
            )
            endpoint, gate = self.endpoint(request.path)
            subprotocol = endpoint.check_request(request)
        except HandshakeError as exc:
            logger.warning(
                "rejected handshake from %s for %r: %d %s",
                exchange.peer,
                exchange.path,
                exc.status,
                exc.reason,
            )
            response = exchange.reject(exc.status, exc.reason, exc.headers)
            if tracer is not None:
                tracer.refused(exc.status, exc.reason, response)
            return
        address = exchange.address
        refusal = self._admit(address)
        if refusal is not None:
            status, reason = refusal
            logger.warning("refused a WebSocket from %s: %s", exchange.peer, reason)
            response = exchange.reject(status, reason, (("Retry-After", "5"),))
            if tracer is not None:
                tracer.refused(status, reason, response)
            return
        try:
            response_headers, extensions = accept(
                request, options.compression, subprotocol
            )
            sock, head, trailing = exchange.switch_protocols(response_headers)
            tls = exchange.tls
            if tracer is not None:
                tracer.accepted(request.key, head, compressed=bool(extensions))
            protocol = WebSocketProtocol(
                options,
                time.monotonic(),
                extensions=extensions,
                seal=_sealer(tls, tracer),
            )
            connection = Connection(
                sock,
                protocol,
                endpoint,
                request,
                self._writer,
                gate,
                close_timeout=options.close_timeout,
                subprotocol=subprotocol,
                tls=tls,
                tracer=tracer,
            )
            if trailing:  # Frames that came with the handshake.
                if tracer is not None:
                    tracer.received(trailing)
                protocol.receive_data(trailing, time.monotonic())
            with self._lock:
                self.clients.add(connection)
                late = self.shutting_down  # close_all() has not seen it.
            if late:
                connection.close(CloseReason.GOING_AWAY, "server shutting down")
            try:
                connection.run()
            finally:
                with self._lock:
                    self.clients.discard(connection)
                    self._lock.notify_all()
        finally:
            with self._lock:
                self._admitted -= 1
                self._lock.notify_all()
                left = self._per_address[address] - 1
                if left:
                    self._per_address[address] = left
                else:
                    del self._per_address[address]

    def _admit(self, address: str) -> tuple[HTTPStatus, str] | None:
        """Take a connection slot; the status and reason if there is none."""
        with self._lock:
            if self.shutting_down:
                return HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down"
            per_address = self.options.max_connections_per_address
            mine = self._per_address.get(address, 0)
            if per_address and mine >= per_address:
                return (
                    HTTPStatus.TOO_MANY_REQUESTS,
                    f"too many WebSockets from {address}: {per_address} are open"
                    " (--max-connections-per-address)",
                )
            limit = self.options.max_connections
            if self._admitted >= limit:
                return (
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    f"the server is full: {limit} WebSockets are open",
                )
            self._admitted += 1
            self._per_address[address] = mine + 1
            return None

    # ------------------------------------------------------------ shutdown

    def stop_accepting(self) -> None:
        """Refuse new upgrades with 503 from now on."""
        with self._lock:
            self.shutting_down = True

    def close_all(
        self,
        code: int = CloseReason.GOING_AWAY,
        reason: str = "server shutting down",
        timeout: float | None = None,
    ) -> None:
        """Close every connection with ``code``; drop those still open after
        ``timeout`` seconds (default: ``close_timeout``). New upgrades get
        503 from now on, handshakes in flight included."""
        if timeout is None:
            timeout = self.options.close_timeout
        self.stop_accepting()
        with self._lock:
            clients = list(self.clients)
        if clients:
            logger.info("closing %d connection(s) with %d", len(clients), code)
        for connection in clients:
            connection.close(code, reason)
        # Upgrades admitted before the refusals began are waited for too:
        # they find shutting_down set when they become clients, and close.
        deadline = time.monotonic() + timeout
        with self._lock:
            self._lock.wait_for(
                lambda: not self._admitted,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            late = list(self.clients)
        for connection in late:
            connection.abort("it did not close in time")

    def wait_closed(self, timeout: float) -> bool:
        """Wait until every connection's thread is done; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._admitted, timeout=timeout)


def _sealer(tls: TLSLayer | None, tracer: ConnectionTracer | None) -> Seal | None:
    """What turns a frame into wire bytes: the trace sees it, then TLS."""
    if tracer is None:
        return None if tls is None else tls.encrypt

    def seal(frame: bytes) -> bytes:
        tracer.sent(frame)
        return frame if tls is None else tls.encrypt(frame)

    return seal
