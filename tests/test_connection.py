"""RFC 6455 behaviour on the wire: control frames, closing, errors, limits."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from wspractice.connection import Connection
from wspractice.echo import EchoApp

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT, RunningServer
from .rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    close_frame,
    frame,
    upgrade_request,
)


def test_ping_is_answered_with_a_pong_carrying_the_same_payload(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(frame(OP_PING, b"are you there?"))
        assert client.read_frame() == (OP_PONG, True, b"are you there?")


def test_client_close_is_answered_and_the_server_closes_tcp(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(close_frame(1000, "bye"))
        assert client.read_close() == (1000, "bye")
        assert client.at_eof()


def test_close_without_a_status_code_is_answered_with_an_empty_close(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(frame(OP_CLOSE))
        assert client.read_frame() == (OP_CLOSE, True, b"")
        assert client.at_eof()


def test_frame_in_the_same_packet_as_the_handshake_is_not_lost(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request("/echo") + frame(OP_TEXT, b"early bird"))
        assert client.read_response().status == 101
        assert client.read_frame() == (OP_TEXT, True, b"early bird")


def test_state_in_the_same_packet_as_the_handshake_is_applied(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request() + frame(OP_TEXT, b'{"x": 7, "y": 8}'))
        assert client.read_response().status == 101
        # The join and the update may come as one coalesced snapshot.
        while True:
            snapshot = json.loads(client.read_frame()[2])
            if users_named(snapshot) != {"Alex": {}}:
                break
    assert users_named(snapshot) == {"Alex": {"x": 7, "y": 8}}


def test_eof_without_close_makes_the_user_leave(server: RunningServer) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with RawClient(server.port) as client:
            client.handshake("/?username=Bob")
            recv_until(alex, lambda s: len(s) == 2)
        # The raw socket closed without a close frame.
        assert users_named(recv_until(alex, lambda s: len(s) == 1)) == {"Alex": {}}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            frame(OP_TEXT, b"hi", mask=False),
            "server received unexpected unmasked frame",
        ),
        (frame(0x3, b"hi"), "Invalid opcode 0x3"),
        (frame(OP_TEXT, b"hi", rsv=4), "Reserved bit set unexpectedly"),
        (frame(OP_CONT, b"hi"), "unexpected CONTINUATION"),
        (frame(OP_PING, b"", fin=False), "Invalid attempt to fragment control frame"),
        (frame(OP_PING, b"x" * 126), "Control frame with payload len > 125"),
        (frame(OP_CLOSE, b"\x03"), "CLOSE with 1 byte payload"),
        (close_frame(999), "CLOSE with invalid code"),
    ],
)
def test_protocol_violations_close_with_1002(
    server: RunningServer, data: bytes, reason: str
) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(data)
        assert client.read_close() == (1002, reason)
        assert client.at_eof()


def test_protocol_violation_in_the_presence_app_keeps_others_connected(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        alex.send('{"x": 1}')
        recv_json(alex)
        with RawClient(server.port) as client:
            client.handshake("/?username=Mallory")
            client.send(frame(OP_TEXT, b"{}", rsv=2))
            assert client.read_close()[0] == 1002
        snapshot = recv_until(alex, lambda s: len(s) == 1)
        assert users_named(snapshot) == {"Alex": {"x": 1}}
        alex.send('{"x": 2}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 2}}


def test_invalid_utf8_text_closes_with_1007(server: RunningServer) -> None:
    with RawClient(server.port) as client:
        client.handshake()
        client.read_frame()  # The join snapshot.
        client.send(frame(OP_TEXT, b'{"x": "\xff"}'))
        code, reason = client.read_close()
    assert code == 1007
    assert "can't decode byte 0xff" in reason


def test_invalid_utf8_split_across_fragments_closes_with_1007(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(frame(OP_TEXT, b"caf\xc3", fin=False))
        client.send(frame(OP_CONT, b"\x28", fin=True))
        assert client.read_close()[0] == 1007


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


def test_echo_handles_a_message_split_into_many_frames(server: RunningServer) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        parts = [b"a" * 10] * 100
        data = frame(OP_BINARY, parts[0], fin=False)
        data += b"".join(frame(OP_CONT, p, fin=False) for p in parts[1:-1])
        data += frame(OP_CONT, parts[-1], fin=True)
        client.send(data)
        opcode, fin, payload = client.read_frame()
    assert (opcode, fin, payload) == (OP_BINARY, True, b"a" * 1000)


def test_pings_between_fragments_are_answered(server: RunningServer) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(frame(OP_TEXT, b"one ", fin=False))
        client.send(frame(OP_PING, b"p"))
        client.send(frame(OP_CONT, b"two", fin=True))
        assert client.read_frame() == (OP_PONG, True, b"p")
        assert client.read_frame() == (OP_TEXT, True, b"one two")


def test_echo_message_over_the_limit_closes_with_1009(start_server: Any) -> None:
    server = start_server(max_message_size=1000)
    with join(server.url("/echo")) as ws:
        ws.send(b"x" * 1000)
        assert len(ws.recv(timeout=TIMEOUT)) == 1000
        ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
    assert ws.close_code == 1009
    assert ws.close_reason == "message is larger than 1000 bytes"


def test_a_huge_declared_length_is_refused_without_waiting_for_it(
    start_server: Any,
) -> None:
    server = start_server(max_message_size=1000)
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(frame(OP_BINARY, b"x" * 2000, length=1 << 40)[:2014])
        assert client.read_close() == (1009, "message is larger than 1000 bytes")


class BrokenEcho(EchoApp):
    """An endpoint with a bug, to exercise the server's error path."""

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        if message == "crash":
            raise RuntimeError("a bug in the endpoint")
        super().handle_message(connection, message)


