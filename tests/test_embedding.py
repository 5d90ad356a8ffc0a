"""wspractice from Python: docs/embedding.md's example, run as it is written,
and each promise that page makes, on real servers.

The example is taken out of the page (its first ``python`` block) and run in
a fresh interpreter, so the page and what it shows cannot drift apart.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from http import HTTPStatus
from pathlib import Path

import pytest

import wspractice
from wspractice import (
    CloseError,
    Connection,
    Endpoint,
    HandshakeError,
    Options,
    Request,
    Server,
)

from .clients import join, recv_json
from .conftest import TIMEOUT
from .rawws import OP_BINARY, RawClient, frame, upgrade_request

DOC = Path(__file__).resolve().parent.parent / "docs" / "embedding.md"


def doc_example() -> str:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match, "docs/embedding.md has no python block"
    return match.group(1)


def test_the_documented_example_runs_and_prints_what_the_page_says(
    tmp_path: Path,
) -> None:
    script = tmp_path / "embed_example.py"
    script.write_text(doc_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=20 * TIMEOUT,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6, done.stdout
    port = re.fullmatch(r"listening on port (\d+)", lines[0])
    assert port, lines[0]
    assert lines[1] == f"ws://127.0.0.1:{port.group(1)}/upper"
    assert lines[2] == "HELLO"
    assert lines[3] == "/upper connection closed after 1 messages"
    assert re.fullmatch(
        r'\{"[0-9a-f-]{36}":\{"username":"Alex","state":\{\}\}\}', lines[4]
    ), lines[4]
    assert lines[5] == "stopped"
    assert "Traceback" not in done.stderr
    # What the page says it prints, with its own port and uuid.
    shown = re.search(r"It prints.*?```text\n(.*?)```", DOC.read_text(), re.S)
    assert shown is not None
    normalize = re.compile(r"\d{4,5}|[0-9a-f-]{36}")
    assert normalize.sub("N", shown.group(1)) == normalize.sub("N", done.stdout)


class Upper:
    def check_request(self, request: Request) -> str | None:
        if "token=wrong" in request.query:
            raise HandshakeError(HTTPStatus.UNAUTHORIZED, "bad token")
        return "upper.v1" if "upper.v1" in request.subprotocols else None

    def handle_connection(self, connection: Connection, request: Request) -> None:
        connection.context = request.path

    def handle_message(self, connection: Connection, message: str | bytes) -> None:
        if isinstance(message, bytes):
            raise CloseError("text only, please", 1003)  # type: ignore[arg-type]
        connection.send_text(message.upper())

    def handle_close(self, connection: Connection) -> None:
        pass


def test_an_endpoint_of_one_s_own_needs_no_username() -> None:
    endpoint: Endpoint = Upper()
    with Server(Options(port=0)) as server:
        server.websockets.add_endpoint("/upper", endpoint)
        server.start()
        with join(server.url("/upper")) as ws:
            ws.send("hello")
            assert ws.recv(timeout=TIMEOUT) == "HELLO"
        with join(server.url("/upper"), subprotocols=["x", "upper.v1"]) as ws:
            assert ws.subprotocol == "upper.v1"
        with RawClient(server.port) as client:
            client.send(upgrade_request("/upper?token=wrong"))
            refused = client.read_response()
        assert (refused.status, refused.body) == (401, b"bad token\n")
        with RawClient(server.port) as client:
            client.handshake("/upper")
            client.send(frame(OP_BINARY, b"\x01"))
            assert client.read_close() == (1003, "text only, please")
        # Every other path is still the presence app, with its rule.
        with RawClient(server.port) as client:
            client.send(upgrade_request("/other"))
            response = client.read_response()
        assert (response.status, response.body) == (
            400,
            b"username is required: add ?username=NAME to the URL\n",
        )
        with join(server.url("/?username=Alex")) as alex:
            assert [u["username"] for u in recv_json(alex).values()] == ["Alex"]


def test_an_endpoint_path_must_start_with_a_slash() -> None:
    server = Server(Options(port=0))
    try:
        with pytest.raises(ValueError, match="starts with '/'"):
            server.websockets.add_endpoint("upper", Upper())
    finally:
        server.stop()


def test_stop_before_serve_forever_does_not_hang() -> None:
    server = Server(Options(port=0))
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(4 * TIMEOUT)
    assert not stopper.is_alive(), "stop() hung before serve_forever()"
    # serve_forever() after stop() returns at once instead of serving a
    # closed socket.
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    serving.join(4 * TIMEOUT)
    assert not serving.is_alive()
    server.stop()  # A second stop does nothing.
    with pytest.raises(RuntimeError, match="started or stopped already"):
        server.start()


def test_start_serves_until_stop_and_stop_joins_the_thread() -> None:
    server = Server(Options(port=0))
    thread = server.start()
    assert thread.daemon and thread.is_alive()
    with pytest.raises(RuntimeError):
        server.start()
    with join(server.url("/echo")) as ws:
        ws.send("ping")
        assert ws.recv(timeout=TIMEOUT) == "ping"
        server.stop()
        assert not thread.is_alive()
    assert ws.close_code == 1001
    with pytest.raises(OSError):
        RawClient(server.port)


def test_stop_from_another_thread_while_serving_forever() -> None:
    server = Server(Options(port=0))
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    with join(server.url("/echo")) as ws:
        ws.send("x")
        assert ws.recv(timeout=TIMEOUT) == "x"
    server.stop()
    serving.join(4 * TIMEOUT)
    assert not serving.is_alive()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_connections": -5}, "max_connections must be positive, got -5"),
        ({"port": "8000"}, "port must be an integer, got '8000'"),
        ({"max_connections": 2.5}, "max_connections must be a whole number, got 2.5"),
        ({"compression": "yes"}, "compression must be True or False, got 'yes'"),
        ({"ping_interval": True}, "ping_interval must be a number, got True"),
        (
            {"allowed_origins": "https://example.com"},
            "allowed_origins must be a tuple of strings, got 'https://example.com'",
        ),
        ({"certfile": 1}, "certfile must be a string or None, got 1"),
    ],
)
def test_options_are_checked_when_built(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        Options(**changes)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_options_take_lists_and_whole_floats_as_the_types_they_mean() -> None:
    options = Options(
        allowed_origins=["https://a.example"],  # type: ignore[arg-type]
        max_connections=10.0,  # type: ignore[arg-type]
    )
    assert options.allowed_origins == ("https://a.example",)
    assert options.max_connections == 10 and isinstance(options.max_connections, int)


def test_a_server_refuses_bad_options_before_it_binds() -> None:
    with pytest.raises(ValueError, match="max_connections must be positive"):
        Server(Options().replace(max_connections=-5, port=0))


def test_the_package_exports_what_an_embedder_needs() -> None:
    for name in (
        "Server",
        "Options",
        "Endpoint",
        "Connection",
        "Request",
        "HandshakeError",
        "CloseError",
    ):
        assert name in wspractice.__all__
        assert getattr(wspractice, name) is not None
