"""The presence app on the ``websockets`` library's threaded (sync) server.

    python scripts/bench/peers/websockets_sync.py --port 0

A peer for ``scripts/benchmark.py``: :func:`websockets.sync.server.serve`
runs :func:`handler` in one thread per connection. The users map sits behind
one lock (:class:`peercommon.Users`) and each reader thread broadcasts the
snapshot itself with ``connection.send``, outside the lock. Compression is
off, as it is in wspractice by default. ``/echo`` sends every message back.
"""

from __future__ import annotations

from peercommon import Users, announce, is_echo, parse_args, username_from
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

users: Users[ServerConnection] = Users()


def broadcast(snapshot: str, targets: list[ServerConnection]) -> None:
    for connection in targets:
        try:
            connection.send(snapshot)
        except ConnectionClosed:
            pass


def presence(connection: ServerConnection, username: str) -> None:
    user_id = users.join(connection, username)
    try:
        for message in connection:
            if isinstance(message, str):
                update = users.update(user_id, message)
                if update is not None:
                    broadcast(*update)
    except ConnectionClosed:
        pass
    finally:
        broadcast(*users.leave(user_id))


def echo(connection: ServerConnection) -> None:
    try:
        for message in connection:
            connection.send(message)
    except ConnectionClosed:
        pass


def handler(connection: ServerConnection) -> None:
    assert connection.request is not None
    path = connection.request.path
    if is_echo(path):
        echo(connection)
        return
    username = username_from(path)
    if username is None:
        connection.close(1008, "username is required")
        return
    presence(connection, username)


def main() -> None:
    args = parse_args(__doc__ or "")
    with serve(handler, args.host, args.port, compression=None) as server:
        announce(server.socket.getsockname()[1])
        server.serve_forever()


if __name__ == "__main__":
    main()
