"""The users map: who is here and what their state is, and what changed.

The Node tutorial keeps ``users[uuid] = { username, state }`` and sends
``JSON.stringify(users)`` to everyone. :class:`Users` keeps the same map and
builds the same JSON, but does the work once: each user's entry is encoded
when the user joins or moves, and a snapshot is those entries joined.

It also keeps what changed since the last broadcast round, merged
(:class:`Changes`): who joined, whose state changed (the newest state only),
who left. A round takes them with :meth:`Users.take_changes`; nothing changed,
no round.

Rule: this module does no I/O and takes no locks. Its owner, the presence
app (:mod:`wspractice.presence`), calls it under its own lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import encode

EMPTY_STATE = "{}"


class User:
    """One connected user: the tutorial's ``{ username, state }``."""

    __slots__ = ("uuid", "username", "state", "prefix", "entry")

    def __init__(self, uuid: str, username: str, state: str = EMPTY_STATE) -> None:
        self.uuid = uuid
        self.username = username
        #: ``"<uuid>":{"username":...,"state":``: the entry up to the state.
        self.prefix = f'"{uuid}":{{"username":{encode(username)},"state":'
        #: The state as compact JSON text; ``{}`` until the first update.
        self.state = state
        #: ``"<uuid>":{"username":...,"state":...}``, ready to join.
        self.entry = self.prefix + state + "}"

    def set_state(self, state: str) -> None:
        self.state = state
        self.entry = self.prefix + state + "}"


@dataclass
class Changes:
    """What changed in the users map, merged: each user appears once.

    ``joined`` maps a uuid to the user's entry prefix and state (in join
    order), ``updated`` a uuid to its newest state, and ``left`` lists the
    uuids that left. A user who joined and left within the same changes is
    in none of them. States are compact JSON text.
    """

    joined: dict[str, tuple[str, str]] = field(default_factory=dict)
    updated: dict[str, str] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.joined or self.updated or self.left)

    def join(self, user: User) -> None:
        self.joined[user.uuid] = (user.prefix, user.state)

    def update(self, uuid: str, state: str) -> None:
        joined = self.joined.get(uuid)
        if joined is not None:
            self.joined[uuid] = (joined[0], state)
        else:
            self.updated[uuid] = state

    def leave(self, uuid: str) -> None:
        if self.joined.pop(uuid, None) is None:
            self.updated.pop(uuid, None)
            self.left.append(uuid)

    def merged(self, newer: Changes) -> Changes:
        """These changes followed by ``newer``, as one set of changes."""
        result = Changes(dict(self.joined), dict(self.updated), list(self.left))
        for uuid, (prefix, state) in newer.joined.items():
            result.joined[uuid] = (prefix, state)
        for uuid, state in newer.updated.items():
            result.update(uuid, state)
        for uuid in newer.left:
            result.leave(uuid)
        return result

    def encode(self) -> str:
        """``{"joined":{...},"updated":{...},"left":[...]}``, empty parts left out."""
        parts = []
        if self.joined:
            entries = ",".join(
                prefix + state + "}" for prefix, state in self.joined.values()
            )
            parts.append('"joined":{' + entries + "}")
        if self.updated:
            updates = ",".join(
                f'"{uuid}":{state}' for uuid, state in self.updated.items()
            )
            parts.append('"updated":{' + updates + "}")
        if self.left:
            parts.append('"left":[' + ",".join(f'"{uuid}"' for uuid in self.left) + "]")
        return "{" + ",".join(parts) + "}"


class Users:
    """Every connected user, in the order they joined."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._changes = Changes()

    def __len__(self) -> int:
        return len(self._users)

    @property
    def changed(self) -> bool:
        """Whether anything changed since the last :meth:`take_changes`."""
        return bool(self._changes)

    def join(self, uuid: str, username: str) -> User:
        """Add a user whose state is ``{}`` (the tutorial's ``state: {}``)."""
        if uuid in self._users:
            raise KeyError(f"user {uuid} is already here")
        user = self._users[uuid] = User(uuid, username)
        self._changes.join(user)
        return user

    def update(self, uuid: str, state: str) -> User:
        """Replace a user's state with ``state`` (compact JSON text)."""
        user = self._users[uuid]
        user.set_state(state)
        self._changes.update(uuid, state)
        return user

    def leave(self, uuid: str) -> User | None:
        """Remove a user; None if they were not here."""
        user = self._users.pop(uuid, None)
        if user is not None:
            self._changes.leave(uuid)
        return user

    def snapshot(self) -> str:
        """The whole map as compact JSON: ``{"<uuid>": {...}, ...}``."""
        return "{" + ",".join([user.entry for user in self._users.values()]) + "}"

    def take_changes(self) -> Changes:
        """What changed since the last call, and start afresh."""
        changes, self._changes = self._changes, Changes()
        return changes
