"""The upgrade, as a client sees it: 101, or a refusal with its reason.

The WebSocket server checks each upgrade request against RFC 6455 and the
endpoint's own rules (400, 426, 403), admits it or not (503), answers 101 and
hands the bytes that came with the request to the connection. The rules
themselves, for every input, are in test_handshake.py.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from .clients import join, recv_json, users_named
from .conftest import TIMEOUT, RunningServer
from .rawws import (
    KEY,
    OP_TEXT,
    RawClient,
    accept_value,
    frame,
    upgrade_request,
)


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


def test_http_1_0_upgrade_is_400(server: RunningServer) -> None:
    request = upgrade_request().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    status, _, body = exchange(server, request)
    assert (status, body) == (
        400,
        "a WebSocket handshake needs HTTP/1.1, not HTTP/1.0\n",
    )


def test_an_unsplittable_request_target_gets_400(server: RunningServer) -> None:
    # Bug 1 (found by fuzzing): the client got no response at all.
    status, _, body = exchange(server, upgrade_request("http://[::1/?username=x"))
    assert status == 400
    assert body.startswith("the request target is not a valid URL")


def test_a_non_ascii_key_gets_400(server: RunningServer) -> None:
    # Bug 2 (found by fuzzing): the client got no response at all.
    request = upgrade_request("/echo", key="\xe9" * 24)  # latin-1 bytes
    status, _, body = exchange(server, request)
    assert status == 400
    assert "Sec-WebSocket-Key must be 16 random bytes" in body


def test_a_bad_deflate_offer_is_declined_not_dropped(start_server: Any) -> None:
    # Bug 3 (found by fuzzing): with --compression the client got no
    # response at all. RFC 7692 section 5: decline the offer and go on
    # without the extension.
    server = start_server(compression=True)
    extra = (
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=abc\r\n"
    )
    status, headers, _ = exchange(server, upgrade_request("/echo", extra=extra))
    assert status == 101
    assert "sec-websocket-extensions" not in headers


def test_compression_is_negotiated_when_enabled(start_server: Any) -> None:
    server = start_server(compression=True)
    extra = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    status, headers, _ = exchange(server, upgrade_request("/echo", extra=extra))
    assert status == 101
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")


# ---------------------------------------------------------------- admission


def test_beyond_max_connections_upgrades_get_503_with_retry_after(
    start_server: Any,
) -> None:
    server = start_server(max_connections=2)
    with join(server.url("/?username=A")) as a, join(server.url("/echo")) as b:
        recv_json(a)
        status, headers, body = exchange(server, upgrade_request("/?username=C"))
        assert status == 503
        assert headers["retry-after"] == "5"
        assert body == "the server is full: 2 WebSockets are open\n"
        b.send("still fine")
        assert b.recv(timeout=TIMEOUT) == "still fine"
    # Slots come back when connections close (their threads end soon after).
    snapshot = None
    refusals = []
    deadline = time.monotonic() + TIMEOUT
    while snapshot is None and time.monotonic() < deadline:
        try:
            with join(server.url("/?username=D")) as d:
                snapshot = recv_json(d)
        except InvalidStatus as exc:
            refusals.append(exc.response.status_code)
            time.sleep(0.05)
    assert snapshot is not None, f"no slot came back in {TIMEOUT} s: {refusals}"
    assert users_named(snapshot) == {"D": {}}


# ---------------------------------------------------------------- routing


def test_echo_is_at_echo_and_the_presence_app_at_every_other_path(
    server: RunningServer,
) -> None:
    with join(server.url("/echo?anything=1")) as echo:
        echo.send("ping")
        assert echo.recv(timeout=TIMEOUT) == "ping"
    with join(server.url("/rooms/7?username=Alex")) as alex:
        assert users_named(recv_json(alex)) == {"Alex": {}}


# ---------------------------------------------------------------- hand-over


def test_frame_in_the_same_packet_as_the_handshake_is_not_lost(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request("/echo") + frame(OP_TEXT, b"early bird"))
        assert client.read_response().status == 101
        assert client.read_frame() == (OP_TEXT, True, b"early bird")


def test_state_in_the_same_packet_as_the_handshake_is_applied(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request() + frame(OP_TEXT, b'{"x": 7, "y": 8}'))
        assert client.read_response().status == 101
        # The join and the update may come as one coalesced snapshot.
        while True:
            snapshot = json.loads(client.read_frame()[2])
            if users_named(snapshot) != {"Alex": {}}:
                break
    assert users_named(snapshot) == {"Alex": {"x": 7, "y": 8}}


def test_beyond_max_connections_per_address_upgrades_get_429(
    start_server: Any,
) -> None:
    server = start_server(max_connections_per_address=2)
    with ExitStack() as stack:
        first = stack.enter_context(join(server.url("/echo")))
        stack.enter_context(join(server.url("/?username=B")))
        with RawClient(server.port) as third:
            third.send(upgrade_request("/echo"))
            response = third.read_response()
        assert response.status == 429
        assert response.headers["retry-after"] == "5"
        assert response.body.decode() == (
            "too many WebSockets from 127.0.0.1: 2 are open"
            " (--max-connections-per-address)\n"
        )
        first.close()
        statuses = []
        deadline = time.monotonic() + TIMEOUT
        while not statuses or statuses[-1] != 101:  # Once the close is seen.
            assert time.monotonic() < deadline, statuses
            with RawClient(server.port) as again:
                again.send(upgrade_request("/echo"))
                statuses.append(again.read_response().status)
        assert set(statuses) <= {429, 101}
