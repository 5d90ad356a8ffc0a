"""``--trace``: the handshake, the accept key and every frame, both ways."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from wspractice.cli import build_parser, options_from_args
from wspractice.trace import ConnectionTracer

from .clients import join, recv_json
from .conftest import TIMEOUT, RunningServer
from .rawws import (
    KEY,
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawClient,
    close_frame,
    frame,
    upgrade_request,
)

PEER = re.compile(r"^\[127\.0\.0\.1:\d+\] ")


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The trace so far, one string per line, without the peer label."""
    caplog.set_level(logging.INFO, logger="wspractice.trace")

    def lines() -> list[str]:
        return [
            PEER.sub("", record.getMessage())
            for record in caplog.records
            if record.name == "wspractice.trace"
        ]

    return lines


def wait_for(lines: Callable[[], list[str]], wanted: str) -> list[str]:
    """The trace once a line equal to ``wanted`` is in it, or after TIMEOUT.

    The connection's thread logs the last frames after the client has seen
    them; the caller asserts on what the trace holds.
    """
    deadline = time.monotonic() + TIMEOUT
    while wanted not in lines() and time.monotonic() < deadline:
        time.sleep(0.01)
    return lines()


# ---------------------------------------------------------------- handshake


def test_trace_shows_the_request_the_accept_computation_and_the_101(
    start_server: Callable[..., RunningServer], lines: Callable[[], list[str]]
) -> None:
    server = start_server(trace=True)
    with RawClient(server.port) as client:
        client.handshake(extra="Origin: http://localhost:3000\r\n")
        client.read_frame()  # The join snapshot.
    trace_lines = lines()
    start = trace_lines.index("recv GET /?username=Alex HTTP/1.1")
    assert trace_lines[start : start + 7] == [
        "recv GET /?username=Alex HTTP/1.1",
        "recv Host: 127.0.0.1",
        "recv Upgrade: websocket",
        "recv Connection: Upgrade",
        f"recv Sec-WebSocket-Key: {KEY}",
        "recv Sec-WebSocket-Version: 13",
        "recv Origin: http://localhost:3000",
    ]
    accept_at = trace_lines.index(
        "accept Sec-WebSocket-Accept = base64(SHA-1(key + GUID)):"
    )
    # RFC 6455 section 1.3's own example, step by step.
    assert trace_lines[accept_at : accept_at + 5] == [
        "accept Sec-WebSocket-Accept = base64(SHA-1(key + GUID)):",
        "accept   key          dGhlIHNhbXBsZSBub25jZQ==",
        "accept   + GUID       dGhlIHNhbXBsZSBub25jZQ=="
        "258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
        "accept   SHA-1 (hex)  b37a4f2cc0624f1690f64606cf385945b2bec4ea",
        "accept   base64       s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        "  (wsproto.utilities.generate_accept_token)",
    ]
    response = trace_lines[accept_at + 5 : accept_at + 12]
    assert response[0] == "sent HTTP/1.1 101 Switching Protocols"
    assert response[1] == "sent Server: wspractice/0.1.0"
    assert response[2].startswith("sent Date: ")
    assert response[3:] == [
        "sent Upgrade: websocket",
        "sent Connection: Upgrade",
        "sent Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "sent (empty line: frames follow)",
    ]


def refusal_as_traced(lines: list[str], response: bytes) -> list[str]:
    """The trace's lines for a refused handshake, from its ``refuse`` line."""
    start = next(i for i, line in enumerate(lines) if line.startswith("refuse "))
    head, _, body = response.partition(b"\r\n\r\n")
    count = 1 + len(head.split(b"\r\n")) + 2
    assert len(lines) >= start + count, lines
    return lines[start : start + count]


