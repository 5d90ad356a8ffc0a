"""The presence app on ``simple-websocket``, behind Werkzeug's WSGI server.

    python scripts/bench/peers/simple_websocket_peer.py --port 0

A peer for ``scripts/benchmark.py``. simple-websocket needs a WSGI server
that hands the application its socket; the least intrusive one is Werkzeug's
threaded server (what Flask-Sock uses in development), serving the plain
WSGI function :func:`app` with no framework. Each connection has the
server's request thread, which runs :func:`app`, and simple-websocket's
reader thread. ``Server.send`` is not thread-safe and other connections'
threads broadcast to this one, so each connection gets a send lock. When
the WebSocket is over, :func:`app` raises :class:`ConnectionError` so that
Werkzeug writes no HTTP response into it (Flask-Sock does the same).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, Callable

from peercommon import Users, announce, is_echo, parse_args, username_from
from simple_websocket import ConnectionClosed, Server  # type: ignore[import-untyped]
from werkzeug.serving import make_server


class Connection:
    """A simple-websocket server connection that several threads send to."""

    def __init__(self, ws: Server) -> None:
        self.ws = ws
        self.lock = threading.Lock()

    def send(self, data: str | bytes) -> None:
        with self.lock:
            self.ws.send(data)


users: Users[Connection] = Users()


def broadcast(snapshot: str, targets: list[Connection]) -> None:
    for connection in targets:
        try:
            connection.send(snapshot)
        except (ConnectionClosed, OSError):
            pass


def presence(connection: Connection, username: str) -> None:
    user_id = users.join(connection, username)
    try:
        while True:
            message = connection.ws.receive()
            if isinstance(message, str):
                update = users.update(user_id, message)
                if update is not None:
                    broadcast(*update)
    except ConnectionClosed:
        pass
    finally:
        broadcast(*users.leave(user_id))


def echo(connection: Connection) -> None:
    try:
        while True:
            connection.send(connection.ws.receive())
    except ConnectionClosed:
        pass


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"this is a WebSocket server\n"]
    path = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
    username = None if is_echo(path) else username_from(path)
    if not is_echo(path) and username is None:
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"username is required\n"]
    connection = Connection(Server.accept(environ))
    if username is None:
        echo(connection)
    else:
        presence(connection, username)
    raise ConnectionError("the WebSocket is closed")


def main() -> None:
    args = parse_args(__doc__ or "")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server(args.host, args.port, app, threaded=True)
    announce(server.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
