"""The users map of a room that several processes share (``--redis``).

Each process keeps a mirror of the whole room: its own users, which it owns,
and everyone else's, as it last heard of them. :class:`SharedUsers` is that
mirror; it is a :class:`~wspractice.users.Users`, so the presence app uses it
exactly as it uses the in-memory map, and snapshots, encode-once and
coalescing work as they do with one process. Two things are added:

* **Out.** What this process's users did in a round (:class:`Batch`: who
  joined, newest states, who left) is handed to the link once per round, in
  :meth:`SharedUsers.take_changes`, which the round calls anyway. The link
  publishes it as one message, off the reader threads.
* **In.** The link's threads record what other processes said in a
  :class:`RemoteRoom`. The next round's :meth:`SharedUsers.take_changes`
  applies everything received since the last round in one step, and returns
  it merged with the local changes, as one :class:`~wspractice.users.Changes`.

**Join order.** Every user has an order key, ``(ms, counter, node)``, written
``"<13 digits>.<6 digits>.<node>"`` so that comparing the strings compares
the keys. It is a hybrid logical clock: ``ms`` is the wall clock in
milliseconds unless this process has already seen a key with a later time,
in which case the key follows that one. Every process sorts the room by the
same keys, so every process shows the same order; a user who joins after a
process has seen another user is ordered after them everywhere, whatever the
machines' clocks say; and keys need no Redis, so they work while it is down.

**Messages** between processes (:class:`Message`) carry a per-process
sequence number. A process applies a message only if it is newer than what
it has from that process; a gap means it missed one, and it re-reads that
process's users from Redis (:meth:`RemoteRoom.receive` says so). Every state
crossing a process boundary is checked again on arrival
(:func:`~wspractice.messages.parse_state`), and so are usernames, uuids and
keys: a message that is not what a wspractice process sends is refused whole.

Rule: this module does no I/O and imports no Redis client. The link
(:mod:`wspractice.redis_link`) moves the bytes; this module decides what they
mean. :class:`SharedUsers` is called under the presence app's lock, like
:class:`~wspractice.users.Users`; :class:`RemoteRoom` has a lock of its own,
because the link's threads write to it.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum

from .errors import HandshakeError, MessageError
from .handshake import check_username
from .messages import parse_state
from .users import Changes, User, Users

#: A process's id in the room: 12 hex digits, new at every start.
NODE = re.compile(r"[0-9a-f]{12}")
#: A user's order key: milliseconds, a counter, the node that made it.
ORDER = re.compile(r"[0-9]{13}\.[0-9]{6}\.[0-9a-f]{12}")
#: A user's uuid, as :func:`uuid.uuid4` writes it.
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: The wire version of :class:`Message`; a message of another is refused.
VERSION = 1
#: The field of a process's users hash that holds its last sequence number.
SEQ_FIELD = "seq"

_COUNTER_LIMIT = 1_000_000

#: One encoder for every message (json.dumps with options builds one a call).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def new_node_id() -> str:
    """A fresh id for this process (random: a restarted process is new)."""
    return uuidlib.uuid4().hex[:12]


@dataclass(frozen=True)
class Entry:
    """One user as processes share it. ``state`` is compact JSON text."""

    username: str
    order: str
    state: str


@dataclass
class Batch:
    """One process's changes, merged: each user appears once.

    ``joined`` holds whole entries (the newest state included), ``updated``
    the newest state of users who joined earlier, ``left`` who left. A user
    who joined and left within one batch is in none of them.
    """

    joined: dict[str, Entry] = field(default_factory=dict)
    updated: dict[str, str] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.joined or self.updated or self.left)

    def merge(self, newer: Batch) -> None:
        """Add ``newer`` (which followed this batch) to this batch."""
        for uuid, entry in newer.joined.items():
            self.joined[uuid] = entry
        for uuid, state in newer.updated.items():
            joined = self.joined.get(uuid)
            if joined is not None:
                self.joined[uuid] = replace(joined, state=state)
            else:
                self.updated[uuid] = state
        for uuid in newer.left:
            if self.joined.pop(uuid, None) is None:
                self.updated.pop(uuid, None)
                self.left.append(uuid)

    def apply_to(self, users: dict[str, Entry]) -> None:
        """Carry these changes out on ``users`` (uuid -> entry)."""
        for uuid, entry in self.joined.items():
            users[uuid] = entry
        for uuid, state in self.updated.items():
            old = users.get(uuid)
            if old is not None:
                users[uuid] = replace(old, state=state)
        for uuid in self.left:
            users.pop(uuid, None)


class Kind(str, Enum):
    """What a :class:`Message` says."""

    #: Changes since the process's previous message.
    CHANGES = "changes"
    #: Every user the process has (``joined``): a replacement, not changes.
    FULL = "full"
    #: The process is stopping: its users leave.
    BYE = "bye"


@dataclass(frozen=True)
class Message:
    """What one process tells the others, on the room's channel."""

    node: str
    seq: int
    kind: Kind
    batch: Batch = field(default_factory=Batch)

    def encode(self) -> str:
        """Compact JSON; states travel as strings, byte for byte."""
        body: dict[str, object] = {
            "v": VERSION,
            "node": self.node,
            "seq": self.seq,
            "kind": self.kind.value,
        }
        batch = self.batch
        if batch.joined:
            body["joined"] = [
                [uuid, e.username, e.order, e.state] for uuid, e in batch.joined.items()
            ]
        if batch.updated:
            body["updated"] = [[uuid, state] for uuid, state in batch.updated.items()]
        if batch.left:
            body["left"] = batch.left
        return _encode(body)


