"""The opening handshake's rules (no I/O): examples, then properties.

The examples state each rule once with its exact status and reason. The
property tests (hypothesis) state it for every input: what each function
accepts, what it refuses, and that it refuses only with its own error (a
HandshakeError with a 4xx status and a reason). Refusals as a client sees
them on the wire are in test_upgrade.py.
"""

from __future__ import annotations

import base64
import hashlib
import unicodedata
import urllib.parse
from http import HTTPStatus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wspractice.config import MAX_USERNAME_LENGTH
from wspractice.errors import HandshakeError
from wspractice.handshake import (
    Request,
    accept,
    check_origin,
    check_upgrade,
    check_username,
    is_websocket_request,
    parse_username,
)

from .strategies import fuzz, latin1

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


def test_an_unsplittable_request_target_is_refused_with_400() -> None:
    # Bug 1 (found by fuzzing): urlsplit's ValueError for an absolute-form
    # target with a broken IPv6 host escaped check_upgrade, and the client
    # got no response at all.
    error = rejected("http://[::1/?username=x")
    assert error.status == HTTPStatus.BAD_REQUEST
    assert error.reason.startswith("the request target is not a valid URL")


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


def test_a_non_ascii_key_is_refused_with_400() -> None:
    # Bug 2 (found by fuzzing): base64.b64decode raised ValueError, not
    # binascii.Error, for a key that is not ASCII (http.server hands over
    # latin-1 text), and the client got no response at all.
    error = rejected(Sec_WebSocket_Key="\xe9" * 24)
    assert error.status == HTTPStatus.BAD_REQUEST
    assert "Sec-WebSocket-Key must be 16 random bytes" in error.reason


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


def test_a_deflate_offer_with_a_bad_parameter_is_declined() -> None:
    # Bug 3 (found by fuzzing): with --compression, a window-bits parameter
    # that is not an integer made wsproto's PerMessageDeflate raise
    # ValueError, and the client got no response at all. RFC 7692 section 5:
    # decline the offer and go on without the extension.
    offer = "permessage-deflate; client_max_window_bits=abc"
    upgrade = Request("/echo", "", KEY, extension_offers=(offer,))
    response, extensions = accept(upgrade, compression=True)
    assert extensions == []
    assert "Sec-WebSocket-Extensions" not in dict(response)


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


# ================================================================
# Properties: each rule for every input (hypothesis).

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RULE_HEADERS = (
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Origin",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)


def is_valid_username(name: str) -> bool:
    """The rule, written independently of wspractice.handshake."""
    return 1 <= len(name) <= MAX_USERNAME_LENGTH and not any(
        unicodedata.category(c) == "Cc" for c in name
    )


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def tokens(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [t.strip().lower() for v in values(headers, name) for t in v.split(",")]


def accept_token(key: str) -> str:
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def assert_handshake_error(exc: HandshakeError) -> None:
    assert isinstance(exc.status, HTTPStatus)
    assert 400 <= exc.status.value < 500, exc
    assert isinstance(exc.reason, str) and exc.reason.strip(), exc
    for name, value in exc.headers:
        assert isinstance(name, str) and isinstance(value, str)


def random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(text, flips))


@st.composite
def cased(draw: st.DrawFn, text: str) -> str:
    """``text`` in a random mix of upper and lower case."""
    return random_case(draw, text)


# ---------------------------------------------------------- strategies

header_text = st.text(latin1, max_size=40)
usernames = st.text(max_size=70) | st.text(
    st.characters(codec="utf-8"), min_size=60, max_size=70
)
valid_usernames = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]),
    min_size=1,
    max_size=MAX_USERNAME_LENGTH,
)
keys = st.binary(min_size=16, max_size=16).map(
    lambda raw: base64.b64encode(raw).decode("ascii")
)
labels = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9]\Z")
domains = st.builds(lambda a, b: f"{a}.{b}", labels, st.sampled_from(["com", "org"]))
ports = st.integers(min_value=1, max_value=65535)


