"""The presence app over real sockets, with the websockets library as client."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT, RunningServer


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
            seen = recv_until(alex, lambda s: users_named(s)["Bob"] != {})
            assert users_named(seen)["Bob"] == {"x": 5, "y": 6}
        left = recv_until(alex, lambda s: len(s) == 1)
        assert users_named(left) == {"Alex": {}}


def test_each_connection_gets_its_own_uuid_even_with_one_name(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as one:
        recv_json(one)
        with join(server.url("/?username=Alex")) as two:
            snapshot = recv_json(two)
    assert len(snapshot) == 2
    assert [u["username"] for u in snapshot.values()] == ["Alex", "Alex"]


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
        snapshot = recv_until(alex, lambda s: len(s) == 1)
        assert users_named(snapshot) == {"Alex": {"x": 1}}
        alex.send('{"x": 2}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 2}}


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
        for _ in range(3):
            alex.send("oops")
            assert "error" in recv_json(alex)
            alex.send("{}")
            recv_json(alex)


def test_message_over_the_limit_closes_with_1009(start_server: Any) -> None:
    server = start_server(max_message_size=100)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        alex.send(json.dumps({"pad": "x" * 90}))  # 101 bytes
        with pytest.raises(ConnectionClosed):
            alex.recv(timeout=TIMEOUT)
    assert alex.close_code == 1009
    assert alex.close_reason == "message is larger than 100 bytes"


def test_the_limit_counts_fragments_together(start_server: Any) -> None:
    server = start_server(max_message_size=100)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        alex.send(iter(['{"pad": "', "x" * 40, "x" * 40, '"}']))  # 91 bytes
        assert len(users_named(recv_json(alex))["Alex"]["pad"]) == 80
        with pytest.raises(ConnectionClosed):
            # The server may close before the last fragment is even sent.
            alex.send(iter(['{"pad": "', "x" * 50, "x" * 50, '"}']))  # 111 bytes
            alex.recv(timeout=TIMEOUT)
    assert alex.close_code == 1009


def test_many_users_at_once_all_end_with_their_last_state(
    server: RunningServer,
) -> None:
    count, moves = 20, 10
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def user(n: int) -> None:
        try:
            with join(server.url(f"/?username=user{n}")) as ws:
                recv_json(ws)
                barrier.wait(TIMEOUT)
                for i in range(moves):
                    ws.send(json.dumps({"x": n, "y": i}))
                # The last update anyone makes is broadcast to all, and
                # nobody leaves before everyone has seen it.
                final = recv_until(
                    ws,
                    lambda s: len(s) == count
                    and all(st.get("y") == moves - 1 for st in users_named(s).values()),
                )
                assert users_named(final)[f"user{n}"] == {"x": n, "y": moves - 1}
                barrier.wait(TIMEOUT)
        except BaseException as exc:  # noqa: B036 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(4 * TIMEOUT)
    assert not errors, errors
