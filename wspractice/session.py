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
import os
import socket
import struct
import threading
import time
import uuid
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

from .errors import CloseError, MessageTooBig, PolicyViolation
from .gate import NO_GATE, Gate, NoGate
from .trace import take as take_tracer

if TYPE_CHECKING:
    from .config import Options
    from .ratelimit import RateLimiter
    from .tls import TLSLayer
    from .writer import Writer

logger = logging.getLogger(__name__)

#: How much to ask of the socket per read while data keeps coming.
RECV_SIZE = 64 * 1024

#: How much to ask for when the last read was not full. Python allocates the
#: whole buffer before the read blocks, so this is what an idle connection
#: holds; a cursor update needs a few dozen bytes.
IDLE_RECV_SIZE = 1024

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

    #: Whether the endpoint broadcasts, so its readers take turns with the
    #: broadcast rounds at the fan-out gate.
    uses_gate: bool

    def handle_connection(self, session: Session) -> None: ...

    def handle_message(self, session: Session, message: str | bytes) -> None: ...

    def handle_close(self, session: Session) -> None: ...


class _Guard:
    """``with session.guard:`` takes the session's lock, and on release runs
    the work that other threads left because they found it taken.

    The broadcast and the writer thread never wait for a connection's lock:
    a reader may hold it while wsproto parses a frame, and waiting for every
    busy connection in turn would make one slow step everyone's delay.
    """

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def __enter__(self) -> None:
        self._session.lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        session = self._session
        session.lock.release()
        if session._mailbox is not None or session._flush_wanted:
            session.run_deferred()


