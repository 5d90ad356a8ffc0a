"""``python -m wspractice.client``, run as a real process against a real server."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from .clients import join, recv_until, users_named
from .conftest import TIMEOUT, RunningServer

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
