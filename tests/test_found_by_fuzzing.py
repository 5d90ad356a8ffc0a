"""Bugs the fuzzers (1 to 4) and the probes of the limits (5, 6) found,
each kept as a regression test with its exact input. All six are fixed;
docs/reliability.md describes them.
"""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
import zlib
from http import HTTPStatus
from typing import Any

import pytest

from wspractice.connection import Connection
from wspractice.echo import EchoApp
from wspractice.errors import HandshakeError, MessageError
from wspractice.handshake import Request, accept, check_upgrade
from wspractice.messages import parse_state

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT, RunningServer
from .strictjson import strict_json
from .rawws import (
    KEY,
    OP_BINARY,
    RawClient,
    close_frame,
    frame,
    upgrade_request,
)

HEADERS = [
    ("Host", "127.0.0.1:8000"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]

BUG_1 = (
    "bug 1: check_upgrade lets urlsplit's ValueError escape for an absolute-form"
    " target with a broken IPv6 host; the client gets no response"
)
BUG_2 = (
    "bug 2: a non-ASCII Sec-WebSocket-Key makes base64.b64decode raise"
    " ValueError (not binascii.Error); the client gets no response"
)
BUG_3 = (
    "bug 3: with --compression, a non-integer window-bits parameter makes"
    " wsproto's PerMessageDeflate raise ValueError; the client gets no response"
)
BUG_4 = (
    "bug 4: a number too large for a double (1e400) is stored as Infinity,"
    " which makes every snapshot invalid JSON for every client"
)


# ------------------------------------------------------------------ bug 1


def test_an_unsplittable_request_target_is_refused_with_400() -> None:
    with pytest.raises(HandshakeError) as info:
        check_upgrade("HTTP/1.1", "http://[::1/?username=x", HEADERS)
    assert info.value.status == HTTPStatus.BAD_REQUEST


def test_on_the_wire_an_unsplittable_request_target_gets_400(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request("http://[::1/?username=x"))
        response = client.read_response()  # Was: EOF, no response at all.
    assert response.status == 400


# ------------------------------------------------------------------ bug 2


def test_a_non_ascii_key_is_refused_with_400() -> None:
    headers = [*HEADERS[:3], ("Sec-WebSocket-Key", "\xe9" * 24), HEADERS[4]]
    with pytest.raises(HandshakeError) as info:
        check_upgrade("HTTP/1.1", "/echo", headers)
    assert info.value.status == HTTPStatus.BAD_REQUEST


def test_on_the_wire_a_non_ascii_key_gets_400(server: RunningServer) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request("/echo", key="\xe9" * 24))  # latin-1 bytes
        response = client.read_response()  # Was: EOF, no response at all.
    assert response.status == 400
    assert b"Sec-WebSocket-Key must be 16 random bytes" in response.body


# ------------------------------------------------------------------ bug 3

BAD_OFFER = "permessage-deflate; client_max_window_bits=abc"


def test_a_deflate_offer_with_a_bad_parameter_is_declined() -> None:
    upgrade = Request("/echo", "", KEY, extension_offers=(BAD_OFFER,))
    headers, extensions = accept(upgrade, compression=True)
    assert extensions == []
    assert "Sec-WebSocket-Extensions" not in dict(headers)


def test_on_the_wire_a_bad_deflate_offer_is_declined_not_dropped(
    start_server: Any,
) -> None:
    server = start_server(compression=True)
    with RawClient(server.port) as client:
        extra = f"Sec-WebSocket-Extensions: {BAD_OFFER}\r\n"
        client.send(upgrade_request("/echo", extra=extra))
        response = client.read_response()  # Was: EOF, no response at all.
    # RFC 7692 section 5: decline the offer and go on without the extension.
    assert response.status == 101
    assert "sec-websocket-extensions" not in response.headers


# ------------------------------------------------------------------ bug 4


def test_a_number_too_large_for_a_double_is_a_bad_message() -> None:
    with pytest.raises(MessageError):
        parse_state('{"x": 1e400}')  # Was: '{"x":Infinity}'.


def test_on_the_wire_one_clients_1e400_leaves_everyones_snapshots_valid_json(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with join(server.url("/?username=Bob")) as bob:
            recv_until(alex, lambda s: len(s) == 2)
            recv_json(bob)
            bob.send('{"x": 1e400}')
            bob.send('{"x": 1}')
            while True:
                text = alex.recv(timeout=TIMEOUT)
                strict_json(text)  # Was: Infinity, not JSON.
                if users_named(json.loads(text))["Bob"] == {"x": 1}:
                    break


# ------------------------------------------------------------------ bug 5

BUG_5 = (
    "bug 5: with --compression, wsproto inflates whole compressed chunks and"
    " goes on inflating the rest of the frame after the 1009: 64 KiB on the"
    " wire cost ~64 MiB in the server, however small --max-message-size is"
)


def test_a_deflate_bomb_is_refused_before_it_is_inflated(start_server: Any) -> None:
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


# ------------------------------------------------------------------ bug 6

BUG_6 = (
    "bug 6: after abort() (send timeout, close timeout) the reader goes on"
    " reading and handling the client's messages; a client that keeps sending"
    " is never really dropped"
)


class Recorder(EchoApp):
    """/echo that notes, for each message, whether its session was dropped."""

    def __init__(self) -> None:
        self.after_abort = 0
        self.messages = 0

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        self.messages += 1
        if connection.protocol.abort_reason is not None:
            self.after_abort += 1
        super().handle_message(connection, message)


def test_a_dropped_client_has_no_more_messages_handled(start_server: Any) -> None:
    server = start_server(send_timeout=0.5)
    recorder = Recorder()
    server.server.websockets.add_endpoint("/echo", recorder)
    client = RawClient(server.port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.handshake("/echo")
    message = frame(OP_BINARY, b"m" * 16384)
    # It never reads: echoes fill its buffers, the server stops reading,
    # our data waits in the server's receive buffer, and the server drops
    # us after send_timeout. Keep sending until the connection breaks.
    client.sock.settimeout(3 * TIMEOUT)
    try:
        while True:
            client.send(message * 4)
    except OSError:
        pass
    client.close()
    deadline = time.monotonic() + 3 * TIMEOUT
    while server.server.websockets.clients and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorder.messages > 0
    # Was: hundreds of messages, read and echoed after the drop.
    assert recorder.after_abort == 0
