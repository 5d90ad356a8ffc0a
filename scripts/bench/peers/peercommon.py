"""What the Python peer servers of the benchmark share.

Each peer (``websockets_sync.py``, ``simple_websocket_peer.py``,
``websocket_server_peer.py``) is the presence app of the Node tutorial written
the plain way with one library: a users map under one lock, a snapshot
encoded with :func:`json.dumps` after every update and sent to every
connection from the thread that read the update. No join snapshot, no
coalescing: a user first hears from the server when someone sends an update,
as in the tutorial. This module holds that map, the command line and the
startup line, so the peers differ only in how they use their library.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import uuid
from typing import Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

Conn = TypeVar("Conn")

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on; 0 picks a free one"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return args


def announce(port: int) -> None:
    """The startup line the benchmark driver waits for (the tutorial's)."""
    print(f"WebSocket server is running on port {port}", flush=True)


def is_echo(path: str) -> bool:
    return urlsplit(path).path == "/echo"


def username_from(path: str) -> str | None:
    """``?username=NAME`` as the tutorial reads it, or None."""
    names = parse_qs(urlsplit(path).query).get("username")
    return names[0] if names else None


class Users(Generic[Conn]):
    """The tutorial's ``connections`` and ``users``, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: dict[str, Conn] = {}
        self.users: dict[str, dict[str, object]] = {}

    def join(self, conn: Conn, username: str) -> str:
        user_id = str(uuid.uuid4())
        with self.lock:
            self.connections[user_id] = conn
            self.users[user_id] = {"username": username, "state": {}}
        return user_id

    def update(self, user_id: str, message: str) -> tuple[str, list[Conn]] | None:
        """The tutorial's ``handleMessage``: the snapshot and whom to send it to.

        None if the message is not a JSON object (the tutorial would crash).
        """
        try:
            state = json.loads(message)
        except ValueError:
            return None
        if not isinstance(state, dict):
            return None
        with self.lock:
            self.users[user_id]["state"] = state
            return _encoder.encode(self.users), list(self.connections.values())

    def leave(self, user_id: str) -> tuple[str, list[Conn]]:
        """The tutorial's ``handleClose``: forget the user, tell the others."""
        with self.lock:
            self.connections.pop(user_id, None)
            self.users.pop(user_id, None)
            return _encoder.encode(self.users), list(self.connections.values())
