"""The presence app: the Node tutorial's ``server/index.js``, in Python.

Name for name::

    const connections = { }            ->  PresenceApp.connections
    const users = { }                  ->  PresenceApp.users
    wsServer.on("connection", ...)     ->  PresenceApp.handle_connection
    handleMessage(bytes, uuid)         ->  PresenceApp.handle_message
    handleClose(uuid)                  ->  PresenceApp.handle_close
    broadcast()                        ->  PresenceApp.broadcast

It differs where the tutorial breaks: the ``username`` is checked before the
upgrade (:meth:`PresenceApp.check_request`), a bad message gets an error reply
instead of crashing the process (:class:`~wspractice.messages.MessageRules`),
a new user is sent the map at once, and broadcasts are coalesced: a change
asks for a round (:meth:`Rounds.request <wspractice.fanout.Rounds.request>`)
and one round carries every change made since the last one.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from wsproto.frame_protocol import FrameProtocol

from .config import Options
from .connection import Connection
from .fanout import Gate, RoundClock, Rounds, Scheduler
from .handshake import Request, parse_username
from .messages import Close, MessageRules, Reply, Update
from .users import Users

logger = logging.getLogger(__name__)


@dataclass
class Visitor:
    """What the app keeps for each connection (:attr:`Connection.context`)."""

    uuid: str
    username: str
    rules: MessageRules


class PresenceApp:
    """Who is connected and where their cursor is, shared with everyone."""

    def __init__(
        self,
        options: Options,
        call_at: Scheduler,
        gate: Gate,
        users: Users | None = None,
    ) -> None:
        self.options = options
        #: The tutorial's ``connections``: uuid -> open connection.
        self.connections: dict[str, Connection] = {}
        #: The tutorial's ``users``: uuid -> { username, state }. In memory,
        #: or the whole room shared through Redis (``--redis``: a
        #: :class:`~wspractice.shared_users.SharedUsers`, which also holds
        #: other processes' users; they are in ``users``, not in
        #: ``connections``).
        self.users = users if users is not None else Users()
        #: Guards ``connections``, ``users`` and the snapshot numbers. Never
        #: held while sending.
        self.lock = threading.Lock()
        self._version = 0
        clock = RoundClock(
            interval_ms=options.broadcast_interval,
            bandwidth_mb_s=options.broadcast_bandwidth,
            pacing="pacing" not in options.ablate,
        )
        #: Coalesced broadcast rounds (see :mod:`wspractice.fanout`).
        self.rounds = Rounds(self.broadcast, clock, call_at, gate)

    def check_request(self, request: Request) -> None:
        """Before the upgrade: ``?username=`` must be there, and valid."""
        parse_username(request.query)

    def handle_connection(self, connection: Connection, request: Request) -> None:
        """A user connected: remember them and tell everyone, them included."""
        username = parse_username(request.query)
        user_id = str(uuid.uuid4())
        options = self.options
        rules = MessageRules(
            options.rate_limit,
            options.rate_burst,
            options.max_bad_messages,
            time.monotonic(),
        )
        connection.context = Visitor(user_id, username, rules)
        logger.info("%s connected", username)
        with self.lock:
            self.connections[user_id] = connection
            self.users.join(user_id, username)
        self.rounds.request()

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        """A user sent their new state: keep it and tell everyone."""
        visitor: Visitor = connection.context
        decision = visitor.rules.check(message, time.monotonic())
        if isinstance(decision, Update):
            with self.lock:
                self.users.update(visitor.uuid, decision.state)
            logger.debug("%s updated their state: %s", visitor.username, decision.state)
            self.rounds.request()
        elif isinstance(decision, Reply):
            logger.info("%s sent a bad message: %s", visitor.username, decision.reason)
            connection.send_text(decision.text)
        elif isinstance(decision, Close):
            logger.info(
                "closing %s's connection: %s", visitor.username, decision.reason
            )
            connection.close(decision.code, decision.reason)

    def handle_close(self, connection: Connection) -> None:
        """A user left: forget them and tell everyone who is still here."""
        visitor: Visitor | None = connection.context
        if visitor is None:
            return  # handle_connection failed before the user joined.
        with self.lock:
            del self.connections[visitor.uuid]
            self.users.leave(visitor.uuid)
        logger.info("%s disconnected", visitor.username)
        self.rounds.request()

    def broadcast(self) -> int:
        """Send the users map to every connection; the bytes handed out.

        The JSON is built and framed once and every connection gets the same
        bytes. Nothing is sent if nothing changed since the last broadcast.
        """
        with self.lock:
            if not self.users.take_changes():
                return 0
            self._version += 1
            version = self._version
            text = self.users.snapshot()
            targets = list(self.connections.values())
        frame = frame_text(text)
        for connection in targets:
            connection.send_snapshot(version, frame, text)
        return len(frame) * len(targets)


def frame_text(text: str) -> bytes:
    """One unmasked, uncompressed text frame carrying ``text`` (via wsproto).

    Server frames are never masked, so the same bytes serve every connection
    that did not negotiate compression.
    """
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text))
