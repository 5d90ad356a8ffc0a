"""``python -m wspractice.client``, run as a real process against a real server."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from websockets.sync.server import ServerConnection, serve

from wspractice import __version__

from .clients import join, recv_until, users_named
from .conftest import TIMEOUT, RunningServer
from .rawserver import RawServer, server_close, server_frame
from .rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, frame

CLIENT = [sys.executable, "-m", "wspractice.client"]


def run_client(
    *args: str, stdin: str = "", timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        CLIENT + list(args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_execute_sends_each_message_prints_replies_and_closes(
    server: RunningServer,
) -> None:
    result = run_client(
        server.url("/echo"), "-x", "hello", "-x", "wörld", "--wait", "0"
    )
    assert result.stdout.splitlines() == [
        "Connected",
        "< hello",
        "< wörld",
        'Disconnected (code: 1000, reason: "")',
    ]
    assert (result.returncode, result.stderr) == (0, "")


def test_execute_with_wait_prints_the_snapshots_of_the_presence_app(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Bob")) as bob:
        start = time.monotonic()
        result = run_client(server.url(), "-x", '{"x": 412, "y": 230}', "--wait", "0.5")
        elapsed = time.monotonic() - start
        recv_until(bob, lambda s: users_named(s).get("Alex") == {"x": 412, "y": 230})
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0] == "Connected"
    assert lines[-1] == 'Disconnected (code: 1000, reason: "")'
    snapshots = [json.loads(line[2:]) for line in lines[1:-1]]
    assert all(line.startswith("< ") for line in lines[1:-1])
    assert users_named(snapshots[-1]) == {"Bob": {}, "Alex": {"x": 412, "y": 230}}
    assert elapsed >= 0.5  # It waited before closing.


def test_subprotocol_asks_the_presence_app_for_changes_only(
    server: RunningServer,
) -> None:
    result = run_client(
        server.url("/?username=Alex"),
        "--subprotocol",
        "wspractice-delta",
        "-x",
        '{"x": 1, "y": 2}',
        "--wait",
        "0.5",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Connected (subprotocol: wspractice-delta)"
    welcome, *changes = [json.loads(line[2:]) for line in lines[1:-1]]
    me = welcome["you"]
    users = welcome["users"]
    # The move may be in the welcome already, when it came before the first
    # round; after the welcome, only what changed.
    for change in changes:
        assert set(change) == {"updated"}
        for uuid, state in change["updated"].items():
            users[uuid]["state"] = state
    assert users == {me: {"username": "Alex", "state": {"x": 1, "y": 2}}}


def test_a_subprotocol_the_server_does_not_know_is_not_selected(
    server: RunningServer,
) -> None:
    result = run_client(
        server.url("/?username=Alex"), "-s", "chat.v9", "-x", "{}", "--wait", "0.3"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Connected"


def test_lines_from_stdin_are_sent_and_commands_run(server: RunningServer) -> None:
    stdin = "first\n/ping are you there?\n//slash\n/nope\nlast\n"
    result = run_client(server.url("/echo"), "--wait", "0", stdin=stdin)
    assert result.stdout.splitlines() == [
        "Connected",
        "< first",
        "< pong: are you there?",
        "< /slash",
        "< last",
        'Disconnected (code: 1000, reason: "")',
    ]
    assert result.stderr == "unknown command /nope; /help lists them\n"
    assert result.returncode == 0


def test_close_command_sends_code_and_reason(server: RunningServer) -> None:
    stdin = "hello\n/close 4000 see you later\nnot sent\n"
    result = run_client(server.url("/echo"), stdin=stdin)
    # The server answers a close frame with the same code and reason.
    assert result.stdout.splitlines() == [
        "Connected",
        "< hello",
        'Disconnected (code: 4000, reason: "see you later")',
    ]
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("code", ["999", "1005", "1006", "2000", "5000", "x"])
def test_close_command_refuses_codes_a_client_may_not_send(
    server: RunningServer, code: str
) -> None:
    result = run_client(server.url("/echo"), "--wait", "0", stdin=f"/close {code}\n")
    assert result.stderr == (
        "/close: the code must be 1000-1003, 1007-1014 or 3000-4999," f" got {code!r}\n"
    )
    assert result.stdout.splitlines()[-1] == 'Disconnected (code: 1000, reason: "")'


def test_rejected_handshake_shows_the_status_and_the_body(
    server: RunningServer,
) -> None:
    result = run_client(server.url("/"), "-x", "never sent")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: the server refused the WebSocket handshake: HTTP 400 Bad Request\n"
        "username is required: add ?username=NAME to the URL\n"
    )


def test_origin_and_extra_headers_are_sent(server: RunningServer) -> None:
    refused = (
        "error: the server refused the WebSocket handshake: HTTP 403 Forbidden\n"
        "Origin 'https://evil.example' is not allowed: it is neither this"
        " server's origin nor loopback; start the server with --allowed-origin"
        " to allow it\n"
    )
    by_option = run_client(server.url(), "--origin", "https://evil.example")
    by_header = run_client(server.url(), "-H", "Origin: https://evil.example")
    assert (by_option.returncode, by_option.stderr) == (1, refused)
    assert (by_header.returncode, by_header.stderr) == (1, refused)
    allowed = run_client(
        server.url("/echo"), "--origin", "http://localhost:3000", "-x", "ok", "-w", "0"
    )
    assert allowed.stdout.splitlines()[:2] == ["Connected", "< ok"]


def test_server_close_is_printed_with_its_code_and_reason(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server()
    proc = subprocess.Popen(
        CLIENT + [server.url()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "Connected\n"
        assert proc.stdout.readline().startswith('< {"')  # The join snapshot.
        server.stop()
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out == 'Disconnected (code: 1001, reason: "server shutting down")\n'
    assert (proc.returncode, err) == (0, "")


def test_server_closing_with_an_error_code_is_an_error_exit(
    server: RunningServer,
) -> None:
    stdin = "\n".join(["not json"] * 10) + "\n"
    result = run_client(server.url(), stdin=stdin)
    lines = result.stdout.splitlines()
    assert lines[-1] == (
        'Disconnected (code: 1008, reason: "10 bad messages in a row; last:'
        ' message is not valid JSON: Expecting value: line 1 column 1 (char 0)")'
    )
    assert result.returncode == 1


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_client(f"ws://127.0.0.1:{port}/echo")
    assert result.returncode == 1
    assert (
        result.stderr
        == f"error: cannot connect to 127.0.0.1:{port}: Connection refused\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["http://127.0.0.1/"], "the URL must start with ws:// or wss://"),
        (["ws://127.0.0.1/", "-H", "no colon"], "a header is 'Name: value'"),
        (["ws://127.0.0.1/", "--wait", "-1"], "must be 0 or more seconds"),
        (["ws://127.0.0.1/", "-s", "two words"], "a subprotocol is a token"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str) -> None:
    result = run_client(*argv)
    assert result.returncode == 2
    assert message in result.stderr


def test_help_explains_the_options_and_commands() -> None:
    result = run_client("--help")
    assert result.returncode == 0
    for text in ["-x", "--execute", "--wait", "-H", "--origin", "/ping", "/close"]:
        assert text in result.stdout
    for text in ["--echo", "--quiet", "--compression", "--close-timeout"]:
        assert text in result.stdout
    for text in ["--ca FILE", "--insecure", "self-signed", "SSL_CERT_FILE"]:
        assert text in result.stdout
    assert "--version" in result.stdout


def test_ctrl_c_closes_with_1000_and_exits_0(server: RunningServer) -> None:
    proc = subprocess.Popen(
        CLIENT + [server.url("/echo")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "Connected\n"
        proc.stdin.write("still here\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "< still here\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert out == 'Disconnected (code: 1000, reason: "")\n'
    assert (proc.returncode, err) == (0, "")


# ------------------------------------------------ against a raw-socket server
#
# The test plays the server with tests/rawserver.py and sends exactly the
# bytes it wants; the client runs as a real process.


def start_client(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        CLIENT + list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Wait for the client to exit: (exit status, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


def test_a_frame_in_the_same_packet_as_the_101_is_handled_at_once(
    raw: RawServer,
) -> None:
    proc = start_client(raw.url("/echo"), "--echo")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_frame(OP_TEXT, b"first"))
        # Nothing more comes from the server until the echo is back.
        assert raw.read_frame() == (OP_TEXT, True, b"first")
        raw.send(server_close(1000))
        assert raw.read_close() == (1000, "")
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        "< first",
        'Disconnected (code: 1000, reason: "")',
    ]
    assert (status, err) == (0, "")


def test_a_close_in_the_same_packet_as_the_101_is_answered(raw: RawServer) -> None:
    proc = start_client(raw.url(), "-x", "never sent", "--wait", "5")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_close(1001, "going away"))
        assert raw.read_close() == (1001, "going away")
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        'Disconnected (code: 1001, reason: "going away")',
    ]
    assert (status, err) == (0, "")


PROTOCOL_ERRORS = {
    "reserved bit RSV2": server_frame(OP_TEXT, b"hi", rsv=2),
    "reserved bit RSV1 without an extension": server_frame(OP_TEXT, b"hi", rsv=4),
    "unknown data opcode 3": server_frame(0x3, b"hi"),
    "unknown control opcode 11": server_frame(0xB, b"hi"),
    "fragmented ping": server_frame(OP_PING, b"hi", fin=False),
    "ping over 125 bytes": server_frame(OP_PING, b"p" * 126),
    "close over 125 bytes": server_frame(OP_CLOSE, b"\x03\xe8" + b"r" * 124),
    "continuation with nothing to continue": server_frame(OP_CONT, b"hi"),
    "new message inside a fragmented one": (
        server_frame(OP_TEXT, b"one", fin=False) + server_frame(OP_TEXT, b"two")
    ),
    "masked frame from the server": frame(OP_TEXT, b"hi", mask=True),
    "close code 1005 on the wire": server_frame(OP_CLOSE, b"\x03\xed"),
    "close payload of one byte": server_frame(OP_CLOSE, b"\x03"),
}


@pytest.mark.parametrize("bad", PROTOCOL_ERRORS.values(), ids=PROTOCOL_ERRORS)
def test_a_protocol_error_is_failed_with_1002_and_the_socket_closed(
    raw: RawServer, bad: bytes
) -> None:
    proc = start_client(raw.url(), "--echo", "--close-timeout", "0.5")
    try:
        raw.accept()
        # A message the client must echo, the error, then frames it must
        # not parse any more.
        after = server_frame(OP_TEXT, b"after") + server_frame(OP_PING, b"p")
        raw.send(raw.switching_protocols() + server_frame(OP_TEXT, b"before"))
        assert raw.read_frame() == (OP_TEXT, True, b"before")
        raw.send(bad + after)
        code, reason = raw.read_close()
        assert code == 1002
        # The server answers, but the client cannot parse it and does not
        # try; it closes TCP after --close-timeout since we do not.
        raw.send(server_close(1002))
        assert raw.at_eof()
        assert raw.buffer == b""  # No echo, no pong after the close frame.
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        "< before",
        f'Disconnected (code: 1002, reason: "{reason}")',
    ]
    assert (
        err == f"error: the server broke the protocol: {reason} (closing with 1002)\n"
    )
    assert status == 1


def test_a_protocol_error_after_our_close_is_not_closed_twice(raw: RawServer) -> None:
    proc = start_client(raw.url(), "-x", "bye", "--wait", "0", "--close-timeout", "60")
    try:
        raw.accept()
        raw.send(raw.switching_protocols())
        assert raw.read_frame() == (OP_TEXT, True, b"bye")
        assert raw.read_close() == (1000, "")
        raw.send(server_frame(OP_TEXT, b"x", rsv=2) + server_close(1000))
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        'Disconnected (code: 1006, reason: "Reserved bit set unexpectedly")',
    ]
    assert (
        err == "error: the server broke the protocol: Reserved bit set unexpectedly\n"
    )
    assert status == 1


def test_the_server_closing_tcp_after_our_1002_ends_the_client_at_once(
    raw: RawServer,
) -> None:
    proc = start_client(raw.url(), "--echo", "--close-timeout", "60")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_frame(0x3))
        assert raw.read_close()[0] == 1002
        raw.send(server_close(1002))
        raw.conn.close()  # type: ignore[union-attr]
        # The client must not wait for its 60 s close timeout.
        status, out, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert status == 1
    assert out.splitlines()[-1].startswith('Disconnected (code: 1002, reason: "')


INVALID_UTF8 = {
    "a lone 0xff": server_frame(OP_TEXT, b"\xff"),
    "a UTF-16 surrogate": server_frame(OP_TEXT, b"a\xed\xa0\x80b"),
    "split between two fragments": (
        server_frame(OP_TEXT, b"\xce\xba\xe1", fin=False)
        + server_frame(OP_CONT, b"\xbd\xff")
    ),
    # Failed on the first fragment, without waiting for the rest.
    "the first fragment of an unfinished message": server_frame(
        OP_TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", fin=False
    ),
    "a close reason": server_frame(OP_CLOSE, b"\x03\xe8\xff"),
}


@pytest.mark.parametrize("bad", INVALID_UTF8.values(), ids=INVALID_UTF8)
def test_invalid_utf8_is_failed_with_1007(raw: RawServer, bad: bytes) -> None:
    proc = start_client(raw.url(), "--echo", "--close-timeout", "0.5")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + bad)
        code, reason = raw.read_close()
        assert code == 1007
        assert raw.at_eof()
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        f'Disconnected (code: 1007, reason: "{reason}")',
    ]
    assert (
        err == f"error: the server broke the protocol: {reason} (closing with 1007)\n"
    )
    assert status == 1


def test_a_server_that_never_answers_our_close_is_dropped_after_the_close_timeout(
    raw: RawServer,
) -> None:
    proc = start_client(
        raw.url(), "-x", "hello", "--wait", "0", "--close-timeout", "0.5"
    )
    try:
        raw.accept()
        raw.send(raw.switching_protocols())
        assert raw.read_frame() == (OP_TEXT, True, b"hello")
        assert raw.read_close() == (1000, "")
        assert raw.at_eof()  # The client gave up and closed TCP.
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        'Disconnected (code: 1006, reason: "the server did not answer our close'
        ' frame")',
    ]
    assert (status, err) == (1, "")


def test_a_server_that_keeps_tcp_open_after_the_closing_handshake_is_left(
    raw: RawServer,
) -> None:
    proc = start_client(raw.url(), "--echo", "--close-timeout", "0.5")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_close(4000, "done"))
        assert raw.read_close() == (4000, "done")
        assert raw.at_eof()  # After --close-timeout, the client closed TCP.
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        'Disconnected (code: 4000, reason: "done")',
    ]
    assert (status, err) == (1, "")


def test_tcp_closed_without_a_close_frame_is_1006(raw: RawServer) -> None:
    proc = start_client(raw.url(), "--echo")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_frame(OP_TEXT, b"bye"))
        assert raw.read_frame() == (OP_TEXT, True, b"bye")
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        "< bye",
        'Disconnected (code: 1006, reason: "the connection was lost without a'
        ' close frame")',
    ]
    assert (status, err) == (1, "")


def test_a_close_frame_without_a_code_is_a_clean_close(raw: RawServer) -> None:
    proc = start_client(raw.url(), "--echo")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_frame(OP_CLOSE))
        opcode, fin, payload = raw.read_frame()
        assert (opcode, fin, payload) == (OP_CLOSE, True, b"")  # Echoed as is.
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == ["Connected", 'Disconnected (code: 1005, reason: "")']
    assert (status, err) == (0, "")


def test_a_server_that_resets_the_connection_is_1006(raw: RawServer) -> None:
    proc = start_client(raw.url(), "--echo")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_frame(OP_TEXT, b"x" * 100_000))
        assert raw.conn is not None
        raw.conn.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        raw.conn.close()  # A reset: reading or echoing fails, whichever is first.
    finally:
        status, out, err = finish(proc)
    assert out.splitlines()[0] == "Connected"
    assert out.splitlines()[-1].startswith('Disconnected (code: 1006, reason: "')
    assert (status, err) == (1, "")


def test_frames_after_the_servers_close_are_ignored(raw: RawServer) -> None:
    proc = start_client(raw.url(), "--echo", "--close-timeout", "0.5")
    try:
        raw.accept()
        raw.send(
            raw.switching_protocols()
            + server_close(1000)
            + server_frame(OP_PING, b"late")
            + server_frame(OP_TEXT, b"late")
        )
        assert raw.read_close() == (1000, "")
        assert raw.at_eof()
        assert raw.buffer == b""  # No pong, no echo.
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == ["Connected", 'Disconnected (code: 1000, reason: "")']
    assert (status, err) == (0, "")


def test_a_message_over_max_message_size_is_closed_with_1009(raw: RawServer) -> None:
    proc = start_client(raw.url(), "--echo", "--max-message-size", "10")
    try:
        raw.accept()
        raw.send(
            raw.switching_protocols()
            + server_frame(OP_TEXT, b"0123456789")
            + server_frame(OP_BINARY, b"01234", fin=False)
            + server_frame(OP_CONT, b"56789X")
        )
        assert raw.read_frame() == (OP_TEXT, True, b"0123456789")
        assert raw.read_close() == (1009, "message is larger than 10 bytes")
        raw.send(server_close(1009))
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        "< 0123456789",
        'Disconnected (code: 1009, reason: "")',
    ]
    assert err == "error: message is larger than 10 bytes; closing with 1009\n"
    assert status == 1


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 20\r\n\r\nnot you, not today\r\n",
            id="content-length",
        ),
        pytest.param(
            b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\nnot you,\r\na\r\n not today\r\n0\r\n\r\n",
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\nnot you, not today",
            id="until-eof",
        ),
    ],
)
def test_a_refused_handshake_shows_the_status_and_the_body(
    raw: RawServer, response: bytes
) -> None:
    proc = start_client(raw.url(), "-x", "never sent")
    try:
        raw.accept()
        head, _, body = response.partition(b"\r\n\r\n")
        raw.send(head + b"\r\n\r\n")
        raw.send(body)  # Perhaps another packet: the client waits for all.
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert (status, out) == (1, "")
    assert err == (
        "error: the server refused the WebSocket handshake: HTTP 403 Forbidden\n"
        "not you, not today\n"
    )


def test_a_bad_accept_key_is_refused(raw: RawServer) -> None:
    proc = start_client(raw.url(), "-x", "never sent")
    try:
        raw.accept()
        raw.headers["sec-websocket-key"] = "dGhlIHNhbXBsZSBub25jZQ=="
        raw.send(raw.switching_protocols())
    finally:
        status, out, err = finish(proc)
    assert (status, out) == (1, "")
    assert err == "error: the server's handshake response is bad: Bad accept token\n"


def test_a_subprotocol_the_client_did_not_offer_is_refused(raw: RawServer) -> None:
    proc = start_client(raw.url(), "-s", "wspractice-delta", "-x", "never sent")
    try:
        request = raw.accept()
        assert request["sec-websocket-protocol"] == "wspractice-delta"
        raw.send(raw.switching_protocols("Sec-WebSocket-Protocol: chat\r\n"))
    finally:
        status, out, err = finish(proc)
    assert (status, out) == (1, "")
    assert "the server's handshake response is bad" in err
    assert "subprotocol" in err


def test_echo_sends_back_text_as_text_and_binary_as_binary(raw: RawServer) -> None:
    proc = start_client(raw.url(), "--echo")
    try:
        raw.accept()
        raw.send(raw.switching_protocols())
        raw.send(server_frame(OP_TEXT, "héllo".encode()))
        assert raw.read_frame() == (OP_TEXT, True, "héllo".encode())
        raw.send(server_frame(OP_BINARY, bytes(range(256))))
        assert raw.read_frame() == (OP_BINARY, True, bytes(range(256)))
        # A fragmented message with a ping in its middle: the pong first,
        # then the whole message in one frame.
        raw.send(
            server_frame(OP_TEXT, b"frag", fin=False)
            + server_frame(OP_PING, b"are you there")
            + server_frame(OP_CONT, b"ments")
        )
        assert raw.read_frame() == (OP_PONG, True, b"are you there")
        assert raw.read_frame() == (OP_TEXT, True, b"fragments")
        raw.send(server_frame(OP_TEXT, b""))
        assert raw.read_frame() == (OP_TEXT, True, b"")
        raw.send(server_close(1000, "thanks"))
        assert raw.read_close() == (1000, "thanks")
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == [
        "Connected",
        "< héllo",
        "< binary (256 bytes): " + bytes(range(64)).hex(" ") + " ...",
        "< fragments",
        "< ",
        'Disconnected (code: 1000, reason: "thanks")',
    ]
    assert (status, err) == (0, "")


def test_quiet_prints_only_the_connection(raw: RawServer) -> None:
    proc = start_client(raw.url(), "--echo", "--quiet")
    try:
        raw.accept()
        raw.send(raw.switching_protocols() + server_frame(OP_TEXT, b"shh"))
        assert raw.read_frame() == (OP_TEXT, True, b"shh")
        raw.send(server_close(1000))
        assert raw.read_close() == (1000, "")
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines() == ["Connected", 'Disconnected (code: 1000, reason: "")']
    assert (status, err) == (0, "")


def test_echo_against_the_websockets_library_with_compression() -> None:
    """An independent server: the websockets library, deflate negotiated."""
    received: list[str | bytes] = []

    def handler(ws: ServerConnection) -> None:
        for message in ["héllo", b"\x00\x01\xff", "x" * 100_000]:
            ws.send(message)
            received.append(ws.recv(timeout=TIMEOUT))
        ws.close(1000, "done")

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            port = server.socket.getsockname()[1]
            status, out, err = finish(
                start_client(f"ws://127.0.0.1:{port}/", "--echo", "--compression")
            )
        finally:
            server.shutdown()
            thread.join(TIMEOUT)
    assert received == ["héllo", b"\x00\x01\xff", "x" * 100_000]
    lines = out.splitlines()
    assert lines[0] == "Connected with permessage-deflate"
    assert lines[-1] == 'Disconnected (code: 1000, reason: "done")'
    assert (status, err) == (0, "")


def test_echo_and_execute_do_not_go_together() -> None:
    result = run_client("ws://127.0.0.1/", "--echo", "-x", "hi")
    assert result.returncode == 2
    assert "--echo and -x do not go together" in result.stderr


def test_version_prints_the_package_version() -> None:
    result = run_client("--version")
    assert (result.returncode, result.stdout) == (0, f"wspractice {__version__}\n")


# ------------------------------------------------ wss://: --ca and --insecure


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def tls_server(
    start_server: Callable[..., RunningServer], ca: Any, tmp_path: Path
) -> RunningServer:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    return start_server(certfile=str(certfile), keyfile=str(keyfile))


@pytest.fixture
def ca_file(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def run_tls_client(*args: str) -> subprocess.CompletedProcess[str]:
    """The client without SSL_CERT_FILE, so only the options decide."""
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE",)}
    return subprocess.run(
        CLIENT + list(args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )


def test_a_frame_with_the_101_over_tls_is_handled_at_once(
    raw: RawServer, ca: Any, ca_file: str
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    proc = start_client(raw.url(scheme="wss"), "--echo", "--ca", ca_file)
    try:
        raw.accept(tls=context)
        big = b"b" * 40_000  # More than one TLS record.
        raw.send(raw.switching_protocols() + server_frame(OP_BINARY, big))
        assert raw.read_frame() == (OP_BINARY, True, big)
        raw.send(server_close(1000))
        assert raw.read_close() == (1000, "")
        raw.conn.close()  # type: ignore[union-attr]
    finally:
        status, out, err = finish(proc)
    assert out.splitlines()[0] == "Connected"
    assert (status, err) == (0, "")


def test_wss_with_a_private_ca_is_refused_without_ca(
    tls_server: RunningServer,
) -> None:
    result = run_tls_client(tls_server.url("/echo"), "-x", "hi")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(
        f"error: cannot connect to 127.0.0.1:{tls_server.port}: the server's"
        " certificate is not trusted: "
    )
    assert result.stderr.endswith(
        "; give its CA with --ca FILE, or skip the check with --insecure\n"
    )


def test_wss_with_ca_checks_the_certificate_against_that_ca(
    tls_server: RunningServer, ca_file: str
) -> None:
    result = run_tls_client(
        tls_server.url("/echo"), "--ca", ca_file, "-x", "sécure", "--wait", "0"
    )
    assert result.stdout.splitlines() == [
        "Connected",
        "< sécure",
        'Disconnected (code: 1000, reason: "")',
    ]
    assert (result.returncode, result.stderr) == (0, "")


def test_wss_with_another_ca_is_refused(
    tls_server: RunningServer, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = run_tls_client(tls_server.url("/echo"), "--ca", str(other), "-x", "hi")
    assert result.returncode == 1
    assert "the server's certificate is not trusted" in result.stderr


def test_wss_with_insecure_skips_the_check(tls_server: RunningServer) -> None:
    result = run_tls_client(
        tls_server.url("/echo"), "--insecure", "-x", "unchecked", "--wait", "0"
    )
    assert result.stdout.splitlines() == [
        "Connected",
        "< unchecked",
        'Disconnected (code: 1000, reason: "")',
    ]
    assert (result.returncode, result.stderr) == (0, "")


def test_insecure_still_checks_nothing_about_the_host_name(
    start_server: Callable[..., RunningServer], ca: Any, tmp_path: Path
) -> None:
    cert = ca.issue_cert("somewhere.else.example")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    server = start_server(certfile=str(certfile), keyfile=str(keyfile))
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    wrong_name = run_tls_client(server.url("/echo"), "--ca", str(ca_path), "-x", "a")
    assert wrong_name.returncode == 1
    assert "not trusted" in wrong_name.stderr and "mismatch" in wrong_name.stderr
    insecure = run_tls_client(server.url("/echo"), "-k", "-x", "b", "--wait", "0")
    assert insecure.stdout.splitlines()[:2] == ["Connected", "< b"]
    assert insecure.returncode == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["wss://127.0.0.1/", "--ca", "/nonexistent/ca.pem"],
            "--ca /nonexistent/ca.pem: No such file or directory",
        ),
        (
            ["ws://127.0.0.1/", "--ca", "ca.pem"],
            "--ca and --insecure are for wss:// URLs only",
        ),
        (
            ["ws://127.0.0.1/", "--insecure"],
            "--ca and --insecure are for wss:// URLs only",
        ),
        (
            ["wss://127.0.0.1/", "--ca", "ca.pem", "-k"],
            "--ca and --insecure do not go together",
        ),
    ],
)
def test_bad_tls_options_exit_2(argv: list[str], message: str) -> None:
    result = run_tls_client(*argv)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(message)


def test_a_ca_file_without_certificates_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    result = run_tls_client("wss://127.0.0.1/", "--ca", str(empty))
    assert result.returncode == 2
    assert f"--ca {empty}: no PEM certificate in it" in result.stderr
