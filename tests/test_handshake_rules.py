"""Unit tests for the handshake rules (no I/O)."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from wspractice.errors import HandshakeError
from wspractice.handshake import (
    accept,
    check_origin,
    check_upgrade,
    is_websocket_request,
    parse_username,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def headers(**changes: str | None) -> list[tuple[str, str]]:
    base = {
        "Host": "127.0.0.1:8000",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return list(base.items())


def rejected(
    target: str = "/?username=Alex", version: str = "HTTP/1.1", **changes: str | None
) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        check_upgrade(version, target, headers(**changes))
    return info.value


def test_rfc6455_sample_key_gives_the_rfcs_accept_value() -> None:
    upgrade = check_upgrade("HTTP/1.1", "/?username=Alex", headers())
    response, extensions = accept(upgrade, compression=False)
    assert ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in response
    assert extensions == []


def test_the_request_carries_path_and_query_for_the_endpoint() -> None:
    request = check_upgrade("HTTP/1.1", "/rooms/1?username=Bo", headers())
    assert (request.path, request.query) == ("/rooms/1", "username=Bo")
    assert parse_username(request.query) == "Bo"


def test_a_path_without_a_query_has_an_empty_one() -> None:
    request = check_upgrade("HTTP/1.1", "/echo", headers())
    assert (request.path, request.query) == ("/echo", "")


def test_header_tokens_are_case_insensitive_lists() -> None:
    request = check_upgrade(
        "HTTP/1.1",
        "/echo",
        headers(Upgrade="WebSocket", Connection="keep-alive, upgrade"),
    )
    assert request.path == "/echo"


@pytest.mark.parametrize(
    ("changes", "status", "fragment"),
    [
        ({"Upgrade": "h2c", "Connection": "Upgrade"}, 400, "Upgrade header"),
        ({"Connection": "keep-alive"}, 400, "Connection header"),
        ({"Connection": None}, 400, "Connection header"),
        ({"Sec_WebSocket_Key": None}, 400, "Sec-WebSocket-Key header is missing"),
        ({"Sec_WebSocket_Key": "short"}, 400, "16 random bytes"),
        ({"Sec_WebSocket_Key": "!!!!!!!!!!!!!!!!!!!!!!=="}, 400, "16 random bytes"),
        ({"Sec_WebSocket_Version": None}, 400, "Sec-WebSocket-Version header"),
        ({"Sec_WebSocket_Version": "8"}, 426, "unsupported Sec-WebSocket-Version"),
        ({"Host": None}, 400, "Host header"),
    ],
)
def test_bad_handshake_headers_are_rejected_with_a_reason(
    changes: dict[str, str | None], status: int, fragment: str
) -> None:
    error = rejected(**changes)
    assert error.status == status
    assert fragment in error.reason


def test_version_rejections_name_the_supported_version() -> None:
    for changes in ({"Sec_WebSocket_Version": "8"}, {"Sec_WebSocket_Version": None}):
        error = rejected(**changes)  # type: ignore[arg-type]
        assert ("Sec-WebSocket-Version", "13") in error.headers


def test_http_1_0_cannot_upgrade() -> None:
    error = rejected(version="HTTP/1.0")
    assert error.status == HTTPStatus.BAD_REQUEST
    assert "HTTP/1.1" in error.reason


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("", "username is required"),
        ("name=Alex", "username is required"),
        ("username=", "must not be empty"),
        ("username=Alex&username=Bob", "only once"),
        ("username=" + "a" * 65, "at most 64 characters, got 65"),
        ("username=Al%0Aex", "control characters (found U+000A)"),
        ("username=%7F", "control characters (found U+007F)"),
        ("username=%C2%85", "control characters (found U+0085)"),
        ("username=%FF", "not valid UTF-8"),
    ],
)
def test_username_rules(query: str, fragment: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_username(query)
    assert info.value.status == HTTPStatus.BAD_REQUEST
    assert fragment in info.value.reason


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("username=Alex", "Alex"),
        ("username=Ana+Mar%C3%ADa", "Ana María"),
        ("username=%E7%8E%8B", "王"),
        ("username=" + "é" * 64, "é" * 64),
        ("username=%3Cimg%20src%3Dx%3E", "<img src=x>"),
        ("x=1&username=Bo&y=2", "Bo"),
    ],
)
def test_valid_usernames(query: str, name: str) -> None:
    assert parse_username(query) == name


def test_raw_utf8_in_the_request_line_is_understood() -> None:
    # http.server decodes the request line as latin-1.
    target = "/?username=王".encode().decode("latin-1")
    request = check_upgrade("HTTP/1.1", target, headers())
    assert parse_username(request.query) == "王"


def test_plain_requests_are_not_websocket_requests() -> None:
    assert not is_websocket_request([("Host", "x")])
    assert not is_websocket_request([("Upgrade", "h2c"), ("Connection", "Upgrade")])
    assert is_websocket_request([("upgrade", "WebSocket")])
    assert is_websocket_request([("Sec-WebSocket-Key", KEY)])


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://localhost:3000", "127.0.0.1:8000", True),
        ("http://127.0.0.5:5173", "example.com", True),
        ("http://[::1]:3000", "example.com", True),
        ("https://app.example.com", "app.example.com", True),
        ("http://app.example.com", "app.example.com:80", True),
        ("https://evil.example", "127.0.0.1:8000", False),
        ("http://app.example.com:8080", "app.example.com", False),
        ("null", "127.0.0.1:8000", False),
        ("not a url", "127.0.0.1:8000", False),
    ],
)
def test_origin_policy(origin: str, host: str, allowed: bool) -> None:
    if allowed:
        check_origin(origin, host, ())
    else:
        with pytest.raises(HandshakeError) as info:
            check_origin(origin, host, ())
        assert info.value.status == HTTPStatus.FORBIDDEN
        assert repr(origin) in info.value.reason


def test_allowed_origins_extend_the_policy() -> None:
    check_origin("https://evil.example", "h", ("https://evil.example",))
    check_origin("https://anything.example", "h", ("*",))


def test_deflate_is_negotiated_only_when_offered_and_enabled() -> None:
    offer = "permessage-deflate; client_max_window_bits"
    upgrade = check_upgrade(
        "HTTP/1.1", "/echo", headers(Sec_WebSocket_Extensions=offer)
    )
    response, extensions = accept(upgrade, compression=True)
    assert [e.name for e in extensions] == ["permessage-deflate"]
    assert dict(response)["Sec-WebSocket-Extensions"].startswith("permessage-deflate")

    response, extensions = accept(upgrade, compression=False)
    assert extensions == [] and "Sec-WebSocket-Extensions" not in dict(response)

    plain = check_upgrade("HTTP/1.1", "/echo", headers())
    response, extensions = accept(plain, compression=True)
    assert extensions == [] and "Sec-WebSocket-Extensions" not in dict(response)


def test_unknown_extensions_and_subprotocols_are_never_accepted() -> None:
    upgrade = check_upgrade(
        "HTTP/1.1",
        "/echo",
        headers(Sec_WebSocket_Extensions="x-foo", Sec_WebSocket_Protocol="chat"),
    )
    response, extensions = accept(upgrade, compression=True)
    names = {name for name, _ in response}
    assert extensions == []
    assert "Sec-WebSocket-Extensions" not in names
    assert "Sec-WebSocket-Protocol" not in names
