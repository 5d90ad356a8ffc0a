"""The server: :class:`http.server.ThreadingHTTPServer` with WebSockets on top.

The Node tutorial's ``http.createServer()`` followed by
``new WebSocketServer({ server })`` and ``server.listen(port)``::

    const server = http.createServer();        server = Server(options)
    const wsServer = new WebSocketServer(...)   server.websockets
    server.listen(port, callback)               (the constructor binds and
                                                listens; serve_forever() is
                                                the accept loop Node runs
                                                by itself)

One thread per TCP connection (from :class:`~socketserver.ThreadingMixIn`)
reads HTTP requests; a request that upgrades to a WebSocket keeps its thread
for the life of the connection. One more thread, the
:class:`~wspractice.writer.Writer`, finishes writes that sockets could not
take at once and runs every timer, broadcast rounds included.

To run one inside a program (docs/embedding.md)::

    server = Server(Options(port=0))
    server.start()              # serve_forever() in a thread of its own
    print(server.url())         # ws://127.0.0.1:PORT/?username=Alex
    server.stop()
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .config import Options
from .echo import EchoApp
from .fanout import NO_GATE, Gate
from .forwarded import TrustedProxies
from .handler import RequestHandler
from .handshake import host_rule
from .health import Health
from .metrics import Metrics
from .presence import PresenceApp
from .tls import server_context
from .upgrade import Statistics, WebSocketServer
from .writer import Writer

if TYPE_CHECKING:
    from .redis_link import RedisLink

logger = logging.getLogger(__name__)

#: SO_SNDBUF for every connection (Linux doubles it for bookkeeping).
SEND_BUFFER_SIZE = 256 * 1024

#: The path of the echo endpoint; every other path is the presence app.
ECHO_PATH = "/echo"


class Server(ThreadingHTTPServer):
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
        #: When the server started, in seconds since the epoch.
        self.started = time.time()
        if ":" in self.options.host:
            self.address_family = socket.AF_INET6
        gate = NO_GATE if "gate" in self.options.ablate else Gate()
        self.writer = Writer(
            gate, coarse_timers="coarse-timers" not in self.options.ablate
        )
        #: The link to the room's other processes (``--redis``), or None.
        self.redis_link: RedisLink | None = None
        if self.options.redis is not None:
            self.redis_link = _redis_link(self.options)
        #: The presence app: the tutorial's server/index.js.
        self.presence = PresenceApp(
            self.options,
            self.writer.call_at,
            gate,
            users=self.redis_link.users if self.redis_link is not None else None,
        )
        #: The names in ``Host`` that the server answers to (DNS rebinding).
        self.host_rule = host_rule(
            self.options.host, self.options.allowed_hosts, machine_names()
        )
        #: The proxies whose forwarding header gives the client's address.
        self.trusted_proxies = TrustedProxies.parse(self.options.forwarded_allow_ips)
        #: Node's ``new WebSocketServer({ server })``: takes the upgrades.
        self.websockets = WebSocketServer(
            self.options, self.writer, self.presence, gate=gate
        )
        self.websockets.add_endpoint(ECHO_PATH, EchoApp())
        self.websockets.host_rule = self.host_rule
        #: ``GET /healthz``; parts of the server add their own state to it
        #: with ``health.add_component()``.
        self.health = Health(
            self.websockets.open_count, lambda: self.websockets.shutting_down
        )
        if self.redis_link is not None:
            link = self.redis_link
            self.health.add_component(
                "redis", link.status, healthy=lambda: link.connected
            )
        #: ``GET /metrics``.
        self.metrics = Metrics(self)
        #: TLS for wss:// and https://, when a certificate is configured.
        self.tls_context: ssl.SSLContext | None = None
        if self.options.certfile:
            self.tls_context = server_context(
                self.options.certfile, self.options.keyfile
            )
        #: Every TCP connection being served, WebSocket or not.
        self.connections: set[socket.socket] = set()
        self._connections_changed = threading.Condition()
        # serve_forever() and stop(), in whichever order they come.
        self._run_lock = threading.Lock()
        self._serving = False
        self._stopped = False
        self._thread: threading.Thread | None = None
        super().__init__((self.options.host, self.options.port), handler)
        self.writer.start()
        if self.redis_link is not None:
            # Before the first client: its first snapshot holds the room.
            self.redis_link.start(self.presence.rounds.request)

    def server_bind(self) -> None:
        if self.options.reuse_port:  # --workers: every worker binds the port.
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
        with self._connections_changed:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_changed:
            self.connections.discard(request)
            self._connections_changed.notify_all()
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
        return server_url(self.options, self.port, path)

    def call_at(
        self,
        when: float,
        callback: Callable[[float], float | None],
        *,
        coarse: bool = False,
    ) -> None:
        """Run ``callback(now)`` at monotonic time ``when``, in the writer
        thread (up to :data:`~wspractice.writer.TICK` late if ``coarse``)."""
        self.writer.call_at(when, callback, coarse=coarse)

    # ---------------------------------------------------------- metrics

    @property
    def shutting_down(self) -> bool:
        """Whether the server has begun to stop (upgrades get 503)."""
        return self.websockets.shutting_down

    def websocket_statistics(self) -> Statistics:
        return self.websockets.statistics()

    def presence_statistics(self) -> tuple[int, int]:
        """Users in the room, and broadcast rounds so far."""
        with self.presence.lock:
            users = len(self.presence.users)
        return users, self.presence.rounds_sent

    def tcp_connections(self) -> int:
        with self._connections_changed:
            return len(self.connections)

    def components_up(self) -> dict[str, bool]:
        return self.health.components_up()

    # ---------------------------------------------------------- running

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accept connections until :meth:`stop` (or ``shutdown()``); returns
        at once if :meth:`stop` came first."""
        with self._run_lock:
            if self._stopped:
                return
            self._serving = True
        try:
            super().serve_forever(poll_interval)
        finally:
            with self._run_lock:
                self._serving = False

    def start(self) -> threading.Thread:
        """Serve in a thread of its own (a daemon); :meth:`stop` ends it."""
        with self._run_lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("the server has been started or stopped already")
            self._thread = threading.Thread(
                target=self.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"wspractice-server-{self.port}",
                daemon=True,
            )
        self._thread.start()
        return self._thread

    def __exit__(self, *exc_info: object) -> None:
        """``with Server(...) as server:`` stops it at the end."""
        self.stop()

    # ---------------------------------------------------------- stopping

    def close_connections(self, timeout: float | None = None) -> None:
        """Close every WebSocket with 1001, then every other connection.

        With ``--redis``, this process's users leave the shared room first.

        New upgrades get 503 from now on, handshakes in flight included.
        WebSockets still open after ``timeout`` seconds (default:
        ``close_timeout``) are dropped, and so are idle HTTP connections and
        unfinished requests. Returns once every connection's thread is done,
        or after two more seconds.
        """
        self.websockets.stop_accepting()
        self.leave_room()
        self.websockets.close_all(timeout=timeout)
        with self._connections_changed:
            others = list(self.connections)
        for sock in others:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.websockets.wait_closed(2.0)
        with self._connections_changed:
            self._connections_changed.wait_for(
                lambda: not self.connections, timeout=2.0
            )

    def leave_room(self) -> None:
        """With ``--redis``: this process's users leave the shared room now,
        in every process's view, and the link to Redis closes."""
        if self.redis_link is not None:
            self.redis_link.close()

    def server_close(self) -> None:
        super().server_close()
        self.leave_room()
        self.writer.stop()

    def stop(self) -> None:
        """Stop serving (from another thread than ``serve_forever``'s).

        Stops accepting, closes every WebSocket with 1001 and closes the
        listening socket. Before ``serve_forever()`` or :meth:`start`, it
        only closes (and ``serve_forever()`` then returns at once); a second
        call does nothing.
        """
        with self._run_lock:
            if self._stopped:
                return
            self._stopped = True
            serving = self._serving
        self.websockets.stop_accepting()
        if serving:
            self.shutdown()  # Waits for serve_forever() to return.
        self.close_connections()
        self.server_close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def machine_names() -> list[str]:
    """This machine's own host name, and its ``.local`` (mDNS) name when it
    has no domain: what other devices of a local network may call it."""
    name = socket.gethostname().lower()
    if not name:
        return []
    return [name] if "." in name else [name, f"{name}.local"]


def _redis_link(options: Options) -> RedisLink:
    """The Redis link; the client library is an optional extra."""
    try:
        from .redis_link import RedisLink
    except ImportError as exc:
        raise RuntimeError(
            f"--redis needs the redis package ({exc}):"
            " pip install 'wspractice[redis]'"
        ) from None
    return RedisLink(options)


def server_url(options: Options, port: int, path: str = "/?username=Alex") -> str:
    """A ready-to-paste WebSocket URL for a server with ``options``."""
    host = options.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "wss" if options.certfile else "ws"
    return f"{scheme}://{host}:{port}{path}"