@st.composite
def near_misses(draw: st.DrawFn, good: str) -> str:
    """``good``, or something close to it, or anything."""
    return draw(
        st.sampled_from([good, good.upper(), f" {good} ", f"{good},x", f"x, {good}"])
        | header_text
        | st.builds(lambda c: good[:-1] + c, latin1)
    )


@st.composite
def targets(draw: st.DrawFn) -> str:
    """Request targets as http.server hands them over (latin-1 text)."""
    query = draw(
        st.sampled_from(["", "?username=Alex", "?username=", "?username=a&username=b"])
        | st.builds(
            lambda name: "?" + urllib.parse.urlencode({"username": name}), usernames
        )
        | st.text(latin1, max_size=30).map(lambda q: "?" + q)
    )
    path = draw(
        st.sampled_from(["/", "/echo", "/rooms/1", "//x", "*", ""])
        | st.sampled_from(  # Absolute form, which http.server passes on as is.
            ["http://127.0.0.1/", "ws://h/echo", "http://[::1/", "http://[v1.x]/"]
        )
        | st.text(latin1, max_size=20)
    )
    target = path + query
    if draw(st.booleans()):  # Raw UTF-8 in the request line, read as latin-1.
        target = target.encode("utf-8").decode("latin-1")
    return target


@st.composite
def upgrade_headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    """A valid upgrade request's headers, then random damage."""
    headers = [
        ("Host", "127.0.0.1:8000"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", draw(keys)),
        ("Sec-WebSocket-Version", "13"),
    ]
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 4]))):
        action = draw(st.sampled_from(["drop", "dup", "change", "add", "case"]))
        if action == "drop" and headers:
            headers.pop(draw(st.integers(0, len(headers) - 1)))
        elif action == "dup" and headers:
            headers.append(headers[draw(st.integers(0, len(headers) - 1))])
        elif action == "change" and headers:
            index = draw(st.integers(0, len(headers) - 1))
            name, value = headers[index]
            headers[index] = (name, draw(near_misses(value)))
        elif action == "add":
            name = draw(st.sampled_from(RULE_HEADERS) | st.text(latin1, max_size=10))
            headers.append((name, draw(header_text)))
        elif action == "case" and headers:
            index = draw(st.integers(0, len(headers) - 1))
            name, value = headers[index]
            headers[index] = (random_case(draw, name), value)
    return headers


# ------------------------------------------------------------ usernames


@fuzz
@given(usernames)
def test_a_username_is_accepted_iff_1_to_64_chars_without_control_chars(
    name: str,
) -> None:
    try:
        result = check_username(name)
    except HandshakeError as exc:
        assert not is_valid_username(name), (name, exc)
        assert exc.status == HTTPStatus.BAD_REQUEST
        assert_handshake_error(exc)
    else:
        assert is_valid_username(name)
        assert result == name


@fuzz
@given(
    usernames,
    st.lists(st.tuples(st.sampled_from(["x", "y", "room", ""]), st.text(max_size=5))),
    st.booleans(),
)
def test_parse_username_follows_the_rule_through_percent_encoding(
    name: str, others: list[tuple[str, str]], plus_for_space: bool
) -> None:
    quote = urllib.parse.quote_plus if plus_for_space else urllib.parse.quote
    query = urllib.parse.urlencode([("username", name), *others], quote_via=quote)
    try:
        result = parse_username(query)
    except HandshakeError as exc:
        assert not is_valid_username(name), (query, exc)
        assert_handshake_error(exc)
    else:
        assert is_valid_username(name)
        assert result == name


@fuzz
@given(st.text(max_size=80) | st.text(latin1, max_size=80))
def test_parse_username_of_any_query_returns_a_valid_name_or_refuses_with_400(
    query: str,
) -> None:
    try:
        result = parse_username(query)
    except HandshakeError as exc:
        assert exc.status == HTTPStatus.BAD_REQUEST
        assert_handshake_error(exc)
    else:
        assert is_valid_username(result)
        assert urllib.parse.parse_qs(query, keep_blank_values=True)["username"] == [
            result
        ]


