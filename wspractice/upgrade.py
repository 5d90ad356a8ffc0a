"""The WebSocket server: turns an HTTP upgrade request into a connection.

This is the Node tutorial's ``new WebSocketServer({ server })``. In Node, the
``ws`` package listens for the HTTP server's ``'upgrade'`` event and runs
``handleUpgrade`` → ``completeUpgrade`` → ``'connection'``. Here the HTTP
request handler calls :meth:`WebSocketServer.handle_upgrade`, which:

1. checks the request against RFC 6455 and the server's Host rule
   (:func:`~wspractice.handshake.check_upgrade`) and the endpoint's own
   rules (the presence app's ``username``);
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

It also keeps the totals that ``/metrics`` shows (:meth:`WebSocketServer.statistics`):
what happened to upgrades and closes is counted under its lock, which those
moments take anyway; what flows on a connection is counted by the connection
(plain integers, without a lock of their own) and added up when asked.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol

from wsproto.frame_protocol import CloseReason

from .config import Options
from .connection import Connection, Endpoint
from .errors import HandshakeError
from .fanout import NO_GATE, Gate
from .handshake import HostRule, accept, check_upgrade
from .protocol import Protocol as WebSocketProtocol
from .protocol import Seal
from .trace import ConnectionTracer
from .writer import Writer

if TYPE_CHECKING:
    from .tls import TLSLayer

logger = logging.getLogger(__name__)

Header = tuple[str, str]

#: The label of the endpoint that serves every path not added (the presence app).
DEFAULT_ENDPOINT_NAME = "presence"

#: What flows on connections, in :class:`Statistics`' order.
TRAFFIC = (
    "messages_received",
    "bytes_received",
    "bytes_sent",
    "broadcasts_sent",
    "broadcasts_merged",
)


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


@dataclass
class Statistics:
    """The WebSocket server's totals at one moment; by endpoint name where
    a mapping is keyed by ``str``."""

    #: Open connections.
    open: dict[str, int] = field(default_factory=dict)
    #: Upgrades accepted (``101``) since the start.
    opened: dict[str, int] = field(default_factory=dict)
    #: Upgrades refused, by HTTP status.
    refused: dict[int, int] = field(default_factory=dict)
    #: Connections ended, by endpoint and close code (1006: no close frame).
    closes: dict[tuple[str, int], int] = field(default_factory=dict)
    #: What flowed, by endpoint: one of :data:`TRAFFIC` each.
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Client addresses with a WebSocket open or opening, and the most one has.
    addresses: int = 0
    busiest_address: int = 0


def _traffic(connection: Connection) -> tuple[int, ...]:
    """What has flowed on ``connection`` so far, in :data:`TRAFFIC`'s order."""
    protocol = connection.protocol
    return (
        protocol.messages_received,
        connection.bytes_received,
        protocol.bytes_sent,
        protocol.broadcasts_sent,
        protocol.broadcasts_merged,
    )


class WebSocketServer:
    """Endpoints by path, and every WebSocket connection open on them."""

    def __init__(
        self,
        options: Options,
        writer: Writer,
        default: Endpoint,
        *,
        gate: Gate = NO_GATE,
        host_rule: HostRule | None = None,
    ) -> None:
        self.options = options
        self._writer = writer
        #: The endpoint for every path not added, and its gate.
        self._default = (default, gate)
        self._endpoints: dict[str, tuple[Endpoint, Gate]] = {}
        #: The names in ``Host`` that upgrades may use; None: any.
        self.host_rule = host_rule
        #: Guards ``clients``, ``_admitted``, ``_per_address``,
        #: ``shutting_down`` and the totals below.
        self._lock = threading.Condition()
        #: Each open connection's endpoint name (the metrics' label).
        self._names: dict[Connection, str] = {}
        self._opened: Counter[str] = Counter()
        self._refused: Counter[int] = Counter()
        self._closes: Counter[tuple[str, int]] = Counter()
        #: What flowed on connections that have ended, by endpoint name.
        self._ended: dict[str, list[int]] = {}
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

        An endpoint that broadcasts passes its fan-out gate. The metrics
        label the endpoint's connections with ``path``.
        """
        if not path.startswith("/"):
            raise ValueError(f"an endpoint's path starts with '/', got {path!r}")
        self._endpoints[path] = (endpoint, gate)

    def endpoint(self, path: str) -> tuple[Endpoint, Gate]:
        """The endpoint that serves ``path``, and its gate."""
        return self._endpoints.get(path, self._default)

    def endpoint_name(self, path: str) -> str:
        """The metrics' label of the endpoint that serves ``path``."""
        return path if path in self._endpoints else DEFAULT_ENDPOINT_NAME

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
                host_rule=self.host_rule,
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
            with self._lock:
                self._refused[exc.status] += 1
            response = exchange.reject(exc.status, exc.reason, exc.headers)
            if tracer is not None:
                tracer.refused(exc.status, exc.reason, response)
            return
        address = exchange.address
        refusal = self._admit(address)
        if refusal is not None:
            status, reason = refusal
            with self._lock:
                self._refused[status] += 1
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
                connection.bytes_received += len(trailing)
                protocol.receive_data(trailing, time.monotonic())
            name = self.endpoint_name(request.path)
            with self._lock:
                self.clients.add(connection)
                self._names[connection] = name
                self._opened[name] += 1
                late = self.shutting_down  # close_all() has not seen it.
            if late:
                connection.close(CloseReason.GOING_AWAY, "server shutting down")
            try:
                connection.run()
            finally:
                code = protocol.close_code or CloseReason.ABNORMAL_CLOSURE
                with self._lock:
                    self.clients.discard(connection)
                    del self._names[connection]
                    self._closes[name, int(code)] += 1
                    ended = self._ended.setdefault(name, [0] * len(TRAFFIC))
                    for i, value in enumerate(_traffic(connection)):
                        ended[i] += value
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

    # ------------------------------------------------------------ metrics

    def open_count(self) -> int:
        """How many WebSockets are open."""
        with self._lock:
            return len(self.clients)

    def statistics(self) -> Statistics:
        """The totals now: the counts under the lock, what flows on open
        connections read from them after (each value may lag by the
        messages in flight, and never goes back)."""
        names = [DEFAULT_ENDPOINT_NAME, *self._endpoints]
        with self._lock:
            live = list(self._names.items())
            ended = {name: list(values) for name, values in self._ended.items()}
            stats = Statistics(
                open={name: 0 for name in names},
                opened={name: self._opened[name] for name in names},
                refused=dict(self._refused),
                closes=dict(self._closes),
                addresses=len(self._per_address),
                busiest_address=max(self._per_address.values(), default=0),
            )
        for name in names:
            ended.setdefault(name, [0] * len(TRAFFIC))
        for connection, name in live:
            stats.open[name] = stats.open.get(name, 0) + 1
            totals = ended.setdefault(name, [0] * len(TRAFFIC))
            for i, value in enumerate(_traffic(connection)):
                totals[i] += value
        stats.traffic = {
            name: dict(zip(TRAFFIC, values, strict=True))
            for name, values in ended.items()
        }
        return stats

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