def test_refused_handshake_is_traced_with_the_response_as_sent(
    start_server: Callable[..., RunningServer], lines: Callable[[], list[str]]
) -> None:
    server = start_server(trace=True)
    with RawClient(server.port) as client:
        client.send(upgrade_request("/"))
        assert client.at_eof()
        response = client.buffer  # Every byte the server sent.
    reason = "username is required: add ?username=NAME to the URL"
    body_line = f"sent body, {len(reason) + 1} bytes: {reason + chr(10)!r}"
    traced = wait_for(lines, body_line)
    assert traced[0] == "recv GET / HTTP/1.1"
    assert not any(line.startswith("accept") for line in traced)
    head, _, body = response.partition(b"\r\n\r\n")
    assert body == (reason + "\n").encode()
    assert refusal_as_traced(traced, response) == [
        f"refuse 400 Bad Request: {reason}",
        *(f"sent {line}" for line in head.decode("latin-1").split("\r\n")),
        "sent (empty line: the body follows)",
        body_line,
    ]
    assert traced[traced.index(f"refuse 400 Bad Request: {reason}") + 1] == (
        "sent HTTP/1.1 400 Bad Request"
    )


def test_a_handshake_refused_for_too_many_connections_is_traced_too(
    start_server: Callable[..., RunningServer], lines: Callable[[], list[str]]
) -> None:
    server = start_server(trace=True, max_connections_per_address=1)
    with join(server.url()) as ws:
        recv_json(ws)
        with RawClient(server.port) as client:
            client.send(upgrade_request("/?username=Bob"))
            assert client.at_eof()
            response = client.buffer
    reason = (
        "too many WebSockets from 127.0.0.1: 1 are open"
        " (--max-connections-per-address)"
    )
    body_line = f"sent body, {len(reason) + 1} bytes: {reason + chr(10)!r}"
    traced = refusal_as_traced(wait_for(lines, body_line), response)
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert traced == [
        f"refuse 429 Too Many Requests: {reason}",
        *(f"sent {line}" for line in head),
        "sent (empty line: the body follows)",
        body_line,
    ]
    assert "sent Retry-After: 5" in traced


# ---------------------------------------------------------------- frames


def test_each_frame_is_traced_both_ways_with_its_header_fields(
    start_server: Callable[..., RunningServer], lines: Callable[[], list[str]]
) -> None:
    server = start_server(trace=True)
    with RawClient(server.port) as client:
        client.handshake()
        _, _, joined = client.read_frame()
        message = frame(OP_TEXT, b'{"x":1,"y":2}')
        client.send(message)
        _, _, moved = client.read_frame()
        client.send(close_frame(1000, "bye"))
        assert client.read_close() == (1000, "bye")

    key = message[2:6]
    last = (
        "sent frame FIN=1 RSV=000 opcode=0x8 close MASK=0 len=5"
        " [88 05] code=1000 (NORMAL_CLOSURE) reason='bye'"
    )
    frames = [line for line in wait_for(lines, last) if " frame " in line]
    assert frames[0] == (
        f"sent frame FIN=1 RSV=000 opcode=0x1 text MASK=0 len={len(joined)}"
        f" [81 {len(joined):02x}] {joined.decode()[:60]!r}... ({len(joined)} bytes)"
    )
    assert frames[1] == (
        f"recv frame FIN=1 RSV=000 opcode=0x1 text MASK=1 key={key.hex()} len=13"
        f" [81 8d {key.hex(' ')}] '{{\"x\":1,\"y\":2}}'"
    )
    assert frames[2].startswith(
        f"sent frame FIN=1 RSV=000 opcode=0x1 text MASK=0 len={len(moved)}"
    )
    match = re.fullmatch(
        r"recv frame FIN=1 RSV=000 opcode=0x8 close MASK=1 key=(\w{8}) len=5"
        r" \[88 85 (\w\w \w\w \w\w \w\w)\]"
        r" code=1000 \(NORMAL_CLOSURE\) reason='bye'",
        frames[3],
    )
    assert match and match[1] == match[2].replace(" ", ""), frames[3]
    assert frames[4:] == [last]


