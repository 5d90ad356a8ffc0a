"""Plain HTTP, over raw sockets: the request handler's own answers and limits.

Everything that is not a WebSocket upgrade: 404 with a hint, 405, HEAD,
keep-alive, http.server's own errors in plain text, the cap on the request
head (414, 431) and the deadline for it. Upgrades are in test_upgrade.py and
the demo page's files in test_assets.py.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from .clients import join, recv_json, users_named
from .conftest import TIMEOUT, RunningServer
from .rawws import (
    HTTPResponse,
    RawClient,
    parse_response_head,
    read_until_closed,
    upgrade_request,
)


def exchange(server: RunningServer, request: bytes) -> tuple[int, dict[str, str], str]:
    with RawClient(server.port) as client:
        client.send(request)
        response = client.read_response()
        return response.status, response.headers, response.body.decode()


def head(server: RunningServer, target: str) -> HTTPResponse:
    """A HEAD request: the response head, and a check that no body follows."""
    request = f"HEAD {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode("latin-1")
    with RawClient(server.port) as client:
        client.send(request)
        while b"\r\n\r\n" not in client.buffer:
            assert client._fill(), client.buffer
        head, rest = client.buffer.split(b"\r\n\r\n", 1)
        status, headers = parse_response_head(head)
        if headers.get("connection") == "close":
            assert client.at_eof()
            assert client.buffer == head + b"\r\n\r\n", "a body followed the head"
        else:  # The next response must follow the head at once.
            client.send(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
            while not rest.startswith(b"HTTP/") or b"\r\n\r\n" not in rest:
                assert client._fill(), client.buffer
                rest = client.buffer.split(b"\r\n\r\n", 1)[1]
            assert rest.startswith(b"HTTP/1.1 404 Not Found\r\n"), rest
    return HTTPResponse(status, headers, b"")


# ---------------------------------------------------------------- answers


def test_plain_get_of_an_unknown_path_is_404(server: RunningServer) -> None:
    status, _, body = exchange(server, b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 404
    assert "ws://HOST:PORT/?username=NAME" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(server: RunningServer, method: str) -> None:
    request = f"{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    status, headers, body = exchange(server, request)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert body == f"method {method} is not allowed; use GET\n"


def test_post_with_upgrade_headers_is_405(server: RunningServer) -> None:
    request = upgrade_request().replace(b"GET ", b"POST ", 1)
    assert exchange(server, request)[0] == 405


def test_head_sends_the_headers_of_get_and_no_body(server: RunningServer) -> None:
    response = head(server, "/static/app.js")
    assert response.status == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    status, headers, body = exchange(
        server, b"GET /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert response.headers["content-length"] == headers["content-length"]
    assert headers["content-length"] == str(len(body.encode()))


def test_head_of_an_unknown_path_is_404_without_body(server: RunningServer) -> None:
    response = head(server, "/nothing-here")
    assert response.status == 404
    assert response.body == b""


def test_keep_alive_serves_a_second_request_on_the_same_connection(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        request = b"GET /static/style.css HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        client.send(request + request)
        first = client.read_response()
        second = client.read_response()
    assert first.status == second.status == 200
    assert first.body == second.body
    assert first.body


@pytest.mark.parametrize(
    ("request_bytes", "status", "body"),
    [
        (b"GARBAGE\r\n\r\n", 400, b"Bad request syntax ('GARBAGE')\n"),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, b"Invalid HTTP version (2.0)\n"),
        (
            b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
            501,
            b"Unsupported method ('BREW')\n",
        ),
    ],
)
def test_http_servers_own_errors_are_plain_text(
    server: RunningServer, request_bytes: bytes, status: int, body: bytes
) -> None:
    with RawClient(server.port) as client:
        client.send(request_bytes)
        response = client.read_response()
    assert response.status == status
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == body


# ---------------------------------------------------------------- the head's deadline


def test_a_client_that_never_finishes_its_request_is_dropped(
    start_server: Any,
) -> None:
    server = start_server(handshake_timeout=0.5)
    with RawClient(server.port) as client:
        client.send(upgrade_request()[:40])
        started = time.monotonic()
        assert client.at_eof()
        assert 0.4 < time.monotonic() - started < 3
    # The server still serves others.
    with join(server.url()) as alex:
        assert len(recv_json(alex)) == 1


def test_slowloris_is_cut_at_the_deadline_not_per_read(start_server: Any) -> None:
    server = start_server(handshake_timeout=0.6)
    client = RawClient(server.port)
    request = upgrade_request()
    started = time.monotonic()
    sent = 0
    try:
        while sent < len(request):
            client.send(request[sent : sent + 1])
            sent += 1
            time.sleep(0.1)
    except OSError:
        pass
    finally:
        client.close()
    elapsed = time.monotonic() - started
    assert sent < len(request)  # It never got to finish.
    assert 0.5 < elapsed < 3


def test_an_idle_connection_that_sends_nothing_is_dropped(start_server: Any) -> None:
    server = start_server(handshake_timeout=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        started = time.monotonic()
        received, how = read_until_closed(s)
        elapsed = time.monotonic() - started
    assert (received, how) == (b"", "eof"), "an idle connection was not dropped"
    assert elapsed < 2


def test_the_handshake_deadline_spares_an_open_websocket(start_server: Any) -> None:
    server = start_server(handshake_timeout=0.3)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        time.sleep(1.0)  # Three deadlines go by.
        alex.send('{"x": 1}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 1}}


# ---------------------------------------------------------------- the head's size


def test_headers_over_the_cap_get_431(start_server: Any) -> None:
    server = start_server(max_header_size=1024)
    with RawClient(server.port) as client:
        client.send(upgrade_request(extra="X-Padding: " + "a" * 1000 + "\r\n"))
        response = client.read_response()
    assert response.status == 431
    assert response.body == b"the request line and headers are larger than 1024 bytes\n"


def test_headers_under_the_cap_pass(start_server: Any) -> None:
    server = start_server(max_header_size=1024)
    with RawClient(server.port) as client:
        client.send(upgrade_request(extra="X-Padding: " + "a" * 700 + "\r\n"))
        assert client.read_response().status == 101


def test_a_request_line_over_the_cap_gets_414(start_server: Any) -> None:
    server = start_server(max_header_size=1024)
    with RawClient(server.port) as client:
        client.send(upgrade_request("/?username=" + "a" * 1100))
        response = client.read_response()
    assert response.status == 414
    assert response.body == b"the request line is longer than 1024 bytes\n"


def test_more_than_100_headers_get_431_in_plain_text(server: RunningServer) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request(extra="X-A: b\r\n" * 101))
        response = client.read_response()
    assert response.status == 431
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == b"Too many headers\n"
