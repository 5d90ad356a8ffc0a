"""The HTTP request handler: plain HTTP, and the hand-over of upgrades.

:meth:`RequestHandler.do_GET` recognises a WebSocket upgrade and hands it to
the server's WebSocket server (:meth:`UpgradeHook.handle_upgrade`), as Node's
HTTP server emits ``'upgrade'`` for the ``ws`` package; the connection then
runs in this same thread, the one :class:`~socketserver.ThreadingMixIn`
started for the request. Everything else is plain HTTP: the demo page (for
the names in ``Host`` that the server answers to), ``/healthz`` and
``/metrics`` for operators, 404, 405, and refusals with a plain-text reason.

Behind a reverse proxy, the client's address is the one the proxy forwards
(:mod:`wspractice.forwarded`), when the proxy is trusted: :attr:`RequestHandler.peer`
and :attr:`RequestHandler.address` are what logs, per-address limits and
metrics use.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Protocol, cast

from . import __version__, assets
from .config import Options
from .connection import RECV_SIZE
from .errors import HandshakeError
from .forwarded import TrustedProxies, client_address
from .handshake import HostRule, check_host_header, is_websocket_request
from .health import Health
from .metrics import Metrics
from .tls import TLSFile, TLSLayer

logger = logging.getLogger(__name__)

Header = tuple[str, str]


class UpgradeHook(Protocol):
    """Who takes WebSocket upgrades (:class:`wspractice.upgrade.WebSocketServer`)."""

    def handle_upgrade(self, exchange: RequestHandler) -> None: ...


class Serving(Protocol):
    """What the handler needs of its HTTP server (:class:`wspractice.server.Server`)."""

    options: Options
    tls_context: ssl.SSLContext | None
    websockets: UpgradeHook
    host_rule: HostRule
    trusted_proxies: TrustedProxies
    health: Health
    metrics: Metrics

    def call_at(
        self,
        when: float,
        callback: Callable[[float], float | None],
        *,
        coarse: bool = False,
    ) -> None:
        """Run ``callback`` at monotonic time ``when`` (the writer thread;
        up to a tick late if ``coarse``)."""


access_logger = logging.getLogger("wspractice.access")

#: The operators' paths, which answer any Host (see :meth:`RequestHandler.serve_plain`).
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"

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

    The writer thread checks it when it is due; a head that arrived in time
    has cancelled it by then.
    """

    __slots__ = ("_sock", "_peer", "_timeout", "number", "armed")

    def __init__(self, sock: socket.socket, peer: str, timeout: float) -> None:
        self._sock = sock
        self._peer = peer
        self._timeout = timeout
        #: How many heads have been awaited on this connection.
        self.number = 0
        self.armed = False

    def arm(self, serving: Serving) -> None:
        """Start waiting for the next head (a coarse timer: no wake-up of
        the writer thread for each request)."""
        self.number += 1
        self.armed = True
        number = self.number
        serving.call_at(
            time.monotonic() + self._timeout,
            lambda now: self._expire(number),
            coarse=True,
        )

    def cancel(self) -> None:
        self.armed = False

    def _expire(self, number: int) -> None:
        """The deadline passed (writer thread): drop the connection."""
        if not self.armed or number != self.number:
            return
        self.armed = False
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

    raw_requestline: bytes
    protocol_version = "HTTP/1.1"
    server_version = f"wspractice/{__version__}"
    #: TLS for this connection when the server serves wss:// and https://.
    tls: TLSLayer | None = None
    #: The client's address as a trusted proxy forwarded it, for the
    #: request being served; None: the socket's peer is the client.
    forwarded: str | None = None
    _head_deadline: _HeadDeadline

    def version_string(self) -> str:
        return self.server_version

    @property
    def serving(self) -> Serving:
        """The server, as this handler sees it."""
        return cast(Serving, self.server)

    @property
    def peer(self) -> str:
        """The client's address as logs show it: ``host:port``, ``[v6]:port``;
        behind a trusted proxy, ``client via proxy:port``."""
        host, port = self.client_address[:2]
        socket_peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        client = self.forwarded
        if client is None:
            return socket_peer
        if ":" in client:
            client = f"[{client}]"
        return f"{client} via {socket_peer}"

    @property
    def address(self) -> str:
        """The client's address, as per-address limits count it: the
        forwarded one behind a trusted proxy."""
        if self.forwarded is not None:
            return self.forwarded
        return str(self.client_address[0])

    def address_string(self) -> str:
        """http.server's name for the client in its log lines: the address
        alone, as http.server has it; behind a trusted proxy, :attr:`peer`
        (``client via proxy:port``)."""
        if self.forwarded is not None:
            return self.peer
        return str(self.client_address[0])

    # ---------------------------------------------------------- connection

    def setup(self) -> None:
        """Arm the handshake deadline, then set up TLS and the files."""
        options = self.serving.options
        self._head_deadline = _HeadDeadline(
            self.request, self.client_address[0], options.handshake_timeout
        )
        self._head_deadline.arm(self.serving)
        super().setup()
        self.connection.settimeout(options.handshake_timeout)
        context = self.serving.tls_context
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
        # A whole request head must arrive in time: a socket timeout alone
        # would let a client send a byte every few seconds forever. The
        # first deadline was armed in setup().
        if not self._head_deadline.armed:
            self._head_deadline.arm(self.serving)
        super().handle_one_request()

    def parse_request(self) -> bool:
        """http.server's parsing, with a cap on the size of the whole head;
        then the client's address, if a trusted proxy forwards it."""
        self.forwarded = None  # Each request on a connection says it anew.
        limit = self.serving.options.max_header_size
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
        if parsed:
            self.forwarded = client_address(
                str(self.client_address[0]),
                self.headers.items(),
                self.serving.trusted_proxies,
                self.serving.options.forwarded_header,
            )
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
        if is_websocket_request(self.header_items()):
            self.serving.websockets.handle_upgrade(self)  # Node's 'upgrade' event.
        else:
            self.serve_plain()

    def do_HEAD(self) -> None:
        self.serve_plain()

    def serve_plain(self) -> None:
        """``/healthz``, ``/metrics``, or the demo page.

        ``/healthz`` and ``/metrics`` answer whatever ``Host`` says: load
        balancers and Prometheus often ask by IP address or by an internal
        name, and what they show is counts, not anyone's data.
        """
        path = _path_of(self.path)
        if path == HEALTH_PATH:
            self.serve_health()
        elif path == METRICS_PATH:
            self.serve_metrics()
        else:
            self.serve_asset()

    def serve_health(self) -> None:
        status, report = self.serving.health.check()
        body = (json.dumps(report, separators=(",", ":")) + "\n").encode("utf-8")
        self.send_body(status, body, "application/json")

    def serve_metrics(self) -> None:
        body, content_type = self.serving.metrics.render(self.headers.get("Accept"))
        self.send_body(HTTPStatus.OK, body, content_type)

    def send_body(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        """Answer with ``body``, never cached (HEAD: the head alone)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status >= 500:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def serve_asset(self) -> None:
        """The demo page at ``/`` and its files under ``/static/``, for the
        names the server answers to (the Host rule); else 404."""
        asset = assets.find(self.path)
        if asset is None:
            self.reject(HTTPStatus.NOT_FOUND, _NOT_FOUND)
            return
        try:
            check_host_header(self.header_items(), self.serving.host_rule)
        except HandshakeError as exc:
            logger.warning(
                "%s: refused %s %r: %d %s",
                self.peer,
                self.command,
                self.path,
                exc.status,
                exc.reason,
            )
            self.reject(exc.status, exc.reason)
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
    ) -> bytes:
        """Answer with ``status`` and ``reason`` as a plain-text body.

        Returns the response as it was written (for ``--trace``).
        """
        body = (reason + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Connection", "close")
        # What end_headers() is about to write (http.server's buffer).
        head = b"".join(getattr(self, "_headers_buffer", [])) + b"\r\n"
        self.end_headers()
        if self.command == "HEAD":
            return head
        self.wfile.write(body)
        return head + body

    # ---------------------------------------------------------- WebSocket

    def header_items(self) -> list[Header]:
        """The request headers, in order, as http.server parsed them."""
        return self.headers.items()

    def switch_protocols(
        self, headers: list[Header]
    ) -> tuple[socket.socket, bytes, bytes]:
        """Send ``101 Switching Protocols`` with ``headers``.

        Returns the socket, the response head as it was written, and what
        the client sent after its request (see :meth:`_take_buffered_bytes`).
        HTTP is over on this connection from now on.
        """
        self.send_response(HTTPStatus.SWITCHING_PROTOCOLS)
        for name, value in headers:
            self.send_header(name, value)
        # What end_headers() is about to write (http.server's buffer).
        head = b"".join(getattr(self, "_headers_buffer", [])) + b"\r\n"
        self.end_headers()
        self.close_connection = True
        return self.connection, head, self._take_buffered_bytes()

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
            # One call: what the buffer holds (at most its 8 KiB), or else one
            # read. Reading until the socket is empty would let a client that
            # keeps sending grow this without limit, before any size limit or
            # backpressure applies.
            data = self.rfile.read1(RECV_SIZE) or b""
        except OSError:
            data = b""
        finally:
            sock.setblocking(True)
        self.rfile.close()  # Frees its buffer for the life of the connection.
        return data

    # ---------------------------------------------------------- logging

    def log_message(self, format: str, *args: object) -> None:
        """http.server's access log, through :mod:`logging`."""
        access_logger.info("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: object) -> None:
        logger.warning("%s %s", self.address_string(), format % args)


def _path_of(target: str) -> str:
    """The path of a request target, without its query; ``""`` if unreadable."""
    try:
        return urllib.parse.urlsplit(target).path
    except ValueError:
        return ""