# ------------------------------------------------------------ the upgrade


def check_upgrade_rules(
    version: str,
    target: str,
    headers: list[tuple[str, str]],
    allowed: tuple[str, ...] = (),
) -> None:
    """check_upgrade refuses with its own 4xx error, or every rule held."""
    try:
        upgrade = check_upgrade(version, target, headers, allowed)
    except HandshakeError as exc:
        assert_handshake_error(exc)
        if exc.status == HTTPStatus.UPGRADE_REQUIRED:
            assert ("Sec-WebSocket-Version", "13") in exc.headers
            assert values(headers, "Sec-WebSocket-Version")
        return
    # Every rule held.
    assert version == "HTTP/1.1"
    assert "websocket" in tokens(headers, "Upgrade")
    assert "upgrade" in tokens(headers, "Connection")
    assert [v.strip() for v in values(headers, "Sec-WebSocket-Version")] == ["13"]
    (key,) = values(headers, "Sec-WebSocket-Key")
    assert len(base64.b64decode(key.strip(), validate=True)) == 16
    assert upgrade.key == key.strip()
    (host,) = values(headers, "Host")
    assert host.strip()
    assert len(values(headers, "Origin")) <= 1
    assert is_websocket_request(headers)
    if upgrade.path == "/echo":
        return
    # Any other path is the presence app, whose own rule is the username.
    try:
        username = parse_username(upgrade.query)
    except HandshakeError as exc:
        assert_handshake_error(exc)
        return
    assert is_valid_username(username)


@fuzz
@given(
    st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0"]),
    targets(),
    upgrade_headers(),
    st.sampled_from([(), ("*",), ("https://app.example",)]),
)
def test_check_upgrade_accepts_only_what_the_rules_allow(
    version: str,
    target: str,
    headers: list[tuple[str, str]],
    allowed: tuple[str, ...],
) -> None:
    check_upgrade_rules(version, target, headers, allowed)


