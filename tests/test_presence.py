"""The presence app over real sockets, with the websockets library as client.

What the tutorial's index.js does (joins, moves and leaves shared with
everyone, in its exact JSON) and where wspractice differs: bad messages get an
error reply instead of crashing the server, too many of them or too fast a
sender close with 1008, binary closes with 1003, and whatever one client does
costs the others nothing. Clients that offer the ``wspractice-delta``
subprotocol get only what changed; a client that applies those messages in
order holds exactly the map a tutorial client receives whole.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from .clients import join, last_until, recv_json, recv_until, users_named
from .conftest import TIMEOUT, RunningServer
from .rawws import OP_TEXT, RawClient, frame, upgrade_request
from .strictjson import strict_json

# ---------------------------------------------------------------- the tutorial


def test_a_new_user_receives_a_snapshot_with_itself(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex:
        snapshot = recv_json(alex)
    assert len(snapshot) == 1
    ((key, user),) = snapshot.items()
    assert uuid.UUID(key).version == 4
    assert user == {"username": "Alex", "state": {}}


def test_state_update_reaches_everyone_including_the_sender(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with join(server.url("/?username=Bob")) as bob:
            recv_json(bob)
            recv_json(alex)  # Bob joined.
            alex.send('{"x": 120, "y": 340}')
            for ws in (alex, bob):
                snapshot = recv_json(ws)
                assert users_named(snapshot) == {
                    "Alex": {"x": 120, "y": 340},
                    "Bob": {},
                }


def test_reply_is_the_exact_compact_json_of_the_tutorial(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex:
        key = next(iter(recv_json(alex)))
        alex.send('{"x": 120, "y": 340}')
        reply = alex.recv(timeout=TIMEOUT)
    assert reply == f'{{"{key}":{{"username":"Alex","state":{{"x":120,"y":340}}}}}}'


def test_two_users_see_each_other_join_move_and_leave(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with join(server.url("/?username=Bob")) as bob:
            assert set(users_named(recv_json(bob))) == {"Alex", "Bob"}
            assert set(users_named(recv_json(alex))) == {"Alex", "Bob"}
            bob.send(json.dumps({"x": 5, "y": 6}))
            seen = last_until(alex, lambda s: users_named(s)["Bob"] != {})
            assert users_named(seen) == {"Alex": {}, "Bob": {"x": 5, "y": 6}}
        left = last_until(alex, lambda s: len(s) == 1)
        assert users_named(left) == {"Alex": {}}, "Bob's leaving was not seen"


def test_each_connection_gets_its_own_uuid_even_with_one_name(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as one:
        recv_json(one)
        with join(server.url("/?username=Alex")) as two:
            snapshot = recv_json(two)
    assert len(snapshot) == 2
    assert [u["username"] for u in snapshot.values()] == ["Alex", "Alex"]


def test_many_users_at_once_all_end_with_their_last_state(
    server: RunningServer,
) -> None:
    count, moves = 20, 10
    errors: list[BaseException] = []
    finals: dict[int, Any] = {}
    barrier = threading.Barrier(count)

    def everyone_done(snapshot: dict[str, Any]) -> bool:
        states = users_named(snapshot)
        return len(states) == count and all(
            state == {"x": int(name[4:]), "y": moves - 1}
            for name, state in states.items()
        )

    def user(n: int) -> None:
        try:
            with join(server.url(f"/?username=user{n}")) as ws:
                recv_json(ws)
                barrier.wait(TIMEOUT)
                for i in range(moves):
                    ws.send(json.dumps({"x": n, "y": i}))
                # The last update anyone makes is broadcast to all, and
                # nobody leaves before everyone has seen it.
                finals[n] = last_until(ws, everyone_done)
                barrier.wait(TIMEOUT)
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * TIMEOUT)
    assert not errors, errors
    missed = [n for n in range(count) if not everyone_done(finals.get(n, {}))]
    assert not missed, f"users who never saw everyone's last state: {missed}"


# ---------------------------------------------------------------- bad messages


def test_bad_json_gets_an_error_reply_and_changes_nothing(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        alex.send('{"x": 1, "y": 2}')
        recv_json(alex)
        alex.send("not json")
        assert recv_json(alex) == {
            "error": "message is not valid JSON: Expecting value:"
            " line 1 column 1 (char 0)"
        }
        alex.send("[1, 2]")
        error = recv_json(alex)["error"]
        assert error.startswith("message must be a JSON object")
        alex.send('{"x": 3, "y": 4}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 3, "y": 4}}


def test_a_number_too_large_for_a_double_leaves_everyones_snapshots_json(
    server: RunningServer,
) -> None:
    # Bug 4 (found by fuzzing): Bob's 1e400 was stored as Infinity, and from
    # then on every snapshot was invalid JSON for every client.
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with join(server.url("/?username=Bob")) as bob:
            recv_until(alex, lambda s: len(s) == 2)
            recv_json(bob)
            bob.send('{"x": 1e400}')
            assert recv_json(bob) == {
                "error": "message is not usable: the number 1e400 is too large"
            }
            bob.send('{"x": 1}')
            texts = []
            # json.loads takes Infinity, so that the loop ends either way.
            while not texts or users_named(json.loads(texts[-1]))["Bob"] == {}:
                texts.append(alex.recv(timeout=TIMEOUT))
    not_json = []
    for text in texts:
        try:
            strict_json(text)
        except ValueError:
            not_json.append(text)
    assert not not_json, f"snapshots that JSON.parse refuses: {not_json}"
    assert users_named(strict_json(texts[-1])) == {"Alex": {}, "Bob": {"x": 1}}


def test_binary_message_closes_with_1003(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        alex.send(b'{"x": 1}')
        with pytest.raises(ConnectionClosed):
            alex.recv(timeout=TIMEOUT)
    assert alex.close_code == 1003
    assert alex.close_reason == "binary messages are not supported; send JSON text"


def test_ten_bad_messages_in_a_row_close_with_1008(
    start_server: Any,
) -> None:
    server = start_server(max_bad_messages=3)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        for _ in range(2):
            alex.send("oops")
            assert "error" in recv_json(alex)
        alex.send("oops")
        with pytest.raises(ConnectionClosed):
            alex.recv(timeout=TIMEOUT)
    assert alex.close_code == 1008
    assert alex.close_reason.startswith("3 bad messages in a row")


def test_a_good_message_resets_the_bad_message_count(start_server: Any) -> None:
    server = start_server(max_bad_messages=2)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        for i in range(3):
            alex.send("oops")
            assert "error" in recv_json(alex)
            alex.send(json.dumps({"i": i}))
            assert users_named(recv_json(alex)) == {"Alex": {"i": i}}
        # Three bad messages with max_bad_messages=2, never two in a row.
        assert alex.close_code is None


def test_a_burst_over_the_rate_limit_is_dropped_with_one_error(
    start_server: Any,
) -> None:
    server = start_server(rate_limit=5, rate_burst=3, broadcast_interval=0)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        for i in range(5):  # 3 pass, 2 are dropped (3 would be persistent)
            alex.send(json.dumps({"i": i}))
        replies = [recv_json(alex) for _ in range(4)]
        assert [users_named(r)["Alex"] for r in replies[:3]] == [
            {"i": 0},
            {"i": 1},
            {"i": 2},
        ]
        assert replies[3] == {
            "error": "too many messages: at most 5 a second (bursts of 3);"
            " messages are dropped until you slow down"
        }
        time.sleep(0.5)  # Tokens come back: the client may move again.
        alex.send(json.dumps({"i": 99}))
        assert users_named(recv_json(alex))["Alex"] == {"i": 99}


def test_persistent_excess_closes_with_1008(start_server: Any) -> None:
    server = start_server(rate_limit=20, rate_burst=10)
    with join(server.url("/?username=Bob")) as bob, join(
        server.url("/?username=Flood")
    ) as flood:
        with pytest.raises(ConnectionClosed):
            for i in range(10_000):
                flood.send(json.dumps({"i": i}))
                time.sleep(0.005)
        assert flood.close_code == 1008
        assert flood.close_reason == "message rate above 20 a second for too long"
        bob.send('{"x": 1}')
        last = last_until(bob, lambda s: users_named(s).get("Bob") == {"x": 1})
    assert users_named(last).get("Bob") == {"x": 1}, "Bob's move never reached him"


# ---------------------------------------------------------------- leaving


def test_eof_without_close_makes_the_user_leave(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with RawClient(server.port) as client:
            client.handshake("/?username=Bob")
            recv_until(alex, lambda s: len(s) == 2)
        # The raw socket closed without a close frame.
        left = last_until(alex, lambda s: len(s) == 1)
        assert users_named(left) == {"Alex": {}}, "Bob's leaving was not seen"


def test_a_connection_reset_by_the_client_makes_it_leave_and_costs_others_nothing(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        raw.sendall(upgrade_request("/?username=Bob"))
        recv_until(alex, lambda s: len(s) == 2)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # RST, not FIN.
        left = last_until(alex, lambda s: len(s) == 1)
        assert users_named(left) == {"Alex": {}}, "Bob never left after his reset"
        alex.send('{"x": 1}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 1}}


def test_a_protocol_violation_closes_one_user_and_keeps_the_others(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        alex.send('{"x": 1}')
        recv_json(alex)
        with RawClient(server.port) as client:
            client.handshake("/?username=Mallory")
            # Seen joining: a user who comes and goes within one round is
            # never broadcast at all.
            recv_until(alex, lambda s: len(s) == 2)
            client.send(frame(OP_TEXT, b"{}", rsv=2))
            assert client.read_close()[0] == 1002
        snapshot = last_until(alex, lambda s: len(s) == 1)
        assert users_named(snapshot) == {"Alex": {"x": 1}}, "Mallory did not leave"
        alex.send('{"x": 2}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 2}}


def test_a_bad_message_costs_others_nothing(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex, join(
        server.url("/?username=Bob")
    ) as bob:
        recv_until(alex, lambda s: len(s) == 2)
        recv_until(bob, lambda s: len(s) == 2)
        alex.send('{"x": 1}')
        recv_until(bob, lambda s: users_named(s)["Alex"] == {"x": 1})
        bob.send("}{")
        assert "error" in recv_json(bob)
        bob.send(b"\x00binary")
        with pytest.raises(ConnectionClosed):
            recv_json(bob)
        assert bob.close_code == 1003
        # Alex keeps the connection and the state; Bob's departure is seen.
        snapshot = last_until(alex, lambda s: len(s) == 1)
        assert users_named(snapshot) == {"Alex": {"x": 1}}, "Bob did not leave"
        alex.send('{"x": 2}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 2}}


# ---------------------------------------------------------------- changes only

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
        for key, user in message.get("joined", {}).items():
            assert key not in self.users, f"{key} joined twice"
            self.users[key] = user
        for key, state in message.get("updated", {}).items():
            self.users[key]["state"] = state
        for key in message.get("left", []):
            del self.users[key]


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
            if i == 150:  # Carl joins and leaves while Slow is behind.
                carl = RawClient(server.port)
                carl.handshake("/?username=Carl")
            if i == 200:
                carl.close()
        final = recv_until(
            alex,
            lambda s: users_named(s).get("Alex", {}).get("i") == 299
            and users_named(s).get("Bob", {}).get("i") == -299
            and "Carl" not in users_named(s),
        )
        # Now Slow reads, with room to read quickly.
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
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
