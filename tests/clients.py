"""Helpers around the websockets library's sync client (an independent peer)."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect

from .conftest import TIMEOUT


def join(url: str, **kwargs: Any) -> ClientConnection:
    """Connect without compression, so frames are what the test expects."""
    kwargs.setdefault("compression", None)
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", TIMEOUT)
    return connect(url, **kwargs)


def recv_json(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(timeout=TIMEOUT))


def recv_until(ws: ClientConnection, predicate: Any) -> dict[str, Any]:
    """Read snapshots until one satisfies ``predicate``; return it."""
    while True:
        message = recv_json(ws)
        if predicate(message):
            return message  # type: ignore[no-any-return]


def users_named(snapshot: dict[str, Any]) -> dict[str, Any]:
    """username -> state (the tests give each user a distinct name)."""
    return {user["username"]: user["state"] for user in snapshot.values()}
