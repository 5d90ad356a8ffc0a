"""The rules of one open WebSocket connection, with no I/O.

:class:`Protocol` wraps wsproto's :class:`~wsproto.connection.Connection`
and adds what a server needs on top of RFC 6455's framing: limits, keepalive,
the closing handshake, and an outbox that decides what to send next. It takes
bytes and the time in, and hands out what happened:

- :meth:`Protocol.receive_data` / :meth:`Protocol.receive_eof` take what the
  socket read; :meth:`Protocol.next_message` then returns the application's
  messages one at a time, answering pings and close frames on the way;
- :meth:`Protocol.send_text`, :meth:`Protocol.send_bytes`,
  :meth:`Protocol.send_broadcast` and :meth:`Protocol.close` queue frames;
  :meth:`Protocol.data_to_send` says which bytes to write next and
  :meth:`Protocol.data_sent` how many the socket took;
- :meth:`Protocol.deadline` says when :meth:`Protocol.timer` must run next
  (a keepalive ping is due, a pong or the client's close frame is late, the
  socket has taken nothing for too long); :attr:`Protocol.abort_reason` says
  when the connection must be dropped without further ado.

The I/O shell (:mod:`wspractice.connection`) moves the bytes and holds the
lock; this module decides. It is driven in the tests with byte strings and a
fake clock, as websockets drives its own protocol.

Rule: this module imports neither ``socket``, ``threading``, ``select`` nor
``ssl``, and never reads a clock: every call that needs the time takes it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason

from .config import Options

logger = logging.getLogger(__name__)

#: Reading pauses while more than this many bytes wait to be sent: a client
#: that sends faster than it reads its replies (e.g. on /echo) is slowed down
#: instead of filling the server's memory.
HIGH_WATER = 64 * 1024

#: Turns a frame into the bytes for the wire (encryption, tracing); applied
#: exactly once to every frame, in the order the frames leave.
Seal = Callable[[bytes], bytes]


class Broadcast:
    """A message offered to many connections, numbered by ``version``.

    ``frame`` is the message framed once for every connection that takes it
    as it is, or None when each connection frames :meth:`text` itself. A
    connection keeps at most one broadcast waiting: when a newer one comes
    before the waiting one has left, :meth:`merged` says what waits instead.
    """

    __slots__ = ("version", "frame")

    def __init__(self, version: int, frame: bytes | None) -> None:
        self.version = version
        self.frame = frame

    def text(self) -> str:
        """The message, for a connection that frames it itself."""
        raise NotImplementedError

    def merged(self, newer: Broadcast) -> Broadcast:
        """What waits when ``newer`` comes before this one has left."""
        raise NotImplementedError


class Snapshot(Broadcast):
    """A broadcast that makes older ones useless: only the newest waits."""

    __slots__ = ("_text",)

    def __init__(self, version: int, text: str, frame: bytes | None = None) -> None:
        super().__init__(version, frame)
        self._text = text

    def text(self) -> str:
        return self._text

    def merged(self, newer: Broadcast) -> Broadcast:
        return newer


class Protocol:
    """One WebSocket connection's rules, from the server's side."""

    __slots__ = (
        "ws",
        "compressed",
        "abort_reason",
        "close_code",
        "messages_received",
        "bytes_sent",
        "broadcasts_sent",
        "broadcasts_merged",
        "_options",
        "_seal",
        "_events",
        "_input",
        "_eof",
        "_inflate_step",
        "_parts",
        "_message_size",
        "_message_frames",
        "_queue",
        "_queued_bytes",
        "_wire",
        "_broadcast",
        "_broadcast_version",
        "_stalled_since",
        "_last_received",
        "_ping_payload",
        "_ping_sent_at",
        "_pings",
        "_close_deadline",
    )

    def __init__(
        self,
        options: Options,
        now: float,
        *,
        extensions: Sequence[Extension] = (),
        seal: Seal | None = None,
    ) -> None:
        self.ws = WSConnection(ConnectionType.SERVER, list(extensions))
        #: permessage-deflate is in force: frames are compressed per connection.
        self.compressed = bool(extensions)
        #: Why the connection must be dropped now (the shell resets it); None
        #: while it may go on.
        self.abort_reason: str | None = None
        #: The code of the close frame we sent, once we sent one (when the
        #: client closed first, the code we echoed).
        self.close_code: int | None = None
        # Totals for the metrics: written under the caller's lock, read by
        # a scrape without it (a read may lag, never go back).
        #: Whole messages handed to the application.
        self.messages_received = 0
        #: Bytes written to the socket (TLS records included).
        self.bytes_sent = 0
        #: Broadcasts written, and those replaced by a newer one unsent.
        self.broadcasts_sent = 0
        self.broadcasts_merged = 0
        self._options = options
        self._seal = seal
        self._events: Any = None  # wsproto's event generator, while it has more.
        # Input not yet given to wsproto (see next_message) and EOF to come.
        self._input = b""
        self._eof = False
        #: With compression, wsproto inflates whatever it is fed at once;
        #: feeding small slices lets the size limit stop a decompression
        #: bomb after about one slice's worth.
        self._inflate_step = max(1024, options.max_message_size // 1024)
        # The message being assembled from its fragments.
        self._parts: list[str | bytes] = []
        self._message_size = 0
        self._message_frames = 0
        # The outbox: frames in order (already sealed), then one broadcast;
        # the chunk being written is ``_wire``.
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wire: memoryview | None = None
        self._broadcast: Broadcast | None = None
        self._broadcast_version = -1
        self._stalled_since: float | None = None
        # Keepalive and closing.
        self._last_received = now
        self._ping_payload: bytes | None = None
        self._ping_sent_at = 0.0
        self._pings = 0
        self._close_deadline: float | None = None

    # ------------------------------------------------------------ state

    @property
    def open(self) -> bool:
        """Messages may still be sent (no close frame sent or received)."""
        return self.ws.state is ConnectionState.OPEN

    @property
    def closed(self) -> bool:
        """Nothing more will be read: the closing handshake is over, the
        client went away, or the connection is being dropped."""
        return self.ws.state is ConnectionState.CLOSED or self.abort_reason is not None

    @property
    def reading_paused(self) -> bool:
        """Backpressure: read no more until the client takes what is queued."""
        return self._queued_bytes > HIGH_WATER and self.abort_reason is None

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting to be sent (a waiting broadcast counts for one)."""
        return self._queued_bytes + (self._broadcast is not None)

    # ------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: float) -> None:
        """Take bytes read from the client."""
        self._last_received = now
        if self.closed:
            return  # A dropped or finished connection reads nothing more.
        if self._input:
            self._input += data
        else:
            self._input = data

    def receive_eof(self, now: float) -> None:
        """The client closed its side of TCP (or the read failed)."""
        self._last_received = now
        self._eof = True

    def next_message(self) -> str | bytes | None:
        """The next whole message from the client; None until more is read.

        Control frames met on the way are handled here: a ping is answered,
        a close frame is answered (or ends our own closing handshake), and a
        protocol error closes the connection with wsproto's code. Messages
        are returned one at a time, so that the application can answer one
        before a close frame that came in the same read is handled.
        """
        while True:
            if self.abort_reason is not None:
                return None  # Dropped: nothing the client sent counts any more.
            if self._events is None:
                if not self._feed():
                    return None
                self._events = self.ws.events()
            event = next(self._events, None)
            if event is None:
                self._events = None
                continue
            if isinstance(event, Message):
                message = self._assemble(event)
                if message is not None:
                    self.messages_received += 1
                    return message
            else:
                self._handle_control(event)

    def _feed(self) -> bool:
        """Give wsproto the next input; False if there is none."""
        ws = self.ws
        if ws.state is ConnectionState.CLOSED:
            self._input = b""
            return False
        if self._input:
            data = self._input
            if self.compressed and len(data) > self._inflate_step:
                data, self._input = (
                    data[: self._inflate_step],
                    data[self._inflate_step :],
                )
            else:
                self._input = b""
            ws.receive_data(data)
            return True
        if self._eof:
            self._eof = False
            ws.receive_data(None)  # wsproto reports 1006 and is CLOSED.
            return True
        return False

    def _assemble(self, event: Message[Any]) -> str | bytes | None:
        """Add a frame's data to the message; the whole message once it ends."""
        if not self.open:
            return None  # We have sent a close frame: data is dropped (RFC 6455 1.4).
        data = event.data
        if isinstance(data, str) and not data.isascii():
            self._message_size += len(data.encode("utf-8", "surrogatepass"))
        else:
            self._message_size += len(data)
        limit = self._options.max_message_size
        if self._message_size > limit:
            self._discard_message()
            self.close(
                CloseReason.MESSAGE_TOO_BIG,
                f"message is larger than {limit} bytes",
                self._last_received,
            )
            return None
        if event.frame_finished:
            self._message_frames += 1
            fragments = self._options.max_fragments
            if self._message_frames > fragments:
                self._discard_message()
                self.close(
                    CloseReason.POLICY_VIOLATION,
                    f"message split into more than {fragments} fragments",
                    self._last_received,
                )
                return None
        if not event.message_finished:
            self._parts.append(data)
            return None
        if self._parts:
            self._parts.append(data)
            if isinstance(data, str):
                data = "".join(self._parts)  # type: ignore[arg-type]
            else:
                data = b"".join(self._parts)  # type: ignore[arg-type]
        self._discard_message()
        return data  # type: ignore[no-any-return]

    def _discard_message(self) -> None:
        self._parts.clear()
        self._message_size = 0
        self._message_frames = 0

    def _handle_control(self, event: Event) -> None:
        if isinstance(event, Ping):
            if self.open:
                self._send_frame(self.ws.send(event.response()))
        elif isinstance(event, Pong):
            if event.payload == self._ping_payload:
                self._ping_payload = None
        elif isinstance(event, CloseConnection):
            state = self.ws.state
            if state is ConnectionState.REMOTE_CLOSING:
                # The client started the closing handshake: answer it.
                logger.debug("the client closed with %s", event.code)
                self.close_code = event.code
                self._send_frame(self.ws.send(event.response()))
            elif state is ConnectionState.OPEN:
                # wsproto could not parse what the client sent (its
                # ParseFailed): say why, and parse nothing more; the client's
                # reply could not be parsed anyway.
                logger.info("closing with %d: %s", event.code, event.reason or "")
                self.close(event.code, event.reason or "", self._last_received)
                self.ws.receive_data(None)
                self._events = None
                self._input = b""
            # Otherwise the client answered our close frame, or went away:
            # wsproto is CLOSED and nothing more is read.

    # ------------------------------------------------------------ output

    def send_text(self, text: str) -> bool:
        """Queue a text message; False if the connection takes no more."""
        if not self.open or self.abort_reason is not None:
            return False
        self._send_frame(self.ws.send(TextMessage(data=text)))
        return True

    def send_bytes(self, data: bytes) -> bool:
        """Queue a binary message; False if the connection takes no more."""
        if not self.open or self.abort_reason is not None:
            return False
        self._send_frame(self.ws.send(BytesMessage(data=data)))
        return True

    def send_broadcast(self, broadcast: Broadcast) -> None:
        """Offer a broadcast; it goes out after this connection's own frames.

        Broadcasts are numbered so that none goes backwards. At most one
        waits to be sent: a newer one is merged into it (a snapshot replaces
        it), so a slow client skips intermediate states but never falls
        behind. A compressed connection frames the text itself when it is
        about to be sent.
        """
        if broadcast.version <= self._broadcast_version or not self.open:
            return
        self._broadcast_version = broadcast.version
        waiting = self._broadcast
        if waiting is None:
            self._broadcast = broadcast
        else:
            self._broadcast = waiting.merged(broadcast)
            self.broadcasts_merged += 1

    def send_sealed(self, data: bytes) -> None:
        """Queue bytes that are ready for the wire (TLS records made on reading)."""
        if data and self.abort_reason is None:
            self._queue.append(data)
            self._queued_bytes += len(data)

    def close(self, code: int, reason: str, now: float) -> None:
        """Start the closing handshake with ``code`` (no-op once started).

        Reading goes on until the client answers; :meth:`timer` gives up on
        it ``close_timeout`` seconds after ``now``.
        """
        if not self.open:
            return
        self._broadcast = None
        self.close_code = code
        self._send_frame(self.ws.send(CloseConnection(code=code, reason=reason)))
        self._close_deadline = now + self._options.close_timeout

    def abort(self, reason: str) -> None:
        """Give up on the connection: nothing more is sent or read."""
        if self.abort_reason is None:
            self.abort_reason = reason
            self._drop_outbox()

    def _send_frame(self, frame: bytes) -> None:
        if self._seal is not None:
            frame = self._seal(frame)
        self._queue.append(frame)
        self._queued_bytes += len(frame)

    def data_to_send(self) -> memoryview | None:
        """The bytes to write next, or None when there are none.

        The same bytes are returned until :meth:`data_sent` reports them
        written. Own frames go first, in order, then the waiting broadcast.
        """
        if self._wire is not None:
            return self._wire
        if self.abort_reason is not None:
            return None
        if self._queue:
            data = self._queue.popleft()
            if self._queue:  # Several small frames: one write.
                data = b"".join([data, *self._queue])
                self._queue.clear()
        elif self._broadcast is not None:
            broadcast, self._broadcast = self._broadcast, None
            frame = broadcast.frame
            if frame is None or self.compressed:
                frame = bytes(self.ws.send(TextMessage(data=broadcast.text())))
            if self._seal is not None:
                frame = self._seal(frame)
            data = frame
            self._queued_bytes += len(data)
            self.broadcasts_sent += 1
        else:
            return None
        self._wire = memoryview(data)
        return self._wire

    def data_sent(self, size: int, now: float) -> None:
        """``size`` bytes of :meth:`data_to_send` went out at ``now``."""
        wire = self._wire
        if wire is None:
            return
        self._queued_bytes -= size
        self.bytes_sent += size
        if size == len(wire):
            self._wire = None
            self._stalled_since = None
            return
        self._wire = wire[size:]
        if size or self._stalled_since is None:
            # The socket is full: measure how long it takes nothing.
            self._stalled_since = now

    def _drop_outbox(self) -> None:
        self._queue.clear()
        self._wire = None
        self._broadcast = None
        self._queued_bytes = 0
        self._stalled_since = None

    # ------------------------------------------------------------ time

    def deadline(self) -> float | None:
        """When :meth:`timer` must run next; None if nothing is timed."""
        if self.abort_reason is not None or self.ws.state is ConnectionState.CLOSED:
            return None
        options = self._options
        when: float | None
        if self._close_deadline is not None:
            when = self._close_deadline
        elif self._ping_payload is not None:
            when = self._ping_sent_at + options.ping_timeout
        elif options.ping_interval > 0:
            when = self._last_received + options.ping_interval
        else:
            when = None
        if self._stalled_since is not None:
            stalled = self._stalled_since + options.send_timeout
            if when is None or stalled < when:
                when = stalled
        return when

    def timer(self, now: float) -> None:
        """Do what is due at ``now``: ping, give up on a pong, or abort."""
        if self.abort_reason is not None:
            return
        options = self._options
        stalled = self._stalled_since
        if stalled is not None and now >= stalled + options.send_timeout:
            self.abort(f"the client took no data for {options.send_timeout:g} seconds")
            return
        if self._close_deadline is not None:
            if now >= self._close_deadline:
                self.abort("the client did not finish the closing handshake")
            return
        if not self.open:
            return
        if self._ping_payload is not None:
            if now >= self._ping_sent_at + options.ping_timeout:
                self.close(
                    CloseReason.INTERNAL_ERROR,
                    "keepalive ping timeout:"
                    f" no pong within {options.ping_timeout:g} s",
                    now,
                )
            return
        if (
            options.ping_interval > 0
            and now >= self._last_received + options.ping_interval
        ):
            self._pings += 1
            self._ping_payload = self._pings.to_bytes(4, "big")
            self._ping_sent_at = now
            self._send_frame(self.ws.send(Ping(payload=self._ping_payload)))
