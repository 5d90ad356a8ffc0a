"""Limits under abuse that the other tests leave out."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT
from .rawws import RawClient, upgrade_request


def test_more_than_100_headers_get_431_in_plain_text(start_server: Any) -> None:
    server = start_server()
    with RawClient(server.port) as client:
        client.send(upgrade_request(extra="X-A: b\r\n" * 101))
        response = client.read_response()
    assert response.status == 431
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == b"Too many headers\n"


def test_the_handshake_deadline_spares_an_open_websocket(start_server: Any) -> None:
    server = start_server(handshake_timeout=0.3)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        time.sleep(1.0)  # Three deadlines go by.
        alex.send('{"x": 1}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 1}}


def test_a_tls_client_that_never_says_hello_is_dropped(
    start_server: Any, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    cert = trustme.CA().issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    server = start_server(
        certfile=str(certfile), keyfile=str(keyfile), handshake_timeout=0.3
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        s.sendall(b"\x16\x03\x01")  # The start of a ClientHello, then silence.
        try:
            assert s.recv(4096) == b""
        except ConnectionResetError:
            pass


def test_shutdown_with_a_stalled_reader_still_ends_and_leaves_no_thread(
    start_server: Any,
) -> None:
    before = threading.active_count()
    server = start_server(
        broadcast_interval=0,
        rate_limit=0,
        send_timeout=30,
        close_timeout=0.5,
        max_state_size=32768,
    )
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        stalled = RawClient(server.port)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.handshake("/?username=Stalled")  # ...and never reads again.
        recv_until(alex, lambda s: len(s) == 2)
        pad = "x" * 8000
        session = next(
            c
            for c in server.server.websockets.clients
            if getattr(c.context, "username", None) == "Stalled"
        )
        deadline = time.monotonic() + 3 * TIMEOUT
        while not session.protocol.pending_bytes:  # Until its buffers are full.
            assert time.monotonic() < deadline
            alex.send(f'{{"pad": "{pad}"}}')
            recv_json(alex)
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        with pytest.raises(ConnectionClosed):
            while True:
                alex.recv(timeout=TIMEOUT)
        assert alex.close_code == 1001
        stopper.join(3 * TIMEOUT)
        assert not stopper.is_alive()
        stalled.close()
    deadline = time.monotonic() + TIMEOUT
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before, threading.enumerate()


def test_a_client_flooding_pings_without_reading_is_dropped(
    start_server: Any,
) -> None:
    server = start_server(send_timeout=0.5)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        flood = RawClient(server.port)
        flood.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        flood.handshake("/echo")
        ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125
        # Pongs pile up and the server stops reading: send until we block.
        flood.sock.settimeout(0.5)
        try:
            while True:
                flood.send(ping * 64)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
        # It has taken nothing for send_timeout: the server ends the
        # connection (what it had sent, then FIN or a reset), never waits.
        flood.sock.settimeout(3 * TIMEOUT)
        try:
            while flood.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        flood.close()
        alex.send('{"x": 2}')
        assert users_named(recv_json(alex)) == {"Alex": {"x": 2}}


def test_plain_http_to_a_tls_port_costs_no_thread(
    start_server: Any, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    cert = trustme.CA().issue_cert("127.0.0.1")
    certfile = tmp_path / "cert.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    server = start_server(certfile=str(certfile))
    threads = threading.active_count()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, ssl.SSLError):
                pass
    deadline = time.monotonic() + TIMEOUT
    while threading.active_count() > threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads
