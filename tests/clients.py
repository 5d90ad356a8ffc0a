"""Helpers around the websockets library's sync client (an independent peer)."""

from __future__ import annotations

import json
from typing import Any

from websockets.exceptions import ConnectionClosed
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


def collect_until(ws: ClientConnection, predicate: Any) -> list[Any]:
    """Messages (as JSON) until one satisfies ``predicate``, or until none
    comes for TIMEOUT seconds: then the last one does not satisfy it. For
    tests whose check is that something arrives, stated as an assertion on
    what arrived."""
    messages = []
    while True:
        try:
            message = recv_json(ws)
        except TimeoutError:
            return messages
        messages.append(message)
        if predicate(message):
            return messages


def read_until_closed(ws: ClientConnection) -> list[str | bytes]:
    """Everything the server sends until it closes the connection, or until
    nothing comes for TIMEOUT seconds; ``ws.close_code`` then says how it
    closed (None: it is still open)."""
    messages: list[str | bytes] = []
    try:
        while True:
            messages.append(ws.recv(timeout=TIMEOUT))
    except (ConnectionClosed, TimeoutError):
        return messages


def last_until(ws: ClientConnection, predicate: Any) -> Any:
    """The first message (as JSON) that satisfies ``predicate``, else the last
    that came before TIMEOUT seconds of silence (``{}`` if none did): for an
    assertion on what arrived."""
    messages = collect_until(ws, predicate)
    return messages[-1] if messages else {}