@fuzz
@given(targets(), keys)
def test_any_request_target_is_an_upgrade_or_a_4xx(target: str, key: str) -> None:
    headers = [
        ("Host", "127.0.0.1:8000"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    check_upgrade_rules("HTTP/1.1", target, headers)


@fuzz
@given(
    st.data(),
    valid_usernames,
    keys,
    st.sampled_from(["/", "/rooms/7", "/echo"]),
    st.lists(st.sampled_from(["keep-alive", "close", "x"]), max_size=2),
)
def test_every_well_formed_upgrade_is_accepted(
    data: st.DataObject,
    name: str,
    key: str,
    path: str,
    connection_extras: list[str],
) -> None:
    connection = data.draw(st.permutations([*connection_extras, "Upgrade"]))
    headers = [
        (data.draw(cased("Host")), "example.com:8000"),
        (data.draw(cased("Upgrade")), data.draw(cased("websocket"))),
        (data.draw(cased("Connection")), ", ".join(connection)),
        (data.draw(cased("Sec-WebSocket-Key")), f" {key} "),
        (data.draw(cased("Sec-WebSocket-Version")), "13"),
        ("X-Anything", data.draw(header_text)),
    ]
    target = path + "?" + urllib.parse.urlencode({"username": name, "v": "1"})
    upgrade = check_upgrade("HTTP/1.1", target, headers)
    assert upgrade.key == key
    assert (upgrade.path, parse_username(upgrade.query)) == (path, name)


@fuzz
@given(
    st.lists(
        st.tuples(
            st.sampled_from(RULE_HEADERS) | st.text(latin1, max_size=20), header_text
        ),
        max_size=8,
    )
)
def test_is_websocket_request_means_upgrade_websocket_or_a_sec_websocket_header(
    headers: list[tuple[str, str]],
) -> None:
    expected = "websocket" in tokens(headers, "Upgrade") or any(
        name.lower().startswith("sec-websocket-") for name, _ in headers
    )
    assert is_websocket_request(headers) is expected


# ---------------------------------------------------------------- Origin


@fuzz
@given(
    st.text(latin1, max_size=40) | domains.map(lambda d: "https://" + d),
    st.text(latin1, max_size=30) | domains,
    st.lists(st.text(max_size=20), max_size=2).map(tuple),
)
def test_check_origin_allows_or_refuses_with_403_and_nothing_else(
    origin: str, host: str, allowed: tuple[str, ...]
) -> None:
    try:
        check_origin(origin, host, allowed)
    except HandshakeError as exc:
        assert exc.status == HTTPStatus.FORBIDDEN
        assert repr(origin) in exc.reason
        assert "*" not in allowed


@fuzz
@given(
    st.sampled_from(["http", "https", "ws", "wss"]),
    st.sampled_from(["localhost", "app.localhost", "127.0.0.1", "127.9.8.7", "[::1]"]),
    st.none() | ports,
    st.text(latin1, max_size=30),
)
def test_loopback_origins_are_always_allowed(
    scheme: str, host: str, port: int | None, server_host: str
) -> None:
    origin = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    check_origin(origin, server_host, ())


@fuzz
@given(st.sampled_from(["http", "https"]), domains, st.none() | ports, st.booleans())
def test_the_same_origin_is_allowed(
    scheme: str, domain: str, port: int | None, upper: bool
) -> None:
    default = 443 if scheme == "https" else 80
    origin = f"{scheme}://{domain.upper() if upper else domain}"
    if port is not None:
        origin += f":{port}"
    host = domain if port in (None, default) else f"{domain}:{port}"
    check_origin(origin, host, ())


@fuzz
@given(st.sampled_from(["http", "https"]), domains, domains, st.none() | ports)
def test_a_cross_site_origin_is_refused_unless_allowed(
    scheme: str, origin_domain: str, server_domain: str, port: int | None
) -> None:
    origin = f"{scheme}://{origin_domain}" + ("" if port is None else f":{port}")
    if origin_domain != server_domain:
        with pytest.raises(HandshakeError) as info:
            check_origin(origin, server_domain, ())
        assert info.value.status == HTTPStatus.FORBIDDEN
    check_origin(origin, server_domain, (origin.upper() + "/",))
    check_origin(origin, server_domain, ("*",))


# ---------------------------------------------------------------- accept


@fuzz
@given(
    keys,
    st.lists(
        st.sampled_from(
            [
                "permessage-deflate",
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=10",
                "permessage-deflate; client_max_window_bits=8",
                "permessage-deflate; server_no_context_takeover",
                "permessage-deflate; client_max_window_bits=abc",
                "permessage-deflate; server_max_window_bits=",
                "Permessage-Deflate",
                "x-webkit-deflate-frame",
            ]
        )
        | st.builds(lambda p: "permessage-deflate; " + p, st.text(latin1, max_size=30)),
        max_size=3,
    ),
    st.booleans(),
)
def test_accept_answers_the_key_and_never_adds_what_was_not_offered(
    key: str, offers: list[str], compression: bool
) -> None:
    upgrade = Request("/echo", "", key, extension_offers=tuple(offers))
    headers, extensions = accept(upgrade, compression)
    response = dict(headers)
    assert len(response) == len(headers)
    assert response["Sec-WebSocket-Accept"] == accept_token(key)
    assert response["Upgrade"] == "websocket"
    assert response["Connection"] == "Upgrade"
    assert "Sec-WebSocket-Protocol" not in response
    if extensions:
        assert compression
        assert [e.name for e in extensions] == ["permessage-deflate"]
        assert any(o.split(";")[0].strip() == "permessage-deflate" for o in offers)
        assert response["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    else:
        assert "Sec-WebSocket-Extensions" not in response
