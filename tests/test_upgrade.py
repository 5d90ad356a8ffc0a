"""The opening handshake and plain HTTP, over raw sockets."""

from __future__ import annotations

import logging

import pytest

from .conftest import RunningServer
from .rawws import KEY, RawClient, accept_value, upgrade_request


def exchange(server: RunningServer, request: bytes) -> tuple[int, dict[str, str], str]:
    with RawClient(server.port) as client:
        client.send(request)
        response = client.read_response()
        return response.status, response.headers, response.body.decode()


def test_upgrade_gets_101_with_the_accept_value(server: RunningServer) -> None:
    status, headers, _ = exchange(server, upgrade_request())
    assert status == 101
    assert headers["upgrade"].lower() == "websocket"
    assert headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-accept"] == accept_value(KEY)
    assert accept_value(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    assert "sec-websocket-protocol" not in headers
    assert "sec-websocket-extensions" not in headers


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/", "username is required: add ?username=NAME to the URL"),
        ("/?username=", "username must not be empty"),
        ("/?username=a&username=b", "username must be given only once"),
        ("/?username=" + "x" * 65, "username must be at most 64 characters, got 65"),
        (
            "/?username=a%00b",
            "username must not contain control characters (found U+0000)",
        ),
        (
            "/?username=%C3",
            "the query string has percent-escapes that are not valid UTF-8",
        ),
    ],
)
def test_bad_username_gets_400_with_the_rule_in_body_and_log(
    server: RunningServer, path: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="wspractice"):
        status, headers, body = exchange(server, upgrade_request(path))
    assert status == 400
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == reason + "\n"
    assert any(reason in record.getMessage() for record in caplog.records)


def test_missing_upgrade_header_with_a_key_gets_400(server: RunningServer) -> None:
    request = (
        "GET /?username=Alex HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    status, _, body = exchange(server, request)
    assert (status, body) == (400, "the Upgrade header must be 'websocket'\n")


def test_missing_connection_upgrade_gets_400(server: RunningServer) -> None:
    request = upgrade_request().replace(b"Connection: Upgrade", b"Connection: close")
    status, _, body = exchange(server, request)
    assert (status, body) == (400, "the Connection header must include 'Upgrade'\n")


def test_bad_key_gets_400(server: RunningServer) -> None:
    status, _, body = exchange(server, upgrade_request(key="not-base64"))
    assert status == 400
    assert "Sec-WebSocket-Key must be 16 random bytes" in body


def test_unsupported_version_gets_426_naming_version_13(server: RunningServer) -> None:
    status, headers, body = exchange(server, upgrade_request(version="8"))
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert "unsupported Sec-WebSocket-Version" in body


def test_cross_site_origin_gets_403(server: RunningServer) -> None:
    request = upgrade_request(extra="Origin: https://evil.example\r\n")
    status, _, body = exchange(server, request)
    assert status == 403
    assert "Origin 'https://evil.example' is not allowed" in body


def test_loopback_origin_on_another_port_is_allowed(server: RunningServer) -> None:
    request = upgrade_request(extra="Origin: http://localhost:3000\r\n")
    assert exchange(server, request)[0] == 101


def test_subprotocols_and_unknown_extensions_are_not_negotiated(
    server: RunningServer,
) -> None:
    extra = (
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n"
    )
    status, headers, _ = exchange(server, upgrade_request(extra=extra))
    assert status == 101
    assert "sec-websocket-protocol" not in headers
    assert "sec-websocket-extensions" not in headers


def test_compression_is_declined_unless_enabled(server: RunningServer) -> None:
    extra = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    status, headers, _ = exchange(server, upgrade_request(extra=extra))
    assert status == 101
    assert "sec-websocket-extensions" not in headers


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


def test_http_1_0_upgrade_is_400(server: RunningServer) -> None:
    request = upgrade_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    status, _, body = exchange(server, request)
    assert (status, body) == (
        400,
        "a WebSocket handshake needs HTTP/1.1, not HTTP/1.0\n",
    )
