"""The presence app on the ``websocket-server`` package (``websocket_server``).

    python scripts/bench/peers/websocket_server_peer.py --port 0

A peer for ``scripts/benchmark.py``. The library runs a thread per
connection (``socketserver.ThreadingMixIn``) and calls back
``new_client``, ``message_received`` and ``client_left``; the callback for
a message broadcasts the snapshot from that client's thread. The library
reads the request line and drops it, so the path (``/echo`` or
``?username=``) would be lost: :class:`Handler` keeps it, and that is the only
change to the library's behaviour. The library does not support binary
messages, so ``/echo`` echoes text only.
"""

from __future__ import annotations

from typing import Any

from peercommon import Users, announce, is_echo, parse_args, username_from
from websocket_server import WebsocketServer  # type: ignore[import-untyped]
from websocket_server.websocket_server import (  # type: ignore[import-untyped]
    WebSocketHandler,
)

Client = dict[str, Any]


class Handler(WebSocketHandler):  # type: ignore[misc]
    """The library's handler, keeping the request path."""

    path = "/"

    def read_http_headers(self) -> dict[str, str]:
        headers = {}
        request_line = self.rfile.readline().decode().strip()
        assert request_line.upper().startswith("GET")
        self.path = request_line.split(" ")[1] if " " in request_line else "/"
        while True:
            header = self.rfile.readline().decode().strip()
            if not header:
                break
            head, value = header.split(":", 1)
            headers[head.lower().strip()] = value.strip()
        return headers


users: Users[Client] = Users()
#: Library client id -> our user id (absent for /echo clients).
user_ids: dict[int, str] = {}


def broadcast(server: WebsocketServer, snapshot: str, targets: list[Client]) -> None:
    for client in targets:
        try:
            server.send_message(client, snapshot)
        except OSError:
            pass


def new_client(client: Client, server: WebsocketServer) -> None:
    path = client["handler"].path
    if is_echo(path):
        return
    username = username_from(path)
    if username is None:
        client["handler"].send_close(1008, b"username is required")
        return
    user_ids[client["id"]] = users.join(client, username)


def message_received(client: Client, server: WebsocketServer, message: str) -> None:
    user_id = user_ids.get(client["id"])
    if user_id is None:
        server.send_message(client, message)  # /echo
        return
    update = users.update(user_id, message)
    if update is not None:
        broadcast(server, *update)


def client_left(client: Client | None, server: WebsocketServer) -> None:
    if client is None:
        return
    user_id = user_ids.pop(client["id"], None)
    if user_id is not None:
        broadcast(server, *users.leave(user_id))


def main() -> None:
    args = parse_args(__doc__ or "")
    server = WebsocketServer(host=args.host, port=args.port)
    server.RequestHandlerClass = Handler
    server.set_fn_new_client(new_client)
    server.set_fn_message_received(message_received)
    server.set_fn_client_left(client_left)
    announce(server.port)
    server.run_forever()


if __name__ == "__main__":
    main()
