"""The two WebSocket endpoints: the presence app and ``/echo``.

:class:`PresenceApp` is the Node tutorial's server, function for function::

    wsServer.on("connection", ...)   ->  PresenceApp.handle_connection
    handleMessage(bytes, uuid)       ->  PresenceApp.handle_message
    handleClose(uuid)                ->  PresenceApp.handle_close
    broadcast()                      ->  PresenceApp.broadcast
    connections, users               ->  PresenceApp.connections, .presence

It differs where the tutorial breaks: a bad message gets an error reply
instead of crashing the process, a new user receives a snapshot right away,
and the snapshot is encoded and framed once for everyone instead of once
per connection.

Snapshots are coalesced: the tutorial broadcasts after every message, so N
users moving at 20 Hz cost 20·N² messages a second. Here a change triggers a
broadcast at once if none went out in the last ``broadcast_interval``
seconds, and otherwise one broadcast when the interval is over, carrying
every change made in between. A client may skip intermediate snapshots but
always receives the latest one promptly. ``broadcast_interval=0`` restores
the tutorial's one broadcast per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from wsproto.frame_protocol import FrameProtocol

from .errors import MessageError, PolicyViolation, UnsupportedData
from .gate import Gate
from .messages import error_reply, parse_state
from .presence import Presence
from .ratelimit import RateLimiter
from .session import Session

#: Schedules a callback at a monotonic time (:meth:`Writer.call_at`).
Scheduler = Callable[[float, Callable[[float], "float | None"]], None]

logger = logging.getLogger(__name__)


def frame_text(text: str) -> bytes:
    """One unmasked, uncompressed text frame carrying ``text`` (via wsproto).

    Server frames are never masked, so the same bytes serve every
    connection that did not negotiate compression.
    """
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text))


class PresenceApp:
    """Who is connected and where their cursor is, shared with everyone."""

    uses_gate = True

    def __init__(
        self,
        call_at: Scheduler,
        gate: Gate,
        broadcast_interval: float = 0.0,
        max_bad_messages: int = 10,
        rate_limit: float = 0.0,
        rate_burst: int = 1,
        broadcast_bandwidth: float = 0.0,
    ) -> None:
        self._call_at = call_at
        #: The server's fan-out gate (see :mod:`wspractice.gate`).
        self._gate = gate
        #: Messages a second a client may send on average (0: no limit) ...
        self.rate_limit = rate_limit
        #: ... and at once.
        self.rate_burst = rate_burst
        #: Seconds between coalesced broadcasts; 0 broadcasts every change.
        self.broadcast_interval = broadcast_interval
        #: Snapshot bytes a second that coalesced rounds may hand to the
        #: kernel, all connections together (0: no cap). See _claim_broadcast.
        self.broadcast_bandwidth = broadcast_bandwidth
        self.max_bad_messages = max_bad_messages
        self._last_broadcast = -float("inf")
        self._last_round_end = -float("inf")
        #: Pause after a round before the next one (see _pace).
        self._round_gap = 0.0
        self._last_round_bytes = 0
        self._paced_at = time.monotonic()
        self._paced_reader_time = 0.0
        self._broadcast_pending = False
        #: Numbers snapshots, so that a connection never takes an older one.
        self._version = 0
        #: Guards ``connections``, joins, leaves and snapshots (a user's own
        #: state changes need no lock: see :mod:`wspractice.presence`). Never
        #: held while sending.
        self.lock = threading.Lock()
        #: The tutorial's ``connections``: uuid -> open connection.
        self.connections: dict[str, Session] = {}
        #: The tutorial's ``users``: uuid -> { username, state }.
        self.presence = Presence()

    def handle_connection(self, session: Session) -> None:
        """A user joined: remember them and tell everyone (them included)."""
        username = session.username
        assert username is not None
        logger.info("%s connected", username)
        if self.rate_limit > 0:
            session.rate_limiter = RateLimiter(
                self.rate_limit, self.rate_burst, time.monotonic()
            )
        with self.lock:
            self.connections[session.id] = session
            self.presence.join(session.id, username)
        self.changed()

    def handle_message(self, session: Session, message: str | bytes) -> None:
        """A user sent their new state: replace theirs and tell everyone."""
        state = self.check_message(session, message)
        if state is None:
            return
        user = self.presence.update(session.id, state)
        logger.debug("%s updated their state: %s", user.username, state)
        self.changed()

    def check_message(self, session: Session, message: str | bytes) -> str | None:
        """The state a message carries, as compact JSON; None if it has none.

        Where the tutorial's ``JSON.parse`` would crash the whole server, a
        bad message gets an error reply to its sender alone, and a client
        that keeps misbehaving is closed (:class:`~wspractice.errors.CloseError`).
        """
        if isinstance(message, bytes):
            raise UnsupportedData("binary messages are not supported; send JSON text")
        limiter = session.rate_limiter
        if limiter is not None and not limiter.allow(time.monotonic()):
            if limiter.persistent:
                raise PolicyViolation(
                    f"message rate above {self.rate_limit:g} a second for too long"
                )
            if limiter.dropped == 1:
                logger.info("%s is over the message rate limit", session.username)
                session.send_text(
                    error_reply(
                        f"too many messages: at most {self.rate_limit:g} a second"
                        f" (bursts of {self.rate_burst}); messages are dropped"
                        " until you slow down"
                    )
                )
            return None
        try:
            state = parse_state(message)
        except MessageError as exc:
            logger.info("%s sent a bad message: %s", session.username, exc.reason)
            session.bad_messages += 1
            if self.max_bad_messages and session.bad_messages >= self.max_bad_messages:
                raise PolicyViolation(
                    f"{session.bad_messages} bad messages in a row; last: {exc.reason}"
                ) from None
            session.send_text(error_reply(exc.reason))
            return None
        session.bad_messages = 0
        return state

    def handle_close(self, session: Session) -> None:
        """A user left: forget them and tell everyone who is still here."""
        with self.lock:
            self.connections.pop(session.id, None)
            user = self.presence.leave(session.id)
        if user is None:
            return
        logger.info("%s disconnected", user.username)
        self.changed()

    def changed(self) -> None:
        """The users map changed: broadcast now, or once the interval is over."""
        interval = self.broadcast_interval
        if interval <= 0:
            self.broadcast()  # The tutorial's way, in this reader's thread.
            return
        if self._broadcast_pending:
            # The coming broadcast will carry this change too: it clears the
            # flag before it builds the snapshot. (Read without the lock, the
            # hot path of a busy room.)
            return
        due = self._claim_broadcast(interval)
        if due is not None:
            self._call_at(due, self._broadcast_due)

    def _claim_broadcast(self, interval: float) -> float | None:
        """When the next broadcast is due; None if one is already coming."""
        with self.lock:
            if self._broadcast_pending:
                return None
            self._broadcast_pending = True
            # At most one snapshot per interval; no faster than the bandwidth
            # cap allows for the bytes the last round sent (1,000 users
            # joining at once would otherwise cost N² bytes per join, and
            # O(N³) in all); and after a round, a pause that leaves the
            # readers the share of time they need to take in the users'
            # moves (see _pace).
            spacing = interval
            if self.broadcast_bandwidth > 0:
                spacing = max(
                    interval, self._last_round_bytes / self.broadcast_bandwidth
                )
            return max(
                self._last_broadcast + spacing,
                self._last_round_end + self._round_gap,
            )

    def _broadcast_due(self, now: float) -> None:
        """The coalesced broadcast, in the writer thread, with the gate to itself."""
        with self.lock:
            self._broadcast_pending = False
            self._last_broadcast = now
        with self._gate.exclusive():
            self.broadcast(only_if_changed=True)

    def broadcast(self, only_if_changed: bool = False) -> None:
        """Send the whole users map to every connection.

        The JSON is built and framed once; each connection gets the same
        bytes. A connection still busy with an earlier snapshot keeps only
        this newer one (see :meth:`Session.send_snapshot`).
        """
        with self.lock:
            if only_if_changed and not self.presence.changed:
                return
            self._version += 1
            version = self._version
            text = self.presence.snapshot()
            targets = list(self.connections.values())
        if not targets:
            return
        frame = frame_text(text)
        started = time.monotonic()
        for session in targets:
            session.send_snapshot(version, frame, text)
        self._last_round_end = time.monotonic()
        self._pace(self._last_round_end - started, len(frame) * len(targets))

    def _pace(self, round_time: float, round_bytes: int) -> None:
        """Set the pause before the next round from how busy the readers are.

        A round makes one system call per connection, all with the gate to
        itself; readers need the rest of the time to take in the users'
        moves. If readers were busy a fraction ``r`` of the time since the
        last round, broadcasting may take ``1 - r`` of it, less a margin,
        and never less than a tenth: in a quiet room snapshots follow each
        other closely, in a busy one they come less often but carry more.
        The round's size counts against ``broadcast_bandwidth``.
        """
        self._last_round_bytes = round_bytes
        now = time.monotonic()
        reader_time = self._gate.reader_time
        elapsed = now - self._paced_at
        if elapsed > 0:
            busy = min(1.0, (reader_time - self._paced_reader_time) / elapsed)
            share = max(0.1, 0.9 - busy)  # of the time, for broadcasting
            self._round_gap = round_time * (1 - share) / share
        self._paced_at, self._paced_reader_time = now, reader_time


class EchoApp:
    """``/echo``: every text or binary message comes back unchanged."""

    uses_gate = False

    def handle_connection(self, session: Session) -> None:
        logger.debug("%r: echo connection opened", session)

    def handle_message(self, session: Session, message: str | bytes) -> None:
        if isinstance(message, str):
            session.send_text(message)
        else:
            session.send_bytes(message)

    def handle_close(self, session: Session) -> None:
        logger.debug("%r: echo connection closed", session)
