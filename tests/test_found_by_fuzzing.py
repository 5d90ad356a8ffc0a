"""Bugs the fuzzers found, each shown with one exact input.

Each test states the behaviour the server should have and is marked
``xfail(strict=True)`` with the exception it raises today, so the suite stays
green until the core is fixed and then fails loudly (XPASS) so that the mark
and the matching entry in ``tests/known_bugs.py`` are removed together.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import pytest

from wspractice.errors import HandshakeError, MessageError
from wspractice.handshake import Upgrade, accept, check_upgrade
from wspractice.messages import parse_state

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT, RunningServer
from .known_bugs import strict_json
from .rawws import KEY, RawClient, upgrade_request

HEADERS = [
    ("Host", "127.0.0.1:8000"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]

BUG_1 = (
    "bug 1: check_upgrade lets urlsplit's ValueError escape for an absolute-form"
    " target with a broken IPv6 host; the client gets no response"
)
BUG_2 = (
    "bug 2: a non-ASCII Sec-WebSocket-Key makes base64.b64decode raise"
    " ValueError (not binascii.Error); the client gets no response"
)
BUG_3 = (
    "bug 3: with --compression, a non-integer window-bits parameter makes"
    " wsproto's PerMessageDeflate raise ValueError; the client gets no response"
)
BUG_4 = (
    "bug 4: a number too large for a double (1e400) is stored as Infinity,"
    " which makes every snapshot invalid JSON for every client"
)


# ------------------------------------------------------------------ bug 1


@pytest.mark.xfail(strict=True, raises=ValueError, reason=BUG_1)
def test_an_unsplittable_request_target_is_refused_with_400() -> None:
    with pytest.raises(HandshakeError) as info:
        check_upgrade("HTTP/1.1", "http://[::1/?username=x", HEADERS)
    assert info.value.status == HTTPStatus.BAD_REQUEST


@pytest.mark.xfail(strict=True, raises=ConnectionError, reason=BUG_1)
def test_on_the_wire_an_unsplittable_request_target_gets_400(
    server: RunningServer,
) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request("http://[::1/?username=x"))
        response = client.read_response()  # Today: EOF, no response at all.
    assert response.status == 400


# ------------------------------------------------------------------ bug 2


@pytest.mark.xfail(strict=True, raises=ValueError, reason=BUG_2)
def test_a_non_ascii_key_is_refused_with_400() -> None:
    headers = [*HEADERS[:3], ("Sec-WebSocket-Key", "\xe9" * 24), HEADERS[4]]
    with pytest.raises(HandshakeError) as info:
        check_upgrade("HTTP/1.1", "/echo", headers)
    assert info.value.status == HTTPStatus.BAD_REQUEST


@pytest.mark.xfail(strict=True, raises=ConnectionError, reason=BUG_2)
def test_on_the_wire_a_non_ascii_key_gets_400(server: RunningServer) -> None:
    with RawClient(server.port) as client:
        client.send(upgrade_request("/echo", key="\xe9" * 24))  # latin-1 bytes
        response = client.read_response()  # Today: EOF, no response at all.
    assert response.status == 400
    assert b"Sec-WebSocket-Key must be 16 random bytes" in response.body


# ------------------------------------------------------------------ bug 3

BAD_OFFER = "permessage-deflate; client_max_window_bits=abc"


@pytest.mark.xfail(strict=True, raises=ValueError, reason=BUG_3)
def test_a_deflate_offer_with_a_bad_parameter_is_declined() -> None:
    upgrade = Upgrade("echo", "/echo", KEY, None, (BAD_OFFER,))
    headers, extensions = accept(upgrade, compression=True)
    assert extensions == []
    assert "Sec-WebSocket-Extensions" not in dict(headers)


@pytest.mark.xfail(strict=True, raises=ConnectionError, reason=BUG_3)
def test_on_the_wire_a_bad_deflate_offer_is_declined_not_dropped(
    start_server: Any,
) -> None:
    server = start_server(compression=True)
    with RawClient(server.port) as client:
        extra = f"Sec-WebSocket-Extensions: {BAD_OFFER}\r\n"
        client.send(upgrade_request("/echo", extra=extra))
        response = client.read_response()  # Today: EOF, no response at all.
    # RFC 7692 section 5: decline the offer and go on without the extension.
    assert response.status == 101
    assert "sec-websocket-extensions" not in response.headers


# ------------------------------------------------------------------ bug 4


@pytest.mark.xfail(strict=True, raises=pytest.fail.Exception, reason=BUG_4)
def test_a_number_too_large_for_a_double_is_a_bad_message() -> None:
    with pytest.raises(MessageError):
        parse_state('{"x": 1e400}')  # Today: returns '{"x":Infinity}'.


@pytest.mark.xfail(strict=True, raises=ValueError, reason=BUG_4)
def test_on_the_wire_one_clients_1e400_leaves_everyones_snapshots_valid_json(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        with join(server.url("/?username=Bob")) as bob:
            recv_until(alex, lambda s: len(s) == 2)
            recv_json(bob)
            bob.send('{"x": 1e400}')
            bob.send('{"x": 1}')
            while True:
                text = alex.recv(timeout=TIMEOUT)
                strict_json(text)  # Today: ValueError, Infinity is not JSON.
                if users_named(json.loads(text))["Bob"] == {"x": 1}:
                    break