def test_fragments_control_frames_and_a_frame_sent_with_the_handshake(
    start_server: Callable[..., RunningServer], lines: Callable[[], list[str]]
) -> None:
    server = start_server(trace=True)
    with RawClient(server.port) as client:
        # The first fragment rides in the same packet as the handshake.
        client.send(upgrade_request("/echo") + frame(OP_TEXT, b"hel", fin=False))
        assert client.read_response().status == 101
        client.send(frame(OP_PING, b"are you there?"))
        assert client.read_frame()[0] == OP_PONG
        client.send(frame(OP_CONT, b"lo"))
        assert client.read_frame() == (OP_TEXT, True, b"hello")
        client.send(frame(OP_BINARY, bytes(range(40))))
        assert client.read_frame() == (OP_BINARY, True, bytes(range(40)))

    last = (
        "sent frame FIN=1 RSV=000 opcode=0x2 binary MASK=0 len=40"
        " [82 28] 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12"
        " 13 14 15 16 17 +16 bytes"
    )
    trace = wait_for(lines, last)
    frames = [re.sub(r" key=\w+ ", " ", line) for line in trace if " frame " in line]
    frames = [re.sub(r" \[[0-9a-f ]+\] ", " ", line) for line in frames]
    assert frames == [
        "recv frame FIN=0 RSV=000 opcode=0x1 text MASK=1 len=3 'hel'",
        "recv frame FIN=1 RSV=000 opcode=0x9 ping MASK=1 len=14 b'are you there?'",
        "sent frame FIN=1 RSV=000 opcode=0xa pong MASK=0 len=14 b'are you there?'",
        "recv frame FIN=1 RSV=000 opcode=0x0 continuation MASK=1 len=2 'lo'",
        "sent frame FIN=1 RSV=000 opcode=0x1 text MASK=0 len=5 'hello'",
        "recv frame FIN=1 RSV=000 opcode=0x2 binary MASK=1 len=40"
        " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17"
        " +16 bytes",
        "sent frame FIN=1 RSV=000 opcode=0x2 binary MASK=0 len=40"
        " 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17"
        " +16 bytes",
    ]


def test_compressed_messages_show_rsv1_and_their_size(
    start_server: Callable[..., RunningServer], lines: Callable[[], list[str]]
) -> None:
    server = start_server(trace=True, compression=True)
    with join(server.url("/echo"), compression="deflate") as ws:
        ws.send("a" * 1000)
        assert ws.recv(timeout=TIMEOUT) == "a" * 1000
    last = (
        "sent frame FIN=1 RSV=000 opcode=0x8 close MASK=0 len=2 [88 02]"
        " code=1000 (NORMAL_CLOSURE) reason=''"
    )
    trace = wait_for(lines, last)
    assert last in trace
    data = [line for line in trace if "opcode=0x1" in line]
    assert len(data) == 2
    for line in data:
        assert re.search(r" frame FIN=1 RSV=100 opcode=0x1 text MASK=\d ", line), line
        length = int(re.search(r" len=(\d+) ", line).group(1))  # type: ignore
        assert 0 < length < 100  # 1000 "a"s deflate to a few bytes.
        assert line.endswith(f" (compressed, {length} bytes)")


def test_protocol_error_is_traced_and_tracing_of_that_direction_stops(
    start_server: Callable[..., RunningServer], lines: Callable[[], list[str]]
) -> None:
    server = start_server(trace=True)
    with RawClient(server.port) as client:
        client.handshake("/echo")
        client.send(frame(OP_TEXT, b"unmasked", mask=False))
        assert client.read_close()[0] == 1002
    wanted = (
        "recv cannot decode: server received unexpected unmasked frame"
        " (close code 1002); not tracing this direction any more"
    )
    trace = wait_for(lines, wanted)
    assert wanted in trace, trace


# ---------------------------------------------------------------- units


