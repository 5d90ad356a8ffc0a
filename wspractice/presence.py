"""The users map: who is here and what their state is (the tutorial's ``users``).

The Node tutorial keeps ``users[uuid] = { username, state }`` and sends
``JSON.stringify(users)`` to everyone. :class:`Presence` keeps the same map
and builds the same JSON, but does the work once: each user's entry is encoded
when the user joins or moves, and a snapshot is those entries joined, built
at most once per change (:attr:`Presence.version`).

Rule: this module does no I/O and takes no locks. It is not thread-safe; the
server serialises every call (see :mod:`wspractice.app`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import encode

EMPTY_STATE = "{}"


@dataclass
class User:
    """One connected user: the tutorial's ``{ username, state }``."""

    uuid: str
    username: str
    #: The user's state as compact JSON text; ``{}`` until the first update.
    state: str = EMPTY_STATE
    #: ``"<uuid>":{"username":...,"state":...}``, ready to join.
    entry: str = ""

    def __post_init__(self) -> None:
        self._encode_entry()

    def set_state(self, state: str) -> None:
        self.state = state
        self._encode_entry()

    def _encode_entry(self) -> None:
        self.entry = (
            f'"{self.uuid}":{{"username":{encode(self.username)},'
            f'"state":{self.state}}}'
        )


class Presence:
    """Every connected user, in the order they joined."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        #: Grows by one with every join, update and leave.
        self.version = 0
        self._snapshot = "{}"
        self._snapshot_version = 0

    def __len__(self) -> int:
        return len(self._users)

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._users

    def get(self, uuid: str) -> User | None:
        return self._users.get(uuid)

    def join(self, uuid: str, username: str) -> User:
        """Add a user whose state is ``{}`` (the tutorial's ``state: {}``)."""
        if uuid in self._users:
            raise KeyError(f"user {uuid} is already here")
        user = self._users[uuid] = User(uuid, username)
        self.version += 1
        return user

    def update(self, uuid: str, state: str) -> User:
        """Replace a user's state with ``state`` (compact JSON text)."""
        user = self._users[uuid]
        user.set_state(state)
        self.version += 1
        return user

    def leave(self, uuid: str) -> User | None:
        """Remove a user; None if they were not here."""
        user = self._users.pop(uuid, None)
        if user is not None:
            self.version += 1
        return user

    def snapshot(self) -> str:
        """The whole map as compact JSON: ``{"<uuid>": {...}, ...}``.

        Built at most once per :attr:`version`.
        """
        if self._snapshot_version != self.version:
            entries = ",".join(user.entry for user in self._users.values())
            self._snapshot = "{" + entries + "}"
            self._snapshot_version = self.version
        return self._snapshot
