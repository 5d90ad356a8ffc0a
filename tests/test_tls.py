"""wss:// and https:// with certificates from trustme: the TLS layer.

The same server, presence app and echo over TLS; refusals that still arrive
in plain text inside TLS; and clients that do not speak TLS, or stop in the
middle of its handshake, dropped without costing a thread.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

trustme = pytest.importorskip("trustme")

from .clients import join, last_until, recv_json, users_named  # noqa: E402
from .conftest import TIMEOUT, threads_left  # noqa: E402
from .rawws import read_until_closed, upgrade_request  # noqa: E402


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
            seen = last_until(
                alex, lambda s: users_named(s).get("Bob") == {"x": 1, "y": 2}
            )
    assert users_named(seen) == {"Alex": {}, "Bob": {"x": 1, "y": 2}}, seen


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
        _, how = read_until_closed(s)
    assert how in ("eof", "reset"), "plain HTTP to the TLS port was not dropped"
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
    address = ("127.0.0.1", tls_server.port)
    with socket.create_connection(address, timeout=TIMEOUT) as raw:
        with client_context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(upgrade_request("/"))
            response, how = read_until_closed(s)
    assert how == "eof", "the server did not close after refusing"
    assert response.startswith(b"HTTP/1.1 400 ")
    assert response.endswith(b"username is required: add ?username=NAME to the URL\n")


def test_a_tls_client_that_never_says_hello_is_dropped(
    start_server: Any, tls_files: tuple[str, str]
) -> None:
    certfile, keyfile = tls_files
    server = start_server(certfile=certfile, keyfile=keyfile, handshake_timeout=0.3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
        s.sendall(b"\x16\x03\x01")  # The start of a ClientHello, then silence.
        received, how = read_until_closed(s)
    assert (received, how) in (
        (b"", "eof"),
        (b"", "reset"),
    ), f"a client silent in the TLS handshake was kept past handshake_timeout: {how}"


def test_plain_http_to_a_tls_port_costs_no_thread(
    start_server: Any, ca: Any, tmp_path: Path
) -> None:
    # One file with the key and the chain: --certfile alone.
    certfile = tmp_path / "both.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(certfile)
    )
    server = start_server(certfile=str(certfile))
    threads = set(threading.enumerate())
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            _, how = read_until_closed(s)
            assert how in ("eof", "reset"), "plain HTTP to the TLS port was kept"
    assert threads_left(threads) == [], "a plain HTTP request left a thread"