def test_a_frame_fed_one_byte_at_a_time_is_traced_once(
    lines: Callable[[], list[str]],
) -> None:
    tracer = ConnectionTracer("peer")
    tracer.accepted(KEY, b"HTTP/1.1 101 Switching Protocols\r\n\r\n", compressed=False)
    data = frame(OP_TEXT, "héllo wörld".encode()) + frame(OP_PING, b"")
    for i in range(len(data)):
        tracer.received(data[i : i + 1])
    frames = [line for line in lines() if " frame " in line]
    key = data[2:6].hex()
    assert frames == [
        f"[peer] recv frame FIN=1 RSV=000 opcode=0x1 text MASK=1 key={key}"
        f" len=13 [81 8d {data[2:6].hex(' ')}] 'héllo wörld'",
        f"[peer] recv frame FIN=1 RSV=000 opcode=0x9 ping MASK=1"
        f" key={data[-4:].hex()} len=0 [89 80 {data[-4:].hex(' ')}] b''",
    ]


def test_a_long_payload_is_cut_to_a_preview_and_control_characters_escaped(
    lines: Callable[[], list[str]],
) -> None:
    tracer = ConnectionTracer("peer")
    tracer.accepted(KEY, b"\r\n", compressed=False)
    tracer.sent(frame(OP_TEXT, b"line\n" * 60, mask=False))  # 300 bytes
    (line,) = [line for line in lines() if " frame " in line]
    assert line == (
        "[peer] sent frame FIN=1 RSV=000 opcode=0x1 text MASK=0 len=300"
        " [81 7e 01 2c] " + repr("line\n" * 12) + "... (300 bytes)"
    )
    assert "\n" not in line


def test_after_a_frame_it_cannot_decode_the_trace_of_that_direction_stops(
    lines: Callable[[], list[str]],
) -> None:
    tracer = ConnectionTracer("peer")
    tracer.accepted(KEY, b"\r\n", compressed=False)
    tracer.received(frame(OP_TEXT, b"unmasked", mask=False))
    tracer.received(frame(OP_TEXT, b"later"))  # Not traced: no longer in step.
    tracer.sent(frame(OP_TEXT, b"still traced", mask=False))
    frames = [
        line for line in lines() if line.startswith(("[peer] recv", "[peer] sent f"))
    ]
    assert frames == [
        "[peer] recv cannot decode: server received unexpected unmasked frame"
        " (close code 1002); not tracing this direction any more",
        "[peer] sent frame FIN=1 RSV=000 opcode=0x1 text MASK=0 len=12 [81 0c]"
        " 'still traced'",
    ]


# ---------------------------------------------------------------- off


def test_tracing_is_off_by_default_and_leaves_no_tracer(
    server: RunningServer, lines: Callable[[], list[str]]
) -> None:
    with join(server.url()) as ws:
        recv_json(ws)
        ws.send('{"x": 1}')
        recv_json(ws)
        with server.server.presence.lock:
            sessions = list(server.server.presence.connections.values())
        assert [session._tracer for session in sessions] == [None]
    assert lines() == []


def test_trace_option_and_its_help() -> None:
    parser = build_parser()
    assert options_from_args(parser.parse_args([])).trace is False
    assert options_from_args(parser.parse_args(["--trace"])).trace is True
    assert "Sec-WebSocket-Accept" in parser.format_help()


def test_cli_trace_logs_even_at_log_level_warning() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wspractice", "--port", "0", "--trace"]
        + ["--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(": ", 1)[1].split()[0]
        with join(url.replace("/?username=Alex", "/echo")) as ws:
            ws.send("hi there")
            assert ws.recv(timeout=TIMEOUT) == "hi there"
        proc.terminate()
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "recv GET /echo HTTP/1.1" in err
    assert "accept   base64" in err
    assert re.search(
        r"recv frame FIN=1 RSV=000 opcode=0x1 text MASK=1 .* 'hi there'", err
    )
    assert re.search(
        r"sent frame FIN=1 RSV=000 opcode=0x1 text MASK=0 .* 'hi there'", err
    )
    assert "Alex connected" not in err  # INFO of other loggers stays off.