class BadMessage(ValueError):
    """Something on the room's channel or in its keys that wspractice did not
    write; the reason says what is wrong."""


def decode_message(data: str | bytes) -> Message:
    """The :class:`Message` in ``data``; BadMessage unless every part is valid."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadMessage("not a JSON object")
    if body.get("v") != VERSION:
        raise BadMessage(f"version {body.get('v')!r}, expected {VERSION}")
    node = _node(body.get("node"))
    seq = body.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise BadMessage(f"bad sequence number {seq!r}")
    try:
        kind = Kind(body.get("kind"))
    except ValueError:
        raise BadMessage(f"unknown kind {body.get('kind')!r}") from None
    batch = Batch()
    for item in _list(body, "joined"):
        if not (isinstance(item, list) and len(item) == 4):
            raise BadMessage("a joined user is not [uuid, username, order, state]")
        batch.joined[_uuid(item[0])] = _entry(item[1], item[2], item[3])
    for item in _list(body, "updated"):
        if not (isinstance(item, list) and len(item) == 2):
            raise BadMessage("an updated user is not [uuid, state]")
        batch.updated[_uuid(item[0])] = _state(item[1])
    batch.left.extend(_uuid(item) for item in _list(body, "left"))
    return Message(node, seq, kind, batch)


def encode_entry(entry: Entry) -> str:
    """A user's record in its process's users hash."""
    return _encode([entry.username, entry.order, entry.state])


def decode_users_hash(
    fields: Mapping[bytes, bytes] | Mapping[str, str],
) -> tuple[int, dict[str, Entry]]:
    """A process's users hash: its sequence number and its users.

    BadMessage when the hash is not what a wspractice process writes.
    """
    seq = 0
    users: dict[str, Entry] = {}
    for raw_key, raw_value in fields.items():
        key = _text(raw_key)
        value = _text(raw_value)
        if key == SEQ_FIELD:
            if not value.isdigit():
                raise BadMessage(f"bad sequence number {value[:20]!r}")
            seq = int(value)
            continue
        try:
            record = json.loads(value)
        except (ValueError, RecursionError):
            raise BadMessage("a user's record is not JSON") from None
        if not (isinstance(record, list) and len(record) == 3):
            raise BadMessage("a user's record is not [username, order, state]")
        users[_uuid(key)] = _entry(*record)
    if seq < 1:
        raise BadMessage("no sequence number")
    return seq, users


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage("not UTF-8") from None
    return value


def _list(body: dict[str, object], name: str) -> list[object]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise BadMessage(f"{name} is not a list")
    return value


def _node(value: object) -> str:
    if not (isinstance(value, str) and NODE.fullmatch(value)):
        raise BadMessage(f"bad process id {value!r:.40}")
    return value


def _uuid(value: object) -> str:
    if not (isinstance(value, str) and UUID.fullmatch(value)):
        raise BadMessage(f"bad uuid {value!r:.60}")
    return value


def _state(value: object) -> str:
    if not isinstance(value, str):
        raise BadMessage("a state is not a string of JSON")
    try:
        return parse_state(value)
    except MessageError as exc:
        raise BadMessage(f"bad state: {exc.reason}") from None


def _entry(username: object, order: object, state: object) -> Entry:
    if not isinstance(username, str):
        raise BadMessage("a username is not a string")
    try:
        check_username(username)
    except HandshakeError as exc:
        raise BadMessage(f"bad username: {exc.reason}") from None
    if not (isinstance(order, str) and ORDER.fullmatch(order)):
        raise BadMessage(f"bad order key {order!r:.60}")
    return Entry(username, order, _state(state))


# ------------------------------------------------------------ remote users


class Verdict(Enum):
    """What :meth:`RemoteRoom.receive` made of a message."""

    #: Applied; nothing is missing.
    APPLIED = "applied"
    #: Older than what this process has from that process: ignored.
    STALE = "stale"
    #: Something is missing (a gap in the sequence numbers, or a process not
    #: heard of before): re-read that process's users from Redis.
    RESYNC = "resync"
    #: From this process itself.
    OWN = "own"


@dataclass
class _Node:
    seq: int
    users: dict[str, Entry]


class RemoteRoom:
    """The other processes' users, as this process last heard of them.

    The link's threads write to it (:meth:`receive`, :meth:`replace`,
    :meth:`drop`); :class:`SharedUsers` takes what changed once per round
    (:meth:`take`). Every method takes the room's own lock, briefly.
    """

    def __init__(self, node: str) -> None:
        #: This process's id: its own messages are ignored.
        self.node = node
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        #: uuid -> the node it belongs to.
        self._owners: dict[str, str] = {}
        #: uuids changed since the last :meth:`take`.
        self._dirty: set[str] = set()

    def __len__(self) -> int:
        """How many remote users there are."""
        with self._lock:
            return len(self._owners)

    def nodes(self) -> list[str]:
        """The processes heard of (not this one)."""
        with self._lock:
            return list(self._nodes)

    @property
    def dirty(self) -> bool:
        """Whether anything changed since the last :meth:`take`."""
        return bool(self._dirty)  # A hint: a stale read costs one round.

    def seq(self, node: str) -> int:
        """The last sequence number applied from ``node`` (0: none)."""
        with self._lock:
            known = self._nodes.get(node)
            return known.seq if known is not None else 0

    def receive(self, message: Message) -> Verdict:
        """Apply a message from the room's channel, if it is news."""
        node = message.node
        if node == self.node:
            return Verdict.OWN
        with self._lock:
            known = self._nodes.get(node)
            if message.kind is Kind.BYE:
                self._drop(node)
                return Verdict.APPLIED
            if known is not None and message.seq <= known.seq:
                return Verdict.STALE
            if message.kind is Kind.FULL:
                self._replace(node, message.seq, message.batch.joined)
                return Verdict.APPLIED
            if known is None:
                # Changes from a process whose users are unknown here: they
                # cannot be applied alone; its users hash says everything.
                return Verdict.RESYNC
            complete = message.seq == known.seq + 1
            known.seq = message.seq
            batch = message.batch
            for uuid, entry in batch.joined.items():
                self._put(node, known, uuid, entry)
            for uuid, state in batch.updated.items():
                old = known.users.get(uuid)
                if old is None:
                    complete = False
                else:
                    known.users[uuid] = replace(old, state=state)
                    self._dirty.add(uuid)
            for uuid in batch.left:
                if known.users.pop(uuid, None) is not None:
                    self._owners.pop(uuid, None)
                    self._dirty.add(uuid)
            return Verdict.APPLIED if complete else Verdict.RESYNC

    def replace(self, node: str, seq: int, users: dict[str, Entry]) -> bool:
        """``node``'s users as read from Redis at ``seq``; False if older
        than what this process already has from it."""
        if node == self.node:
            return False
        with self._lock:
            known = self._nodes.get(node)
            if known is not None and seq < known.seq:
                return False
            self._replace(node, seq, users)
            return True

    def drop(self, node: str) -> bool:
        """``node`` is gone: its users leave. False if it was not known."""
        with self._lock:
            return self._drop(node)

    def drop_all(self) -> bool:
        """Forget every other process (this one lost Redis for too long)."""
        with self._lock:
            dropped = False
            for node in list(self._nodes):
                dropped = self._drop(node) or dropped
            return dropped

    def take(self) -> list[tuple[str, Entry | None]]:
        """Every user changed since the last call: their entry, or None if
        they are gone."""
        with self._lock:
            if not self._dirty:
                return []
            changed = []
            for uuid in self._dirty:
                node = self._owners.get(uuid)
                entry = None if node is None else self._nodes[node].users.get(uuid)
                changed.append((uuid, entry))
            self._dirty = set()
            return changed

    # -- under the lock

    def _put(self, node: str, known: _Node, uuid: str, entry: Entry) -> None:
        owner = self._owners.get(uuid)
        if owner is not None and owner != node:
            return  # A uuid is one process's; the first claim stands.
        known.users[uuid] = entry
        self._owners[uuid] = node
        self._dirty.add(uuid)

    def _replace(self, node: str, seq: int, users: dict[str, Entry]) -> None:
        known = self._nodes.get(node)
        if known is None:
            known = self._nodes[node] = _Node(seq, {})
        known.seq = seq
        for uuid in list(known.users):
            if uuid not in users:
                del known.users[uuid]
                self._owners.pop(uuid, None)
                self._dirty.add(uuid)
        for uuid, entry in users.items():
            if known.users.get(uuid) != entry:
                self._put(node, known, uuid, entry)

    def _drop(self, node: str) -> bool:
        known = self._nodes.pop(node, None)
        if known is None:
            return False
        for uuid in known.users:
            self._owners.pop(uuid, None)
            self._dirty.add(uuid)
        return True


