"""Limits that protect the server: timeouts, header size, capacity, rate."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .clients import join, recv_json
from .conftest import TIMEOUT, RunningServer
from .rawws import RawClient, upgrade_request


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
        assert s.recv(1) == b""
        assert time.monotonic() - started < 2


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


def test_beyond_max_connections_upgrades_get_503_with_retry_after(
    start_server: Any,
) -> None:
    server = start_server(max_connections=2)
    with join(server.url("/?username=A")) as a, join(server.url("/echo")) as b:
        recv_json(a)
        with RawClient(server.port) as client:
            client.send(upgrade_request("/?username=C"))
            response = client.read_response()
        assert response.status == 503
        assert response.headers["retry-after"] == "5"
        assert response.body == b"the server is full: 2 WebSockets are open\n"
        b.send("still fine")
        assert b.recv(timeout=TIMEOUT) == "still fine"
    # Slots come back when connections close.
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with join(server.url("/?username=D")) as d:
                assert len(recv_json(d)) == 1
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_shutdown_answers_handshakes_in_flight_with_503_and_leaves_no_thread(
    start_server: Any,
) -> None:
    before = threading.active_count()
    server = start_server(handshake_timeout=5)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        partial = RawClient(server.port)
        request = upgrade_request("/?username=Late")
        partial.send(request[:-2])  # The head is not finished yet.
        idle = socket.create_connection(("127.0.0.1", server.port))
        time.sleep(0.2)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        with pytest.raises(ConnectionClosed):
            while True:
                alex.recv(timeout=TIMEOUT)
        assert alex.close_code == 1001
        try:
            partial.send(request[-2:])
            status = partial.read_response().status
        except OSError:
            status = None  # Cut before it finished: also a refusal.
        assert status in (503, None)
        stopper.join(3 * TIMEOUT)
        assert not stopper.is_alive()
        partial.close()
        idle.close()
    deadline = time.monotonic() + TIMEOUT
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before, threading.enumerate()
