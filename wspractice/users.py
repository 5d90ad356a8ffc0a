"""The users map: who is here and what their state is.

The Node tutorial keeps ``users[uuid] = { username, state }`` and sends
``JSON.stringify(users)`` to everyone. :class:`Users` keeps the same map and
builds the same JSON, but does the work once: each user's entry is encoded
when the user joins or moves, and a snapshot is those entries joined.

Rule: this module does no I/O and takes no locks. Its owner, the presence
app (:mod:`wspractice.presence`), calls it under its own lock.
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
        self._prefix = f'"{self.uuid}":{{"username":{encode(self.username)},"state":'
        self.set_state(self.state)

    def set_state(self, state: str) -> None:
        self.state = state
        self.entry = self._prefix + state + "}"


class Users:
    """Every connected user, in the order they joined."""

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        #: Whether anything changed since the last :meth:`snapshot`.
        self.changed = False

    def __len__(self) -> int:
        return len(self._users)

    def join(self, uuid: str, username: str) -> User:
        """Add a user whose state is ``{}`` (the tutorial's ``state: {}``)."""
        if uuid in self._users:
            raise KeyError(f"user {uuid} is already here")
        user = self._users[uuid] = User(uuid, username)
        self.changed = True
        return user

    def update(self, uuid: str, state: str) -> User:
        """Replace a user's state with ``state`` (compact JSON text)."""
        user = self._users[uuid]
        user.set_state(state)
        self.changed = True
        return user

    def leave(self, uuid: str) -> User | None:
        """Remove a user; None if they were not here."""
        user = self._users.pop(uuid, None)
        if user is not None:
            self.changed = True
        return user

    def snapshot(self) -> str:
        """The whole map as compact JSON: ``{"<uuid>": {...}, ...}``.

        Clears :attr:`changed`.
        """
        self.changed = False
        return "{" + ",".join([user.entry for user in self._users.values()]) + "}"
