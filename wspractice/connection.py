"""One open WebSocket: the thread that serves it, and the socket's I/O.

A :class:`Connection` is the Node tutorial's ``connection``: what an
endpoint's ``handle_connection``, ``handle_message`` and ``handle_close``
receive, with :meth:`~Connection.send_text` for ``connection.send()``. It is
the thin I/O shell around :class:`~wspractice.protocol.Protocol`, which holds
every rule. Its loop, :meth:`Connection.run`, is the three steps of wsproto's
own example, in the thread that http.server started for the request:

1. read bytes from the socket;
2. feed them to the protocol;
3. hand each message to the endpoint, and write what the protocol says.

Other threads write to the connection too: broadcast rounds, the writer
thread when the socket can take more, shutdown. A wsproto object is not
thread-safe, so every protocol call and the socket write that follows it run
under :attr:`Connection.lock` (websockets calls it the protocol mutex). The
endpoint is always called without it. Writes never block: what the socket
does not take waits in the protocol's outbox until the writer thread flushes
it (:mod:`wspractice.writer`).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from wsproto.frame_protocol import CloseReason

from .errors import CloseError
from .fanout import Gate
from .handshake import Request
from .protocol import Broadcast
from .protocol import Protocol as WebSocketProtocol
from .writer import Writer

if TYPE_CHECKING:
    from .tls import TLSLayer
    from .trace import ConnectionTracer

logger = logging.getLogger(__name__)

#: How much to ask of the socket per read while data keeps coming.
RECV_SIZE = 64 * 1024

#: How much to ask for when the last read was not full. Python allocates the
#: whole buffer before the read blocks, so this is what an idle connection
#: holds; a cursor update needs a few dozen bytes.
IDLE_RECV_SIZE = 1024

#: Longest wait for the client to close TCP after the closing handshake.
LINGER_TIMEOUT = 2.0

_send_flags = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class Endpoint(Protocol):
    """What a WebSocket endpoint does: the Node tutorial's event handlers.

    ``wsServer.on("connection")``, ``connection.on("message")`` and
    ``connection.on("close")``, plus :meth:`check_request`, which may refuse
    an upgrade before the ``101`` goes out.
    """

    def check_request(self, request: Request) -> str | None:
        """Before the ``101``: refuse the upgrade by raising
        :class:`~wspractice.errors.HandshakeError`, or return the subprotocol
        to select among ``request.subprotocols`` (None: no subprotocol)."""

    def handle_connection(self, connection: Connection, request: Request) -> None:
        """A client connected (its ``101`` has been sent)."""

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        """A whole message arrived: ``str`` for text, ``bytes`` for binary."""

    def handle_close(self, connection: Connection) -> None:
        """The connection is over; nothing more can be sent on it."""


class Connection:
    """A WebSocket connection after the handshake."""

    # Thousands may be open at once: slots instead of a __dict__.
    __slots__ = (
        "sock",
        "protocol",
        "endpoint",
        "request",
        "subprotocol",
        "lock",
        "context",
        "_writer",
        "_gate",
        "_tls",
        "_tracer",
        "_close_timeout",
        "_drained",
        "_watching",
        "_in_batch",
        "_timer_at",
        "_timer_generation",
        "_finished",
        "bytes_received",
        "__weakref__",
    )

    def __init__(
        self,
        sock: socket.socket,
        protocol: WebSocketProtocol,
        endpoint: Endpoint,
        request: Request,
        writer: Writer,
        gate: Gate,
        *,
        close_timeout: float,
        subprotocol: str | None = None,
        tls: TLSLayer | None = None,
        tracer: ConnectionTracer | None = None,
    ) -> None:
        self.sock = sock
        self.protocol = protocol
        self.endpoint = endpoint
        self.request = request
        #: The subprotocol selected in the handshake, if any.
        self.subprotocol = subprotocol
        #: Guards ``protocol``, the TLS layer and the socket's writes.
        self.lock = threading.Lock()
        #: What the endpoint keeps for this connection (the presence app:
        #: its user's uuid and message rules).
        self.context: Any = None
        self._writer = writer
        self._gate = gate
        self._tls = tls
        self._tracer = tracer
        self._close_timeout = close_timeout
        #: Made on first use: most connections never wait for the outbox.
        self._drained: threading.Condition | None = None
        #: The writer thread watches the socket for room.
        self._watching = False
        #: The reader is handling a read's messages (see _handle_messages).
        self._in_batch = False
        # The next timer call (see _schedule).
        self._timer_at: float | None = None
        self._timer_generation = 0
        #: The thread is done: nothing more may be written.
        self._finished = False
        #: Bytes read from the socket (TLS records included), for the
        #: metrics: written by the reader thread alone.
        self.bytes_received = 0

    def __repr__(self) -> str:
        return f"<Connection {self.request.path} {self.request.peer}>"

    def fileno(self) -> int:
        return self.sock.fileno()

    # ------------------------------------------------------------ the thread

    def run(self) -> None:
        """Serve the connection until it is closed; never raises."""
        self._call(self.endpoint.handle_connection, self, self.request)
        with self.lock:
            self._schedule()
        try:
            self._read_loop()
        except Exception:
            logger.exception("%r: error in the reader loop", self)
            self.close(CloseReason.INTERNAL_ERROR, "internal server error")
        finally:
            try:
                self.endpoint.handle_close(self)
            except Exception:
                logger.exception("%r: error while closing", self)
            self._finish()

    def _read_loop(self) -> None:
        protocol, sock = self.protocol, self.sock
        size = IDLE_RECV_SIZE
        data = None  # The handshake's trailing bytes are in the protocol already.
        while True:
            with self._gate:
                if data is not None:
                    self._receive(data)
                self._handle_messages()
            if protocol.closed:
                return
            self._wait_for_room()
            try:
                data = sock.recv(size)
            except OSError as exc:
                logger.debug("%r: read failed: %s", self, exc)
                data = b""
            size = RECV_SIZE if len(data) == size else IDLE_RECV_SIZE

    def _receive(self, data: bytes) -> None:
        """Step 2: feed what was read (``b""``: end of stream) to the protocol."""
        now = time.monotonic()
        eof = not data
        self.bytes_received += len(data)
        with self.lock:
            if self._tls is not None:
                data = self._tls.feed(data)
                eof = eof or self._tls.closed
                self.protocol.send_sealed(self._tls.outgoing())
            if self._tracer is not None:
                if data:
                    self._tracer.received(data)
                if eof:
                    self._tracer.received(b"")
            if data:
                self.protocol.receive_data(data, now)
            if eof:
                self.protocol.receive_eof(now)

    def _handle_messages(self) -> None:
        """Step 3: each message to the endpoint, then every answer to the socket.

        The answers of one read (replies, pongs, close frames) leave together,
        in order, in as few writes as the socket allows: while a batch runs,
        :meth:`send_text` and :meth:`send_bytes` queue without writing.
        """
        protocol, lock, handle = self.protocol, self.lock, self.endpoint.handle_message
        while True:
            with lock:
                message = protocol.next_message()
                if message is None:
                    self._in_batch = False
                    self._flush_locked()
                    if not protocol.open:
                        self._schedule()  # The closing handshake's deadline.
                    return
                self._in_batch = True
            try:
                handle(self, message)
            except CloseError as exc:
                self.close(exc.code, exc.reason)
            except Exception:
                logger.exception("%r: error in handle_message", self)
                self.close(CloseReason.INTERNAL_ERROR, "internal server error")
            self._gate.pause()  # A broadcast round waiting goes first.

    def _call(self, handler: Any, *args: Any) -> None:
        """Run an endpoint's handler; its errors close this connection only."""
        try:
            handler(*args)
        except CloseError as exc:
            self.close(exc.code, exc.reason)
        except Exception:
            logger.exception("%r: error in %s", self, handler.__name__)
            self.close(CloseReason.INTERNAL_ERROR, "internal server error")

    def _wait_for_room(self) -> None:
        """Backpressure: let the client read its replies before we read more."""
        if not self.protocol.reading_paused:
            return
        with self.lock:
            if self._drained is None:
                self._drained = threading.Condition(self.lock)
            while self.protocol.reading_paused:
                self._drained.wait(1.0)

    # ------------------------------------------------------------ sending

    def send_text(self, text: str) -> bool:
        """Send a text message to this client alone; False once it is closing."""
        with self.lock:
            queued = self.protocol.send_text(text)
            if not self._in_batch:  # Else the batch's end writes it.
                self._flush_locked()
        return queued

    def send_bytes(self, data: bytes) -> bool:
        """Send a binary message to this client alone; False once it is closing."""
        with self.lock:
            queued = self.protocol.send_bytes(data)
            if not self._in_batch:
                self._flush_locked()
        return queued

    def send_broadcast(self, broadcast: Broadcast) -> None:
        """Offer a broadcast (see :meth:`Protocol.send_broadcast`)."""
        with self.lock:
            self.protocol.send_broadcast(broadcast)
            self._flush_locked()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (from any thread; no-op once started)."""
        with self.lock:
            self.protocol.close(code, reason, time.monotonic())
            self._flush_locked()
            self._schedule()

    def abort(self, reason: str) -> None:
        """Drop the TCP connection now, from any thread."""
        with self.lock:
            if self._finished or self.protocol.abort_reason is not None:
                return
            self.protocol.abort(reason)
            self._notify_drained()
        self._reset(reason)

    def flush(self) -> bool:
        """Write what the socket takes (writer thread); True once all is sent."""
        with self.lock:
            done = self._flush_locked()
            if done:
                self._watching = False
            self._notify_drained()
            return done

    def _flush_locked(self) -> bool:
        """Write until the outbox is empty or the socket is full. Holds ``lock``."""
        protocol = self.protocol
        while (chunk := protocol.data_to_send()) is not None:
            if self._finished:
                protocol.abort("the connection is finished")
                return True
            try:
                sent = self.sock.send(chunk, _send_flags)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._write_failed(exc)
                return True
            if sent == len(chunk):
                protocol.data_sent(sent)
                continue
            # The socket is full: the writer thread writes the rest.
            protocol.data_sent(sent, time.monotonic())
            if not self._watching:
                self._watching = True
                self._writer.watch(self)
            self._schedule()  # The send timeout.
            return False
        return True

    def _write_failed(self, exc: OSError) -> None:
        """The client is gone. Holds ``lock``."""
        logger.debug("%r: write failed: %s", self, exc)
        self.protocol.abort(f"write failed: {exc}")
        self._notify_drained()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # Wakes the reader.
        except OSError:
            pass

    def _reset(self, reason: str) -> None:
        """Reset the TCP connection: what the kernel holds for it is discarded."""
        logger.info("%r: dropping the connection: %s", self, reason)
        try:
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.sock.shutdown(socket.SHUT_RDWR)  # Wakes the reader.
        except OSError:
            pass

    def _notify_drained(self) -> None:
        """Wake the reader if it waits for the outbox. Holds ``lock``."""
        if self._drained is not None:
            self._drained.notify_all()

    # ------------------------------------------------------------ time

    def _schedule(self) -> None:
        """Make sure the writer thread calls :meth:`_on_timer` by the protocol's
        next deadline. Holds ``lock``.

        One chain of timer calls per connection: each call returns the next
        deadline. A deadline earlier than the chain's next call starts a new
        chain, and the old one ends at its next call (its generation is old).
        """
        deadline = self.protocol.deadline()
        if deadline is None or self._finished:
            return
        if self._timer_at is not None and self._timer_at <= deadline:
            return
        self._timer_at = deadline
        self._timer_generation += 1
        generation = self._timer_generation
        self._writer.call_at(
            deadline, lambda now: self._on_timer(now, generation), coarse=True
        )

    def _on_timer(self, now: float, generation: int) -> float | None:
        """Pings, a late pong, a late close, a stalled socket (writer thread)."""
        with self.lock:
            if generation != self._timer_generation or self._finished:
                return None
            already = self.protocol.abort_reason
            self.protocol.timer(now)
            self._flush_locked()
            reason = self.protocol.abort_reason
            if reason is not None:
                self._notify_drained()
            self._timer_at = deadline = self.protocol.deadline()
        if reason is not None and already is None:
            self._reset(reason)
        return deadline

    # ------------------------------------------------------------ the end

    def _finish(self) -> None:
        """Flush what is left, then close TCP first, as RFC 6455 7.1.1 asks."""
        deadline = time.monotonic() + self._close_timeout
        protocol = self.protocol
        with self.lock:
            while protocol.pending_bytes and protocol.abort_reason is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._drained is None:
                    self._drained = threading.Condition(self.lock)
                self._drained.wait(remaining)
            self._finished = True  # No more writes from any thread.
            dropped = protocol.abort_reason is not None
            alert = self._tls.close_notify() if self._tls and not dropped else b""
        if not dropped:
            try:
                if alert:
                    self.sock.send(alert, _send_flags)
                self.sock.shutdown(socket.SHUT_WR)
                self._drain_until_eof(min(LINGER_TIMEOUT, self._close_timeout))
            except OSError:
                pass
        self._writer.forget(self)
        self.sock.close()

    def _drain_until_eof(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.sock.settimeout(remaining)
            if not self.sock.recv(RECV_SIZE):
                return
