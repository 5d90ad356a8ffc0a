"""One open WebSocket connection: its reader loop, its lock and its outbox.

The reader loop is the three steps of wsproto's own example: read bytes from
the socket, feed them to wsproto, handle the events (sending what they
produce). It runs in the connection's own thread, the one
:class:`~socketserver.ThreadingMixIn` started for the request.

Other threads send to the connection too: the broadcast path and the writer
thread. A wsproto object is not thread-safe, so every wsproto call and the
socket write that follows it happen under :attr:`Session.lock` (websockets
calls it the protocol mutex). Writes never block: what the socket does not
take at once waits in the outbox, which the :class:`~wspractice.writer.Writer`
thread flushes when the socket is writable. The outbox holds at most the
latest snapshot, so a client that stops reading costs the others nothing; one
that stays stuck for ``send_timeout`` seconds is dropped.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

from .errors import CloseError, MessageTooBig
from .trace import take as take_tracer

if TYPE_CHECKING:
    from .config import Options
    from .writer import Writer

logger = logging.getLogger(__name__)

#: How much to ask of the socket per read.
RECV_SIZE = 64 * 1024

#: The reader stops reading while more than this many bytes of replies to
#: its own client wait in the outbox (backpressure, e.g. on /echo).
HIGH_WATER = 64 * 1024

#: Longest wait for the client to close TCP after the close handshake.
LINGER_TIMEOUT = 2.0

_send_flags = getattr(socket, "MSG_DONTWAIT", 0) | getattr(socket, "MSG_NOSIGNAL", 0)


class Endpoint(Protocol):
    """What a WebSocket endpoint does with its connections.

    The Node tutorial's ``wsServer.on("connection")``,
    ``connection.on("message")`` and ``connection.on("close")``.
    """

    def handle_connection(self, session: Session) -> None: ...

    def handle_message(self, session: Session, message: str | bytes) -> None: ...

    def handle_close(self, session: Session) -> None: ...


class Session:
    """A WebSocket connection after the handshake."""

    def __init__(
        self,
        sock: socket.socket,
        ws: Connection,
        endpoint: Endpoint,
        options: Options,
        writer: Writer,
        *,
        peer: str = "",
        username: str | None = None,
        compressed: bool = False,
    ) -> None:
        #: A fresh uuid4 per connection, like the tutorial's ``uuidv4()``.
        self.id = str(uuid.uuid4())
        self.sock = sock
        self.ws = ws
        self.endpoint = endpoint
        self.options = options
        self.writer = writer
        self.peer = peer
        self.username = username
        #: Whether permessage-deflate is in force (frames are then per connection).
        self.compressed = compressed
        #: Bad messages in a row; endpoints may use it to end a connection.
        self.bad_messages = 0

        #: Guards ``ws`` and the outbox.
        self.lock = threading.Lock()
        self._drained = threading.Condition(self.lock)
        # The outbox: the frame being written, then frames in order, then the
        # latest snapshot (which replaces any older one not yet started).
        self._current: memoryview | None = None
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._snapshot: tuple[bytes, str] | None = None
        #: Version of the newest snapshot accepted for sending.
        self.snapshot_version = -1
        #: Monotonic time since which the socket has refused our data.
        self.stalled_since: float | None = None
        #: Monotonic time by which the close handshake must be over.
        self.close_deadline: float | None = None
        self._aborted = False
        self._write_failed = False
        self._message: list[str | bytes] = []
        self._message_size = 0
        #: Logs every frame both ways (``--trace``); None when tracing is off.
        self.tracer = take_tracer(sock) if options.trace else None

    def __repr__(self) -> str:
        who = self.username if self.username is not None else "echo"
        return f"<Session {who} {self.id[:8]} {self.peer}>"

    # ------------------------------------------------------------ reading

    def run(self) -> None:
        """Serve the connection until it is closed; never raises."""
        try:
            self.endpoint.handle_connection(self)
        except CloseError as exc:
            self.close(exc.code, exc.reason)
        except Exception:
            logger.exception("%r: error while opening", self)
            self.close(CloseReason.INTERNAL_ERROR, "internal server error")
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
        self._handle_events()  # Frames that came with the handshake.
        while self.ws.state is not ConnectionState.CLOSED:
            try:
                data = self.sock.recv(RECV_SIZE)
            except OSError as exc:
                logger.debug("%r: read failed: %s", self, exc)
                data = b""
            if self.tracer is not None:
                self.tracer.received(data)
            with self.lock:
                self.ws.receive_data(data or None)
            self._handle_events()
            self._wait_for_room()

    def _handle_events(self) -> None:
        """Handle each event as wsproto parses it.

        One at a time, so that a message is answered before wsproto moves on
        to a close frame that came in the same read.
        """
        events = self.ws.events()
        while True:
            with self.lock:
                event = next(events, None)
            if event is None:
                return
            self._handle_event(event)

    def _handle_event(self, event: Event) -> None:
        if isinstance(event, Message):
            try:
                self._handle_data(event)
            except CloseError as exc:
                self.close(exc.code, exc.reason)
            except Exception:
                logger.exception("%r: error while handling a message", self)
                self.close(CloseReason.INTERNAL_ERROR, "internal server error")
        elif isinstance(event, Ping):
            self.send_event(event.response())
        elif isinstance(event, Pong):
            pass
        elif isinstance(event, CloseConnection):
            self._handle_close_frame(event)

    def _handle_data(self, event: Message[Any]) -> None:
        if self.close_deadline is not None:
            return  # We have sent a close frame: data is dropped (RFC 6455 1.4).
        data = event.data
        if isinstance(data, str) and not data.isascii():
            self._message_size += len(data.encode("utf-8", "surrogatepass"))
        else:
            self._message_size += len(data)
        limit = self.options.max_message_size
        if self._message_size > limit:
            self._message.clear()
            raise MessageTooBig(f"message is larger than {limit} bytes")
        if not event.message_finished:
            self._message.append(data)
            return
        if self._message:
            self._message.append(data)
            if isinstance(event, TextMessage):
                data = "".join(self._message)  # type: ignore[arg-type]
            else:
                data = b"".join(self._message)  # type: ignore[arg-type]
            self._message.clear()
        self._message_size = 0
        self.endpoint.handle_message(self, data)

    def _handle_close_frame(self, event: CloseConnection) -> None:
        state = self.ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The client started the closing handshake: answer it.
            logger.debug("%r: client closed with %s", self, event.code)
            self.send_event(event.response())
        elif state is ConnectionState.OPEN:
            # wsproto found a protocol error (its ParseFailed): report it and
            # stop; the client's reply could not be parsed anyway.
            logger.info("%r: closing with %d: %s", self, event.code, event.reason or "")
            self.close(event.code, event.reason or "")
            with self.lock:
                self.ws.receive_data(None)  # Nothing more will be parsed.
                list(self.ws.events())

    def _wait_for_room(self) -> None:
        """Backpressure: let the client read its replies before we read more."""
        if self._queued_bytes <= HIGH_WATER:
            return
        with self._drained:
            while (
                self._queued_bytes > HIGH_WATER
                and not self._aborted
                and not self._write_failed
            ):
                self._drained.wait(1.0)

    # ------------------------------------------------------------ writing

    def send_event(self, event: Event) -> bool:
        """Send a wsproto event; False if the connection no longer takes any."""
        with self.lock:
            if self.ws.state is not ConnectionState.OPEN and not (
                isinstance(event, CloseConnection)
                and self.ws.state is ConnectionState.REMOTE_CLOSING
            ):
                return False
            self._write(self.ws.send(event))
            return True

    def send_text(self, text: str) -> bool:
        """Send one text message to this client alone."""
        return self.send_event(TextMessage(data=text))

    def send_bytes(self, data: bytes) -> bool:
        """Send one binary message to this client alone."""
        return self.send_event(BytesMessage(data=data))

    def send_snapshot(self, version: int, frame: bytes, text: str) -> None:
        """Offer snapshot ``version`` (framed once for everyone as ``frame``).

        Older versions than one already offered are ignored. If the socket is
        still busy with earlier data, the snapshot waits in the outbox and a
        newer one replaces it: a slow client skips snapshots but never falls
        behind. A compressed connection frames ``text`` itself, when it is
        about to be sent.
        """
        with self.lock:
            if version <= self.snapshot_version:
                return
            if self.ws.state is not ConnectionState.OPEN:
                return
            self.snapshot_version = version
            if self._current is not None or self._queue:
                self._snapshot = (frame, text)
                return
            if self.compressed:
                frame = self.ws.send(TextMessage(data=text))
            self._write(frame)

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (thread-safe; no-op once started).

        The reader keeps reading until the client answers; the writer thread
        aborts the connection if that takes longer than ``close_timeout``.
        """
        with self.lock:
            if self.ws.state is not ConnectionState.OPEN:
                return
            self._snapshot = None
            self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
            self.close_deadline = time.monotonic() + self.options.close_timeout
        self.writer.watch_deadline(self)

    def abort(self, why: str) -> None:
        """Drop the TCP connection now, from any thread."""
        with self.lock:
            if self._aborted:
                return
            self._aborted = True
            self._drained.notify_all()
        logger.info("%r: dropping the connection: %s", self, why)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, data: bytes | bytearray) -> None:
        """Send ``data`` after what is queued; never blocks. Holds ``lock``."""
        if self._aborted or self._write_failed:
            return
        if self._current is not None or self._queue or self._snapshot:
            self._queue.append(bytes(data))
            self._queued_bytes += len(data)
            return
        try:
            sent = self.sock.send(data, _send_flags)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail_write(exc)
            return
        if self.tracer is not None:
            self.tracer.sent(data[:sent])
        if sent < len(data):
            self._current = memoryview(bytes(data))[sent:]
            self._queued_bytes += len(self._current)
            self.stalled_since = time.monotonic()
            self.writer.watch(self)

    def flush(self) -> bool:
        """Send what the socket takes now; True once the outbox is empty.

        Called by the writer thread when the socket is writable.
        """
        with self.lock:
            while True:
                if self._aborted or self._write_failed:
                    self._drop_outbox()
                    return True
                if self._current is None and not self._next_chunk():
                    self.stalled_since = None
                    self._drained.notify_all()
                    return True
                assert self._current is not None
                try:
                    sent = self.sock.send(self._current, _send_flags)
                except BlockingIOError:
                    return False
                except OSError as exc:
                    self._fail_write(exc)
                    continue
                if self.tracer is not None:
                    self.tracer.sent(self._current[:sent])
                self.stalled_since = time.monotonic()
                self._queued_bytes -= sent
                if sent == len(self._current):
                    self._current = None
                    if self._queued_bytes <= HIGH_WATER:
                        self._drained.notify_all()
                else:
                    self._current = self._current[sent:]

    def _next_chunk(self) -> bool:
        """Move the next frame of the outbox into ``_current``."""
        if self._queue:
            self._current = memoryview(self._queue.popleft())
        elif self._snapshot is not None:
            frame, text = self._snapshot
            self._snapshot = None
            if self.compressed:
                frame = bytes(self.ws.send(TextMessage(data=text)))
            self._current = memoryview(frame)
            self._queued_bytes += len(frame)
        else:
            return False
        return True

    def _fail_write(self, exc: OSError) -> None:
        logger.debug("%r: write failed: %s", self, exc)
        self._write_failed = True
        self._drop_outbox()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _drop_outbox(self) -> None:
        self._current = None
        self._queue.clear()
        self._snapshot = None
        self._queued_bytes = 0
        self.stalled_since = None
        self._drained.notify_all()

    @property
    def outbox_empty(self) -> bool:
        return self._current is None and not self._queue and self._snapshot is None

    # ------------------------------------------------------------ closing

    def _finish(self) -> None:
        """Flush what is left, then close TCP first, as RFC 6455 7.1.1 asks."""
        deadline = time.monotonic() + self.options.close_timeout
        with self._drained:
            while not (self.outbox_empty or self._aborted or self._write_failed):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._drained.wait(remaining)
            self._aborted = True  # No more writes from any thread.
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self._drain_until_eof(min(LINGER_TIMEOUT, self.options.close_timeout))
        except OSError:
            pass
        self.writer.forget(self)
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
