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

Clients that offer the ``wspractice-delta`` subprotocol get the map once
(``{"you": uuid, "users": map}``) and then only what changed in each round
(``{"joined": ..., "updated": ..., "left": [...]}``): the tutorial's format
costs N entries to N connections for every change, this one what changed.
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
from .protocol import Broadcast, Snapshot
from .users import Changes, Users

logger = logging.getLogger(__name__)

#: The subprotocol of clients that want only what changed (RFC 6455 1.9).
DELTA_SUBPROTOCOL = "wspractice-delta"


@dataclass
class Visitor:
    """What the app keeps for each connection (:attr:`Connection.context`)."""

    uuid: str
    username: str
    rules: MessageRules
    #: The client speaks ``wspractice-delta``.
    delta: bool = False
    #: It has been offered its first message (the whole map).
    welcomed: bool = False


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
        #: Guards ``connections``, ``users`` and the round numbers. Never
        #: held while sending.
        self.lock = threading.Lock()
        #: Held by whoever runs a round, so that rounds reach every
        #: connection in order (a change must never overtake another).
        self._round_lock = threading.Lock()
        self._version = 0
        clock = RoundClock(
            interval_ms=options.broadcast_interval,
            bandwidth_mb_s=options.broadcast_bandwidth,
            pacing="pacing" not in options.ablate,
        )
        #: Coalesced broadcast rounds (see :mod:`wspractice.fanout`).
        self.rounds = Rounds(self.broadcast, clock, call_at, gate)

    @property
    def rounds_sent(self) -> int:
        """Rounds that sent something so far: each numbers its messages."""
        return self._version

    def check_request(self, request: Request) -> str | None:
        """Before the upgrade: ``?username=`` must be there, and valid; the
        delta subprotocol is selected when the client offers it."""
        parse_username(request.query)
        return DELTA_SUBPROTOCOL if DELTA_SUBPROTOCOL in request.subprotocols else None

    def handle_connection(self, connection: Connection, request: Request) -> None:
        """A user connected: remember them and tell everyone, them included."""
        username = parse_username(request.query)
        user_id = str(uuid.uuid4())
        rules = MessageRules(self.options, time.monotonic())
        delta = connection.subprotocol == DELTA_SUBPROTOCOL
        connection.context = Visitor(user_id, username, rules, delta)
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
        """Send what changed to every connection; the bytes handed out.

        A tutorial client gets the whole users map, built and framed once
        for all of them; a delta client gets the round's changes, also
        encoded once for all of them, after a first message of its own with
        the whole map. Nothing is sent if nothing changed.
        """
        with self._round_lock:
            with self.lock:
                changes = self.users.take_changes()
                if not changes:
                    return 0
                self._version += 1
                round = Round(self._version, self.users.snapshot(), changes)
                targets = list(self.connections.values())
            for connection in targets:
                connection.send_broadcast(round.for_visitor(connection.context))
            return round.sent


class Round:
    """One round's messages, each built at most once, on first use."""

    def __init__(self, version: int, users: str, changes: Changes) -> None:
        self.version = version
        self.users = users
        self.changes = changes
        #: Bytes handed out (framed messages times their connections).
        self.sent = 0
        self._snapshot: Snapshot | None = None
        self._delta: Delta | None = None

    def for_visitor(self, visitor: Visitor) -> Broadcast:
        """What this round sends to ``visitor``'s connection."""
        if not visitor.delta:
            if self._snapshot is None:
                self._snapshot = Snapshot(
                    self.version, self.users, frame_text(self.users)
                )
            message: Broadcast = self._snapshot
        elif visitor.welcomed:
            if self._delta is None:
                self._delta = Delta(self.version, self.changes, self.users)
            message = self._delta
        else:
            visitor.welcomed = True
            message = Welcome(self.version, visitor.uuid, self.users)
        # A welcome is framed per connection and is about the map's size.
        self.sent += len(message.frame) if message.frame else len(self.users)
        return message


class Delta(Broadcast):
    """A round's changes for delta clients: ``{"joined":…,"updated":…,"left":…}``.

    Framed once for every client that takes it as it is; a client still
    waiting to send the previous one gets both merged, framed for it alone.
    """

    __slots__ = ("changes", "users")

    def __init__(
        self, version: int, changes: Changes, users: str, frame: bool = True
    ) -> None:
        super().__init__(version, frame_text(changes.encode()) if frame else None)
        self.changes = changes
        #: The whole map after this round (for a client not welcomed yet).
        self.users = users

    def text(self) -> str:
        return self.changes.encode()

    def merged(self, newer: Broadcast) -> Broadcast:
        assert isinstance(newer, Delta)
        changes = self.changes.merged(newer.changes)
        return Delta(newer.version, changes, newer.users, frame=False)


class Welcome(Broadcast):
    """A delta client's first message: ``{"you": uuid, "users": map}``."""

    __slots__ = ("uuid", "users")

    def __init__(self, version: int, uuid: str, users: str) -> None:
        super().__init__(version, None)
        self.uuid = uuid
        self.users = users

    def text(self) -> str:
        return f'{{"you":"{self.uuid}","users":{self.users}}}'

    def merged(self, newer: Broadcast) -> Broadcast:
        # Not sent yet: welcome the client with the newest map instead.
        assert isinstance(newer, Delta)
        return Welcome(newer.version, self.uuid, newer.users)


def frame_text(text: str) -> bytes:
    """One unmasked, uncompressed text frame carrying ``text`` (via wsproto).

    Server frames are never masked, so the same bytes serve every connection
    that did not negotiate compression.
    """
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text))
