"""A connection on the wire: the connection core's rules through the I/O shell.

test_protocol.py drives the core with byte strings and a fake clock; these
tests check, over a real socket, that the shell carries out what it decides
(control frames, closing and closing TCP first, errors, limits, keepalive,
backpressure, dropping a client) and that the endpoint's errors close one
connection only. Most run on /echo, where nothing else is going on.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import tracemalloc
import zlib
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from wspractice.connection import Connection
from wspractice.echo import EchoApp
from wspractice.errors import PolicyViolation

from .clients import join, recv_json, users_named
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
    read_until_closed,
    upgrade_request,
)


def echo_connections(server: RunningServer) -> list[Connection]:
    """The server's open connections to /echo."""
    clients = list(server.server.websockets.clients)
    return [c for c in clients if c.request.path == "/echo"]


def connection_threads_end(server: RunningServer) -> bool:
    """Wait until every WebSocket's thread is done; False after TIMEOUT."""
    return server.server.websockets.wait_closed(TIMEOUT)


# ----------------------------------------------- control frames and closing


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


def test_closing_handshake_ends_with_the_server_closing_tcp_first(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.handshake()
        client.read_frame()
        client.send(close_frame(1000))
        assert client.read_close() == (1000, "")
        # FIN from the server, without waiting for ours.
        assert read_until_closed(client.sock) == (b"", "eof")


def test_a_client_that_never_answers_our_close_is_dropped(start_server: Any) -> None:
    server = start_server(close_timeout=0.3)
    with RawClient(server.port) as client:
        client.handshake()
        client.read_frame()
        client.send(frame(OP_BINARY, b"x"))  # Presence: 1003, then silence.
        assert client.read_close()[0] == 1003
        assert client.at_eof()


# ---------------------------------------------------------- protocol errors


#: A protocol violation and the reason wsproto gives for it.
VIOLATIONS = [
    (frame(OP_TEXT, b"hi", mask=False), "server received unexpected unmasked frame"),
    (frame(0x3, b"hi"), "Invalid opcode 0x3"),
    (frame(OP_TEXT, b"hi", rsv=4), "Reserved bit set unexpectedly"),
    (frame(OP_CONT, b"hi"), "unexpected CONTINUATION"),
    (frame(OP_PING, b"", fin=False), "Invalid attempt to fragment control frame"),
    (frame(OP_PING, b"x" * 126), "Control frame with payload len > 125"),
    (frame(OP_CLOSE, b"\x03"), "CLOSE with 1 byte payload"),
    (close_frame(999), "CLOSE with invalid code"),
]


@pytest.mark.parametrize(
    ("data", "reason"),
    # Named by the reason: the frames' masks are random.
    [pytest.param(data, reason, id=reason) for data, reason in VIOLATIONS],
)
def test_protocol_violations_close_with_1002(
    server: RunningServer, data: bytes, reason: str
) -> None:
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(data)
        assert client.read_close() == (1002, reason)
        assert client.at_eof()


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


# ------------------------------------------------ messages and their limits


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


def test_a_message_over_the_limit_closes_with_1009_without_waiting_for_it(
    start_server: Any,
) -> None:
    server = start_server(max_message_size=1000)
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(frame(OP_BINARY, b"x" * 1000))
        assert client.read_frame() == (OP_BINARY, True, b"x" * 1000)  # At the limit.
        # A frame that declares a terabyte is refused as soon as 1001 bytes
        # of it are in, not once it is all there.
        client.send(frame(OP_BINARY, b"x" * 2000, length=1 << 40)[:2014])
        assert client.read_close() == (1009, "message is larger than 1000 bytes")


def test_a_deflate_bomb_is_refused_before_it_is_inflated(start_server: Any) -> None:
    # Bug 5 (found probing the limits): with --compression, wsproto inflated
    # whole compressed chunks and went on inflating the rest of the frame
    # after the 1009: 64 KiB on the wire cost ~64 MiB in the server, however
    # small --max-message-size was.
    server = start_server(compression=True)  # --max-message-size 32768
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflate.compress(bytes(64 * 1024 * 1024)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]  # RFC 7692: the sync flush's tail is left off.
    assert len(bomb) < 65536
    with RawClient(server.port) as client:
        extra = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
        response = client.handshake("/echo", extra=extra)
        assert "permessage-deflate" in response.headers["sec-websocket-extensions"]
        tracemalloc.start()
        try:
            client.send(frame(OP_BINARY, bomb, rsv=4))  # RSV1: compressed
            code, reason = client.read_close()
            client.send(close_frame(1000))
            assert client.at_eof()  # The server is done with the frame.
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code == 1009, reason
    # Was: about 190 MiB, for one 64 KiB frame.
    assert peak < 16 * 1024 * 1024, f"{peak / 2**20:.0f} MiB to refuse 64 KiB"


# ---------------------------------------------------- the endpoint's errors


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


class StrictEcho(EchoApp):
    """An endpoint that closes with its own code, as an app may."""

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        if message == "shout":
            raise PolicyViolation("no shouting here")
        super().handle_message(connection, message)


def test_a_close_error_from_the_endpoint_closes_with_its_code(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.server.websockets.add_endpoint("/echo", StrictEcho())
    with caplog.at_level(logging.ERROR, logger="wspractice"):
        with join(server.url("/echo")) as ws:
            ws.send("fine")
            assert ws.recv(timeout=TIMEOUT) == "fine"
            ws.send("shout")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=TIMEOUT)
    assert (ws.close_code, ws.close_reason) == (1008, "no shouting here")
    assert not caplog.records  # An app's own close is not an error.


# ---------------------------------------------------------------- keepalive


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


# -------------------------------------------------------- dropping a client


def test_a_client_flooding_pings_without_reading_is_dropped(
    start_server: Any,
) -> None:
    server = start_server(send_timeout=0.5)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        flood = RawClient(server.port)
        flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flood.handshake("/echo")
        ping = frame(OP_PING, b"p" * 125)
        # Pongs pile up and the server stops reading: send until we block.
        flood.sock.settimeout(TIMEOUT / 5)
        try:
            while True:
                flood.send(ping * 64)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
        # It has taken nothing for send_timeout: the server drops it. Wait
        # for that without reading, which would make room for more pongs.
        deadline = time.monotonic() + 3 * TIMEOUT
        while echo_connections(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not echo_connections(server), "a client that read nothing was kept"
        # What the server had sent, then FIN or a reset: it never waits.
        _, how = read_until_closed(flood.sock)
        flood.close()
        assert how in ("eof", "reset")
        alex.send('{"x": 2}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 2}}


class Recorder(EchoApp):
    """/echo that notes, for each message, whether its connection was dropped."""

    def __init__(self) -> None:
        self.after_abort = 0
        self.messages = 0

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        self.messages += 1
        if connection.protocol.abort_reason is not None:
            self.after_abort += 1
        super().handle_message(connection, message)


def test_a_dropped_client_has_no_more_messages_handled(start_server: Any) -> None:
    # Bug 6 (found probing the limits): after abort() (send timeout, close
    # timeout) the reader went on reading and handling the client's
    # messages: a client that kept sending was never really dropped.
    server = start_server(send_timeout=0.5, max_message_size=256 * 1024)
    recorder = Recorder()
    server.server.websockets.add_endpoint("/echo", recorder)
    client = RawClient(server.port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.handshake("/echo")
    # Each message is larger than one read (64 KiB), so that when the
    # connection is dropped at most one message is on its way to the app.
    payload = b"m" * 128 * 1024
    message = frame(OP_BINARY, payload)
    # One round trip first: the flood below is then read by the
    # connection's own loop, not with the handshake.
    client.send(message)
    assert client.read_frame() == (OP_BINARY, True, payload)
    # From now on it never reads: echoes fill its buffers, the server stops
    # reading, and drops it after send_timeout. Keep sending until it does.
    client.sock.settimeout(3 * TIMEOUT)
    try:
        while True:
            client.send(message)
    except TimeoutError:
        dropped = False
    except OSError:
        dropped = True
    client.close()
    assert dropped, f"a client that read nothing was kept for {3 * TIMEOUT} s"
    assert connection_threads_end(server), "the dropped connection's thread goes on"
    assert recorder.messages > 1
    # Was: hundreds of messages, read and echoed after the drop. Now at most
    # the one being handed over when the writer thread dropped the client.
    assert recorder.after_abort <= 1, f"{recorder.after_abort} handled after the drop"


class DropOnFirstMessage(EchoApp):
    """An endpoint that drops its client on the first message."""

    def __init__(self) -> None:
        self.handled: list[str | bytes] = []

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        self.handled.append(message)
        connection.abort("dropped by the test's endpoint")


def test_messages_already_read_are_not_handled_after_a_drop(
    server: RunningServer,
) -> None:
    endpoint = DropOnFirstMessage()
    server.server.websockets.add_endpoint("/drop", endpoint)
    with RawClient(server.port) as client:
        # Five messages in the same packet as the handshake: all are read
        # before the first is handled.
        messages = b"".join(frame(OP_TEXT, b"%d" % i) for i in range(5))
        client.send(upgrade_request("/drop") + messages)
        assert client.read_response().status == 101
        assert read_until_closed(client.sock)[1] in ("eof", "reset")
    assert connection_threads_end(server), "the dropped connection's thread goes on"
    assert endpoint.handled == ["0"], f"handled after the drop: {endpoint.handled[1:]}"
