"""Changes only, for clients that ask: the ``wspractice-delta`` subprotocol.

The property every test comes back to: a delta client that applies its
messages in order holds exactly the map that the server holds, the map a
tutorial client receives whole.
"""

from __future__ import annotations

import json
import socket
import time
from contextlib import ExitStack
from typing import Any

from websockets.sync.client import ClientConnection

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT, RunningServer
from .rawws import OP_TEXT, RawClient, upgrade_request

DELTA = "wspractice-delta"


class DeltaView:
    """A delta client's copy of the map, built from its messages."""

    def __init__(self) -> None:
        self.you: str | None = None
        self.users: dict[str, Any] = {}
        self.messages = 0

    def apply(self, message: dict[str, Any]) -> None:
        self.messages += 1
        if self.messages == 1:
            assert set(message) == {"you", "users"}, message
            self.you, self.users = message["you"], message["users"]
            return
        assert message, "an empty delta is never sent"
        assert set(message) <= {"joined", "updated", "left"}, message
        for part in ("joined", "updated", "left"):
            assert part not in message or message[part], f"empty {part} sent"
        for uuid, user in message.get("joined", {}).items():
            assert uuid not in self.users, f"{uuid} joined twice"
            self.users[uuid] = user
        for uuid, state in message.get("updated", {}).items():
            self.users[uuid]["state"] = state
        for uuid in message.get("left", []):
            del self.users[uuid]


def join_delta(server: RunningServer, name: str) -> ClientConnection:
    ws = join(server.url(f"/?username={name}"), subprotocols=[DELTA])
    assert ws.subprotocol == DELTA
    return ws


def read_until(ws: ClientConnection, view: DeltaView, wanted: Any) -> None:
    """Apply messages until ``wanted(view.users)`` holds."""
    while not wanted(view.users):
        view.apply(json.loads(ws.recv(timeout=TIMEOUT)))


def named(users: dict[str, Any]) -> dict[str, Any]:
    return users_named(users)


def test_the_subprotocol_is_selected_only_when_offered(server: RunningServer) -> None:
    with join(server.url("/?username=A"), subprotocols=["chat", DELTA]) as ws:
        assert ws.subprotocol == DELTA
    with join(server.url("/?username=B"), subprotocols=["chat"]) as ws:
        assert ws.subprotocol is None
    with join(server.url("/?username=C")) as ws:
        assert ws.subprotocol is None
    with join(server.url("/echo"), subprotocols=[DELTA]) as ws:
        assert ws.subprotocol is None  # /echo defines none.