# ------------------------------------------------------------ the mirror


class SharedUsers(Users):
    """The whole room: this process's users and the others', in one order.

    ``publish`` receives this process's changes once per round (a
    :class:`Batch`); it must not block: it is called under the app's lock.
    ``clock`` gives the wall-clock time in seconds, for order keys.
    """

    def __init__(
        self,
        node: str,
        remote: RemoteRoom,
        publish: Callable[[Batch], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.node = node
        self.remote = remote
        self._publish = publish
        self._clock = clock
        #: uuid -> order key, for every user here.
        self._orders: dict[str, str] = {}
        #: This process's own users.
        self._local: set[str] = set()
        #: The greatest (ms, counter) of any key seen: the logical clock.
        self._seen = (0, 0)
        #: The key of the user last placed at the end of the map.
        self._last_order = ""
        #: The map is out of order and must be sorted before a snapshot.
        self._unsorted = False

    # -- this process's users (the app's calls)

    def join(self, uuid: str, username: str) -> User:
        user = super().join(uuid, username)
        order = self.next_order()
        self._local.add(uuid)
        self._place(uuid, order)
        return user

    def leave(self, uuid: str) -> User | None:
        if uuid not in self._local:
            return None  # Not here, or another process's: only it removes them.
        user = super().leave(uuid)
        if user is not None:
            self._local.discard(uuid)
            del self._orders[uuid]
        return user

    def remote_uuids(self) -> set[str]:
        """Users of other processes that this map holds."""
        return self._orders.keys() - self._local

    def is_local(self, uuid: str) -> bool:
        return uuid in self._local

    @property
    def changed(self) -> bool:
        return super().changed or self.remote.dirty

    def snapshot(self) -> str:
        if self._unsorted:
            self._sort()
        return super().snapshot()

    def take_changes(self) -> Changes:
        """This round's changes: local ones (handed to the link) and remote
        ones received since the last round (applied now), merged."""
        local = super().take_changes()
        if local:
            self._publish(self._batch(local))
        remote = self._apply_remote()
        if not remote:
            return local
        return local.merged(remote)

    # -- order keys

    def next_order(self) -> str:
        """A key after every key seen so far (the logical clock ticks)."""
        wall = int(self._clock() * 1000)
        ms, counter = self._seen
        if wall > ms:
            ms, counter = wall, 0
        else:
            counter += 1
            if counter >= _COUNTER_LIMIT:
                ms, counter = ms + 1, 0
        self._seen = (ms, counter)
        return f"{ms:013d}.{counter:06d}.{self.node}"

    def order(self, uuid: str) -> str:
        """A user's order key."""
        return self._orders[uuid]

    def _see(self, order: str) -> None:
        seen = (int(order[:13]), int(order[14:20]))
        if seen > self._seen:
            self._seen = seen

    def _place(self, uuid: str, order: str) -> None:
        """Record ``uuid``'s key; the map was appended to, so note whether it
        is still sorted."""
        self._orders[uuid] = order
        if order > self._last_order:
            self._last_order = order
        else:
            self._unsorted = True

    def _sort(self) -> None:
        orders = self._orders
        items = sorted(self._users.items(), key=lambda item: orders[item[0]])
        self._users = dict(items)
        self._last_order = orders[items[-1][0]] if items else ""
        self._unsorted = False

    # -- the link

    def _batch(self, changes: Changes) -> Batch:
        batch = Batch(updated=dict(changes.updated), left=list(changes.left))
        for uuid, (_, state) in changes.joined.items():
            batch.joined[uuid] = Entry(
                self._users[uuid].username, self._orders[uuid], state
            )
        return batch

    def _apply_remote(self) -> Changes:
        changes = Changes()
        for uuid, entry in self.remote.take():
            if uuid in self._local:
                continue  # A remote claim on a local uuid: ignored.
            user = self._users.get(uuid)
            if entry is None:
                if user is not None:
                    del self._users[uuid]
                    del self._orders[uuid]
                    changes.leave(uuid)
            elif user is None:
                user = self._users[uuid] = User(uuid, entry.username, entry.state)
                self._see(entry.order)
                self._place(uuid, entry.order)
                changes.join(user)
            elif user.state != entry.state:
                user.set_state(entry.state)
                changes.update(uuid, entry.state)
        return changes

    def local_entries(self) -> Iterable[tuple[str, Entry]]:
        """This process's users as entries (for tests and status)."""
        for uuid in self._local:
            user = self._users[uuid]
            yield uuid, Entry(user.username, self._orders[uuid], user.state)