class Session:
    """A WebSocket connection after the handshake."""

    # Thousands of these may be alive at once: slots instead of a __dict__
    # save about 1.5 KiB each.
    __slots__ = (
        "id",
        "sock",
        "ws",
        "endpoint",
        "options",
        "writer",
        "peer",
        "username",
        "compressed",
        "tls",
        "rate_limiter",
        "bad_messages",
        "lock",
        "guard",
        "snapshot_version",
        "stalled_since",
        "close_deadline",
        "last_received",
        "tracer",
        "_inflate_step",
        "_max_size",
        "_max_fragments",
        "_mailbox",
        "_mailbox_lock",
        "_flush_wanted",
        "_drained",
        "_current",
        "_queue",
        "_sealed",
        "_queued_bytes",
        "_snapshot",
        "_aborted",
        "_finished",
        "_write_failed",
        "_message",
        "_message_size",
        "_message_frames",
        "_ping_payload",
        "_gate",
        "_ping_sent_at",
        "__weakref__",
    )

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
        tls: TLSLayer | None = None,
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
        #: TLS, when the server serves wss:// (bytes are then per connection).
        self.tls = tls
        #: Bytes of compressed input fed to wsproto at a time (see _feed).
        self._inflate_step = max(1024, options.max_message_size // 1024)
        self._max_size = options.max_message_size
        #: The fan-out gate, for endpoints that broadcast (see gate.py); the
        #: others need no turn-taking with broadcast rounds.
        self._gate: Gate | NoGate = writer.gate if endpoint.uses_gate else NO_GATE
        self._max_fragments = options.max_fragments
        #: The presence app's message budget, if it limits the rate.
        self.rate_limiter: RateLimiter | None = None
        #: Bad messages in a row; endpoints may use it to end a connection.
        self.bad_messages = 0

        #: Guards ``ws`` and the outbox. Take it with ``with self.guard:``,
        #: which also does the work other threads left on release.
        self.lock = threading.Lock()
        self.guard = _Guard(self)
        # Work left by threads that found the lock taken (see _Guard): the
        # newest snapshot offered, and whether the writer wanted a flush.
        self._mailbox: tuple[int, bytes, str] | None = None
        self._mailbox_lock = threading.Lock()
        self._flush_wanted = False
        #: Made on first use: most connections never wait for the outbox.
        self._drained: threading.Condition | None = None
        # The outbox: the frame being written, then frames in order, then the
        # latest snapshot (which replaces any older one not yet started).
        self._current: memoryview | None = None
        self._queue: list[bytes] = []
        #: Records TLS made on its own, already encrypted.
        self._sealed: list[bytes] = []
        self._queued_bytes = 0
        self._snapshot: tuple[bytes, str] | None = None
        #: Version of the newest snapshot accepted for sending.
        self.snapshot_version = -1
        #: Monotonic time since which the socket has refused our data.
        self.stalled_since: float | None = None
        #: Monotonic time by which the close handshake must be over.
        self.close_deadline: float | None = None
        #: Set by :meth:`abort`: the connection is being dropped.
        self._aborted = False
        #: Set once the reader is done: nothing more may be written.
        self._finished = False
        self._write_failed = False
        self._message: list[str | bytes] = []
        self._message_size = 0
        self._message_frames = 0
        #: Monotonic time of the last read from the client.
        self.last_received = time.monotonic()
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
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
        if self.options.ping_interval > 0:
            self.writer.call_at(
                self.last_received + self.options.ping_interval, self._keepalive
            )
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
        with self._gate:
            self._handle_events()  # Frames that came with the handshake.
        size = IDLE_RECV_SIZE
        while self.ws.state is not ConnectionState.CLOSED and not self._aborted:
            try:
                data = self.sock.recv(size)
                size = RECV_SIZE if len(data) == size else IDLE_RECV_SIZE
            except OSError as exc:
                logger.debug("%r: read failed: %s", self, exc)
                data = b""
            self.last_received = time.monotonic()
            eof = not data
            if self.tls is not None:
                with self._gate, self.guard:
                    data = self.tls.feed(data)
                    eof = eof or self.tls.closed
                    self._write_sealed(self.tls.outgoing())
            if self.tracer is not None and (data or eof):
                self.tracer.received(data)
            with self._gate:
                self._feed(data, eof)
            self._wait_for_room()

    def _feed(self, data: bytes, eof: bool) -> None:
        """Feed wsproto what was read, and handle what it makes of it.

        With permessage-deflate, wsproto inflates each chunk it is fed in one
        go, and deflate turns a kilobyte into up to a megabyte. Feeding small
        slices lets the size limit stop a decompression bomb after about one
        slice's worth instead of a whole read's.

        This is the hottest path of the server, run for every message of
        every user, so it takes the connection's lock directly and runs the
        work other threads left (see :class:`_Guard`) once, at the end.
        """
        ws, lock = self.ws, self.lock
        step = self._inflate_step if self.compressed else len(data)
        for start in range(0, len(data), step or 1):
            if ws.state is ConnectionState.CLOSED:
                break
            with lock:
                ws.receive_data(data[start : start + step])
            self._handle_events()
        if eof and ws.state is not ConnectionState.CLOSED:
            with lock:
                ws.receive_data(None)
            self._handle_events()
        if self._mailbox is not None or self._flush_wanted:
            self.run_deferred()

    def _handle_events(self) -> None:
        """Handle each event as wsproto parses it.

        One at a time, so that a message is answered before wsproto moves on
        to a close frame that came in the same read.
        """
        events = self.ws.events()
        lock, pause = self.lock, self._gate.pause
        while True:
            with lock:
                event = next(events, None)
            if event is None:
                return
            if isinstance(event, Message):
                self._handle_message_event(event)
            else:
                self._handle_event(event)
            pause()  # A broadcast waiting goes first.

    def _handle_event(self, event: Event) -> None:
        """A control event (messages go to _handle_message_event)."""
        if self._aborted:
            return  # Dropped: nothing the client sends counts any more.
        if isinstance(event, Ping):
            self.send_event(event.response())
        elif isinstance(event, Pong):
            if event.payload == self._ping_payload:
                self._ping_payload = None
        elif isinstance(event, CloseConnection):
            self._handle_close_frame(event)

    def _handle_message_event(self, event: Message[Any]) -> None:
        if self._aborted:
            return  # Dropped: nothing the client sends counts any more.
        try:
            self._handle_data(event)
        except CloseError as exc:
            self.close(exc.code, exc.reason)
        except Exception:
            logger.exception("%r: error while handling a message", self)
            self.close(CloseReason.INTERNAL_ERROR, "internal server error")

    def _handle_data(self, event: Message[Any]) -> None:
        if self.close_deadline is not None:
            return  # We have sent a close frame: data is dropped (RFC 6455 1.4).
        data = event.data
        if isinstance(data, str) and not data.isascii():
            self._message_size += len(data.encode("utf-8", "surrogatepass"))
        else:
            self._message_size += len(data)
        if self._message_size > self._max_size:
            self._message.clear()
            raise MessageTooBig(f"message is larger than {self._max_size} bytes")
        if event.frame_finished:
            self._message_frames += 1
            if self._message_frames > self._max_fragments:
                self._message.clear()
                raise PolicyViolation(
                    f"message split into more than {self._max_fragments} fragments"
                )
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
        self._message_frames = 0
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
            with self.guard:
                self.ws.receive_data(None)  # Nothing more will be parsed.
                list(self.ws.events())

    def _wait_for_room(self) -> None:
        """Backpressure: let the client read its replies before we read more."""
        if self._queued_bytes <= HIGH_WATER:
            return
        with self.guard:
            while (
                self._queued_bytes > HIGH_WATER
                and not self._aborted
                and not self._write_failed
            ):
                self._wait_for_drain(1.0)

    def _keepalive(self, now: float) -> float | None:
        """Ping a client we have not heard from; close if it never answers.

        Runs in the writer thread; returns when it wants to run again.
        """
        if self._aborted or self.close_deadline is not None:
            return None
        options = self.options
        if self._ping_payload is not None:
            deadline = self._ping_sent_at + options.ping_timeout
            if now < deadline:
                return deadline
            self.close(
                CloseReason.INTERNAL_ERROR,
                f"keepalive ping timeout: no pong within {options.ping_timeout:g} s",
            )
            return None
        due = self.last_received + options.ping_interval
        if now < due:
            return due
        with self.guard:
            if self.ws.state is not ConnectionState.OPEN:
                return None
            self._ping_payload = os.urandom(4)
            self._ping_sent_at = now
            self._write(self.ws.send(Ping(payload=self._ping_payload)))
        return now + options.ping_timeout

    # ------------------------------------------------------------ writing

    def send_event(self, event: Event) -> bool:
        """Send a wsproto event; False if the connection no longer takes any."""
        with self.guard:
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

        Never waits for the connection's lock: the broadcast goes on to the
        next connection, and whichever thread holds the lock sends the
        snapshot when it lets go (see :class:`_Guard`).
        """
        if version <= self.snapshot_version:
            return
        if self.lock.acquire(blocking=False):  # The common case: send it now.
            try:
                self._offer_snapshot(version, frame, text)
            finally:
                self.lock.release()
            if self._mailbox is not None or self._flush_wanted:
                self.run_deferred()
            return
        with self._mailbox_lock:
            if self._mailbox is None or self._mailbox[0] < version:
                self._mailbox = (version, frame, text)
        self.run_deferred()

    def _offer_snapshot(self, version: int, frame: bytes, text: str) -> None:
        """Send a snapshot now, or keep it as the latest pending. Holds ``lock``.

        Older versions than one already offered are ignored. If the socket is
        still busy with earlier data, the snapshot waits in the outbox and a
        newer one replaces it: a slow client skips snapshots but never falls
        behind. A compressed connection frames ``text`` itself, when it is
        about to be sent.
        """
        if version <= self.snapshot_version:
            return
        if self.ws.state is not ConnectionState.OPEN:
            return
        self.snapshot_version = version
        if self._busy():
            self._snapshot = (frame, text)
            return
        if self._aborted or self._finished or self._write_failed:
            return
        if self.compressed:
            frame = self.ws.send(TextMessage(data=text))
        self._send_now(self._seal(frame))  # _write, minus checks made above.

    def run_deferred(self) -> None:
        """Do the work other threads left, unless another thread holds the lock.

        Whoever holds the lock runs this after releasing it, so work left
        while it was held is never forgotten.
        """
        while self._mailbox is not None or self._flush_wanted:
            if not self.lock.acquire(blocking=False):
                return  # The holder will run this after it releases.
            try:
                with self._mailbox_lock:
                    mail, self._mailbox = self._mailbox, None
                if mail is not None:
                    self._offer_snapshot(*mail)
                if self._flush_wanted:
                    self._flush_wanted = False
                    if not self._flush_locked():
                        self.writer.watch(self)
            finally:
                self.lock.release()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake (thread-safe; no-op once started).

        The reader keeps reading until the client answers; the writer thread
        aborts the connection if that takes longer than ``close_timeout``.
        """
        with self.guard:
            if self.ws.state is not ConnectionState.OPEN:
                return
            self._snapshot = None
            self._write(self.ws.send(CloseConnection(code=code, reason=reason)))
            self.close_deadline = time.monotonic() + self.options.close_timeout
        self.writer.watch_deadline(self)

    @property
    def deadline(self) -> float | None:
        """When the client must have finished the closing handshake (writer)."""
        return self.close_deadline

    def expire(self) -> None:
        """The closing handshake ran past its deadline (writer thread)."""
        self.abort("the client did not finish the closing handshake")

    def abort(self, why: str) -> None:
        """Drop the TCP connection now, from any thread.

        Whatever the kernel still holds for the client is discarded (the
        close sends a reset), so a client that stopped reading costs no
        memory once it is dropped.
        """
        with self.guard:
            if self._aborted or self._finished:
                return
            self._aborted = True
            self._drop_outbox()
        logger.info("%r: dropping the connection: %s", self, why)
        try:
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.sock.shutdown(socket.SHUT_RDWR)  # Wakes the reader.
        except OSError:
            pass

    def _busy(self) -> bool:
        """Whether earlier data still waits in the outbox. Holds ``lock``."""
        return (
            self._current is not None
            or bool(self._queue)
            or self._snapshot is not None
            or bool(self._sealed)
        )

    def _write(self, data: bytes | bytearray) -> None:
        """Send ``data`` after what is queued; never blocks. Holds ``lock``."""
        if self._aborted or self._finished or self._write_failed:
            return
        if self._busy():
            self._queue.append(bytes(data))
            self._queued_bytes += len(data)
            return
        self._send_now(self._seal(data))

    def _write_sealed(self, wire: bytes) -> None:
        """Send bytes TLS produced on its own, in order. Holds ``lock``."""
        if not wire or self._aborted or self._finished or self._write_failed:
            return
        if self._busy():
            self._sealed.append(wire)
            self._queued_bytes += len(wire)
            return
        self._send_now(wire)

    def _seal(self, data: bytes | bytearray) -> bytes | bytearray:
        """The bytes for the wire: ``data``, encrypted if TLS is on.

        Data is encrypted as it leaves the outbox, never before, so that TLS
        records go out in the order they were made; ``--trace`` logs it here,
        in the same order. Holds ``lock``.
        """
        if self.tracer is not None:
            self.tracer.sent(data)
        return data if self.tls is None else self.tls.encrypt(data)

    def _send_now(self, wire: bytes | bytearray) -> None:
        try:
            sent = self.sock.send(wire, _send_flags)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail_write(exc)
            return
        if sent < len(wire):
            self._current = memoryview(bytes(wire))[sent:]
            self._queued_bytes += len(self._current)
            self.stalled_since = time.monotonic()
            self.writer.watch(self)

    def flush(self) -> bool:
        """Send what the socket takes now; True once the writer may stop watching.

        Called by the writer thread when the socket is writable. If another
        thread holds the lock, the flush is left to it (and it asks the writer
        to watch again if the socket fills up).
        """
        if not self.lock.acquire(blocking=False):
            self._flush_wanted = True
            self.run_deferred()
            return True
        try:
            return self._flush_locked()
        finally:
            self.lock.release()
            self.run_deferred()

    def _flush_locked(self) -> bool:
        """The flush proper; True once the outbox is empty. Holds ``lock``."""
        while True:
            if self._aborted or self._finished or self._write_failed:
                self._drop_outbox()
                return True
            if self._current is None and not self._next_chunk():
                self.stalled_since = None
                self._notify_drained()
                return True
            assert self._current is not None
            try:
                sent = self.sock.send(self._current, _send_flags)
            except BlockingIOError:
                return False
            except OSError as exc:
                self._fail_write(exc)
                continue
            self.stalled_since = time.monotonic()
            self._queued_bytes -= sent
            if sent == len(self._current):
                self._current = None
                if self._queued_bytes <= HIGH_WATER:
                    self._notify_drained()
            else:
                self._current = self._current[sent:]

    def _next_chunk(self) -> bool:
        """Move the next frame of the outbox, sealed, into ``_current``."""
        wire: bytes | bytearray
        if self._sealed:
            wire = b"".join(self._sealed)
            self._sealed.clear()
            self._queued_bytes -= len(wire)
        elif self._queue:
            data = self._queue.pop(0)
            self._queued_bytes -= len(data)
            wire = self._seal(data)
        elif self._snapshot is not None:
            frame, text = self._snapshot
            self._snapshot = None
            if self.compressed:
                frame = bytes(self.ws.send(TextMessage(data=text)))
            wire = self._seal(frame)
        else:
            return False
        self._current = memoryview(wire)
        self._queued_bytes += len(wire)
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
        self._sealed.clear()
        self._snapshot = None
        self._queued_bytes = 0
        self.stalled_since = None
        self._notify_drained()

    def _wait_for_drain(self, timeout: float) -> None:
        """Wait until the outbox shrinks or ``timeout`` passes. Holds ``lock``."""
        if self._drained is None:
            self._drained = threading.Condition(self.lock)
        self._drained.wait(timeout)

    def _notify_drained(self) -> None:
        """Wake the reader if it waits for the outbox. Holds ``lock``."""
        if self._drained is not None:
            self._drained.notify_all()

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting in the outbox (the latest snapshot included)."""
        snapshot = len(self._snapshot[0]) if self._snapshot is not None else 0
        current = len(self._current) if self._current is not None else 0
        queued = sum(map(len, self._queue)) + sum(map(len, self._sealed))
        return current + queued + snapshot

    @property
    def outbox_empty(self) -> bool:
        return not self._busy()

    # ------------------------------------------------------------ closing

    def _finish(self) -> None:
        """Flush what is left, then close TCP first, as RFC 6455 7.1.1 asks."""
        deadline = time.monotonic() + self.options.close_timeout
        with self.guard:
            while not (self.outbox_empty or self._aborted or self._write_failed):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wait_for_drain(remaining)
            self._finished = True  # No more writes from any thread.
            dropped = self._aborted or self._write_failed
        if not dropped:
            try:
                if self.tls is not None:
                    with self.guard:
                        alert = self.tls.close_notify()
                    self.sock.send(alert, _send_flags)
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