def test_the_first_message_is_you_and_the_whole_map(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex:
        alex.send('{"x": 1}')
        recv_until(alex, lambda s: users_named(s) == {"Alex": {"x": 1}})
        with join_delta(server, "Bob") as bob:
            first = recv_json(bob)
            assert set(first) == {"you", "users"}
            assert named(first["users"]) == {"Alex": {"x": 1}, "Bob": {}}
            assert first["users"][first["you"]]["username"] == "Bob"


def test_then_only_what_changed_in_each_round(start_server: Any) -> None:
    server = start_server(broadcast_interval=0)  # One round per change.
    with join_delta(server, "Alex") as alex:
        view = DeltaView()
        view.apply(recv_json(alex))
        with join(server.url("/?username=Bob")) as bob:
            joined = recv_json(alex)
            ((bob_id, bob_user),) = joined["joined"].items()
            assert joined == {"joined": {bob_id: {"username": "Bob", "state": {}}}}
            assert bob_user["username"] == "Bob"
            bob.send('{"x": 5}')
            assert recv_json(alex) == {"updated": {bob_id: {"x": 5}}}
        assert recv_json(alex) == {"left": [bob_id]}


def test_delta_and_tutorial_clients_share_a_room_and_agree(
    server: RunningServer,
) -> None:
    """Joins, moves, leaves and reconnects; at the end every delta client's
    view equals the map a tutorial client receives."""
    with ExitStack() as stack, join(server.url("/?username=Watcher")) as watcher:

        def enter(ws: ClientConnection) -> ClientConnection:
            return stack.enter_context(ws)

        deltas = {name: enter(join_delta(server, name)) for name in ("D1", "D2", "D3")}
        fulls = {
            name: enter(join(server.url(f"/?username={name}"))) for name in ("F1", "F2")
        }
        for step in range(30):
            for name, ws in {**deltas, **fulls}.items():
                ws.send(json.dumps({"step": step, "who": name}))
            if step == 10:  # D2 leaves; F2 reconnects with a new uuid.
                deltas.pop("D2").close()
                fulls["F2"].close()
                fulls["F2"] = enter(join(server.url("/?username=F2")))
            if step == 20:  # A newcomer in the middle of the movement.
                deltas["D4"] = enter(join_delta(server, "D4"))
        for name, ws in {**deltas, **fulls}.items():
            ws.send(json.dumps({"final": name}))
        expected = {name: {"final": name} for name in [*deltas, *fulls]}
        expected["Watcher"] = {}
        final = recv_until(watcher, lambda s: users_named(s) == expected)
        for name, ws in deltas.items():
            view = DeltaView()
            read_until(ws, view, lambda users: users_named(users) == expected)
            assert view.users == final, name
            assert list(view.users) == list(final), f"{name}: join order"


def test_a_slow_delta_reader_gets_merged_changes_never_a_gap(
    start_server: Any,
) -> None:
    # No keepalive pings: the slow reader sends nothing for a long while.
    server = start_server(
        broadcast_interval=0, rate_limit=0, send_timeout=30, ping_interval=0
    )
    slow = RawClient(server.port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.handshake("/?username=Slow", extra=f"Sec-WebSocket-Protocol: {DELTA}\r\n")
    with join(server.url("/?username=Alex")) as alex, join(
        server.url("/?username=Bob")
    ) as bob:
        recv_until(alex, lambda s: len(s) == 3)
        # Slow reads nothing while 600 rounds of ~1 KB go out: its kernel
        # buffers (about 260 KB) fill, and what it has not been sent is merged.
        for i in range(300):
            alex.send(json.dumps({"i": i, "pad": "a" * 900}))
            bob.send(json.dumps({"i": -i, "pad": "b" * 900}))
            if i == 150:
                carl = join(server.url("/?username=Carl")).__enter__()
            if i == 200:
                carl.__exit__(None, None, None)
        final = recv_until(
            alex,
            lambda s: users_named(s).get("Alex", {}).get("i") == 299
            and users_named(s).get("Bob", {}).get("i") == -299
            and "Carl" not in users_named(s),
        )
        view = DeltaView()
        while view.users != final:  # read_frame fails after TIMEOUT of silence.
            opcode, fin, payload = slow.read_frame()
            assert (opcode, fin) == (OP_TEXT, True)
            view.apply(json.loads(payload))
        # Fewer messages than rounds: what waited was merged.
        assert view.messages < 600, view.messages
        assert list(view.users) == list(final)
    slow.close()


def test_a_state_over_max_state_size_is_refused_and_the_old_one_stays(
    start_server: Any,
) -> None:
    server = start_server(max_state_size=20)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        alex.send('{"x": 1, "y": 2}')  # 13 bytes once compact.
        recv_until(alex, lambda s: users_named(s) == {"Alex": {"x": 1, "y": 2}})
        alex.send(json.dumps({"note": "x" * 20}))
        reply = recv_json(alex)
        assert reply == {
            "error": "state is 31 bytes of JSON; at most 20 are allowed"
            " (--max-state-size); your state is unchanged"
        }
        alex.send('{"x": 3}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 3}}


def test_beyond_max_connections_per_address_upgrades_get_429(
    start_server: Any,
) -> None:
    server = start_server(max_connections_per_address=2)
    with ExitStack() as stack:
        first = stack.enter_context(join(server.url("/echo")))
        stack.enter_context(join(server.url("/?username=B")))
        with RawClient(server.port) as third:
            third.send(upgrade_request("/echo"))
            response = third.read_response()
        assert response.status == 429
        assert response.headers["retry-after"] == "5"
        assert response.body.decode() == (
            "too many WebSockets from 127.0.0.1: 2 are open"
            " (--max-connections-per-address)\n"
        )
        first.close()
        statuses = []
        deadline = time.monotonic() + TIMEOUT
        while not statuses or statuses[-1] != 101:  # Once the close is seen.
            assert time.monotonic() < deadline, statuses
            with RawClient(server.port) as again:
                again.send(upgrade_request("/echo"))
                statuses.append(again.read_response().status)
        assert set(statuses) <= {429, 101}
