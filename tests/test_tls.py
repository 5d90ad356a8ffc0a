"""wss:// with certificates from trustme."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

trustme = pytest.importorskip("trustme")

from .clients import join, recv_json, users_named  # noqa: E402
from .conftest import TIMEOUT  # noqa: E402


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(certfile), append=True)
    yield str(certfile), str(keyfile)


@pytest.fixture
def client_context(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def tls_server(start_server: Any, tls_files: tuple[str, str]) -> Any:
    certfile, keyfile = tls_files
    return start_server(certfile=certfile, keyfile=keyfile)


def test_the_url_says_wss(tls_server: Any) -> None:
    assert tls_server.url().startswith("wss://127.0.0.1:")


def test_presence_over_wss(tls_server: Any, client_context: ssl.SSLContext) -> None:
    with join(tls_server.url("/?username=Alex"), ssl=client_context) as alex:
        recv_json(alex)
        with join(tls_server.url("/?username=Bob"), ssl=client_context) as bob:
            recv_json(bob)
            bob.send(json.dumps({"x": 1, "y": 2}))
            while True:
                snapshot = recv_json(alex)
                if users_named(snapshot).get("Bob") == {"x": 1, "y": 2}:
                    break


def test_echo_over_wss_big_and_small(
    tls_server: Any, client_context: ssl.SSLContext
) -> None:
    with join(tls_server.url("/echo"), ssl=client_context) as ws:
        for size in (0, 1, 125, 126, 20_000, 32_768):
            payload = bytes(i % 251 for i in range(size))
            ws.send(payload)
            assert ws.recv(timeout=TIMEOUT) == payload
        ws.send("héllo")
        assert ws.recv(timeout=TIMEOUT) == "héllo"


def test_plain_tcp_to_a_tls_port_is_dropped_and_others_carry_on(
    tls_server: Any, client_context: ssl.SSLContext
) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=TIMEOUT) as s:
        s.sendall(b"GET /?username=Alex HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    with join(tls_server.url("/echo"), ssl=client_context) as ws:
        ws.send("ok")
        assert ws.recv(timeout=TIMEOUT) == "ok"


def test_an_untrusting_client_fails_and_others_carry_on(
    tls_server: Any, client_context: ssl.SSLContext
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        join(tls_server.url("/echo"), ssl=ssl.create_default_context())
    with join(tls_server.url("/echo"), ssl=client_context) as ws:
        ws.send("ok")
        assert ws.recv(timeout=TIMEOUT) == "ok"


def test_handshake_rejections_arrive_over_tls(
    tls_server: Any, client_context: ssl.SSLContext
) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port)) as raw:
        with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            response = b""
            while chunk := s.recv(4096):  # The server closes after refusing.
                response += chunk
    assert response.startswith(b"HTTP/1.1 400 ")
    assert response.endswith(b"username is required: add ?username=NAME to the URL\n")
