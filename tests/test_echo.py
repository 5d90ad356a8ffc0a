"""``/echo``: every message comes back unchanged, and nothing else happens."""

from __future__ import annotations

import json

from .clients import join, recv_json, users_named
from .conftest import TIMEOUT, RunningServer


def test_echo_returns_text_and_binary_unchanged(server: RunningServer) -> None:
    with join(server.url("/echo")) as ws:
        ws.send("héllo 王")
        assert ws.recv(timeout=TIMEOUT) == "héllo 王"
        ws.send(bytes(range(256)))
        assert ws.recv(timeout=TIMEOUT) == bytes(range(256))
        ws.send("")
        assert ws.recv(timeout=TIMEOUT) == ""
        ws.send(iter([b"frag", b"men", b"ted"]))
        assert ws.recv(timeout=TIMEOUT) == b"fragmented"


def test_an_echo_client_is_not_a_user_of_the_presence_app(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with join(server.url("/echo")) as echo:
            echo.send('{"x": 1}')
            assert echo.recv(timeout=TIMEOUT) == '{"x": 1}'
            alex.send(json.dumps({"x": 2}))
            # The next snapshot is Alex's move, and Alex is alone in it.
            assert users_named(recv_json(alex)) == {"Alex": {"x": 2}}
            with server.server.presence.lock:
                assert len(server.server.presence.connections) == 1