def test_an_unexpected_error_closes_with_1011_and_is_logged_not_sent(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.server.websockets.add_endpoint("/echo", BrokenEcho())
    with caplog.at_level(logging.ERROR, logger="wspractice"):
        with join(server.url("/echo")) as ws:
            ws.send("fine")
            assert ws.recv(timeout=TIMEOUT) == "fine"
            ws.send("crash")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
    assert ws.close_code == 1011
    assert ws.close_reason == "internal server error"
    assert any(
        record.exc_info and "a bug in the endpoint" in str(record.exc_info[1])
        for record in caplog.records
    )


def test_a_client_that_never_answers_our_close_is_dropped(start_server: Any) -> None:
    server = start_server(close_timeout=0.3)
    with RawClient(server.port) as client:
        client.handshake()
        client.read_frame()
        client.send(frame(OP_BINARY, b"x"))  # Presence: 1003, then silence.
        assert client.read_close()[0] == 1003
        assert client.at_eof()


def test_closing_handshake_ends_with_the_server_closing_tcp_first(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.handshake()
        client.read_frame()
        client.send(close_frame(1000))
        assert client.read_close() == (1000, "")
        client.sock.settimeout(TIMEOUT)
        assert client.sock.recv(1) == b""  # FIN from the server.


def test_server_shutdown_closes_every_websocket_with_1001(
    start_server: Any,
) -> None:
    server = start_server()
    with join(server.url("/?username=Alex")) as alex, join(server.url("/echo")) as echo:
        recv_json(alex)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        for ws in (alex, echo):
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=TIMEOUT)
        stopper.join(TIMEOUT)
    assert (alex.close_code, alex.close_reason) == (1001, "server shutting down")
    assert echo.close_code == 1001
    assert not stopper.is_alive()


def test_connection_reset_by_the_client_costs_others_nothing(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        raw = socket.create_connection(("127.0.0.1", server.port))
        raw.sendall(upgrade_request("/?username=Bob"))
        recv_until(alex, lambda s: len(s) == 2)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # RST, not FIN.
        recv_until(alex, lambda s: len(s) == 1)
        alex.send("{}")
        assert len(recv_json(alex)) == 1


def test_an_idle_client_is_pinged_and_stays_if_it_answers(start_server: Any) -> None:
    server = start_server(ping_interval=0.2, ping_timeout=0.5)
    with RawClient(server.port) as client:
        client.handshake("/echo")
        for _ in range(3):
            opcode, fin, payload = client.read_frame()
            assert (opcode, fin, len(payload)) == (OP_PING, True, 4)
            client.send(frame(OP_PONG, payload))
        client.send(frame(OP_TEXT, b"still here"))
        while (frame_ := client.read_frame())[0] == OP_PING:
            client.send(frame(OP_PONG, frame_[2]))
        assert frame_ == (OP_TEXT, True, b"still here")


def test_a_client_that_never_answers_pings_is_closed_with_1011(
    start_server: Any,
) -> None:
    server = start_server(ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port) as client:
        client.handshake("/echo")
        assert client.read_frame()[0] == OP_PING
        assert client.read_close() == (
            1011,
            "keepalive ping timeout: no pong within 0.3 s",
        )


def test_a_pong_with_the_wrong_payload_does_not_count(start_server: Any) -> None:
    server = start_server(ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port) as client:
        client.handshake("/echo")
        assert client.read_frame()[0] == OP_PING
        client.send(frame(OP_PONG, b"nope"))
        assert client.read_close()[0] == 1011


def test_websockets_client_stays_connected_across_pings(start_server: Any) -> None:
    server = start_server(ping_interval=0.1, ping_timeout=0.5)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        threading.Event().wait(0.6)  # Several ping intervals, idle.
        alex.send('{"x": 1}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 1}}


def test_too_many_fragments_in_one_message_close_with_1008(
    start_server: Any,
) -> None:
    server = start_server(max_message_size=1024)  # 64 fragments at most
    with RawClient(server.port) as client:
        client.handshake("/echo")
        data = frame(OP_TEXT, b"", fin=False)
        data += b"".join(frame(OP_CONT, b"", fin=False) for _ in range(62))
        client.send(data + frame(OP_CONT, b"ok", fin=True))  # 64 frames
        assert client.read_frame() == (OP_TEXT, True, b"ok")
        data = frame(OP_TEXT, b"", fin=False)
        data += b"".join(frame(OP_CONT, b"", fin=False) for _ in range(64))
        client.send(data)
        assert client.read_close() == (
            1008,
            "message split into more than 64 fragments",
        )
