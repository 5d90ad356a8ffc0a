"""Property tests (hypothesis) for the rules that decide: handshake and messages.

Each test states a rule for every input, not for a few examples: what the
function accepts, what it refuses, and that it refuses only with its own
error (a HandshakeError with a 4xx status, a MessageError with a reason).
The bugs these tests found are fixed; ``test_found_by_fuzzing.py`` keeps one
exact input for each.

``WSPRACTICE_FUZZ_EXAMPLES`` (default 100) sets the examples per test; run
``WSPRACTICE_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_rules.py`` to search
longer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import unicodedata
import urllib.parse
from http import HTTPStatus
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from wspractice.config import MAX_USERNAME_LENGTH
from wspractice.errors import HandshakeError, MessageError
from wspractice.handshake import (
    Request,
    accept,
    check_origin,
    check_upgrade,
    check_username,
    is_websocket_request,
    parse_username,
)
from wspractice.messages import encode, error_reply, parse_state
from wspractice.users import Users

from .strictjson import strict_json

EXAMPLES = int(os.environ.get("WSPRACTICE_FUZZ_EXAMPLES", "100"))

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,  # A shared CI machine: never a timing assertion.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

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

# ----------------------------------------------------------------- helpers


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

#: What http.server can hand over as a header value: latin-1 without CR/LF.
latin1 = st.characters(min_codepoint=0, max_codepoint=255, exclude_characters="\r\n")
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


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"))
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """JSON text of any value, in any legal layout."""
    value = draw(json_values)
    layout = draw(
        st.sampled_from(
            [
                {},
                {"indent": 2},
                {"separators": (",", ":")},
                {"ensure_ascii": False},
                {"separators": (" , ", " : "), "indent": "\t"},
            ]
        )
    )
    text = json.dumps(value, **layout)
    return draw(st.sampled_from(["", " ", "\n", "\t\r\n "])) + text


@st.composite
def damaged_json(draw: st.DrawFn) -> str:
    """JSON text that was cut short, had a character changed, or got a tail."""
    text = draw(json_texts())
    how = draw(st.sampled_from(["cut", "change", "tail", "edge"]))
    if how == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if how == "change" and text:
        i = draw(st.integers(0, len(text) - 1))
        return text[:i] + draw(st.characters(codec="utf-8")) + text[i + 1 :]
    if how == "tail":
        return text + draw(st.text(max_size=5))
    return draw(
        st.sampled_from(
            [
                '{"x": NaN}',
                '{"x": -Infinity}',
                '{"x": 1e400}',
                '{"x": -1e999}',
                '{"x": 1.7976931348623157e308}',
                '{"x": 1' + "0" * 5000 + "}",
                '{"s": "\\ud800"}',
                '{"\\udfff": 1}',
                '{"a": 1, "a": 2}',
                '{"a": ' * 2000 + "1" + "}" * 2000,
                "\ufeff{}",
                "{}\x00",
            ]
        )
    )


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
        try:
            check_origin(origin, server_domain, ())
        except HandshakeError as exc:
            assert exc.status == HTTPStatus.FORBIDDEN
        else:
            raise AssertionError(f"{origin} was allowed on {server_domain}")
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


# --------------------------------------------------------------- messages


def check_parse_state(text: str) -> None:
    """The message rule: a JSON object comes back compact, else MessageError."""
    try:
        state = parse_state(text)
    except MessageError as exc:
        assert isinstance(exc.reason, str) and exc.reason.strip()
        json.loads(error_reply(exc.reason))  # The reply itself is JSON.
        try:
            value = strict_json(text)
        except (ValueError, RecursionError):
            return  # Not JSON, or not usable: refused, rightly.
        assert not isinstance(value, dict), (text, exc.reason)
        return
    assert isinstance(state, str)
    state.encode("utf-8")  # Always sendable in a text frame.
    value = strict_json(state)
    assert isinstance(value, dict)
    assert value == strict_json(text)
    # Compact: the message as it came if it had no whitespace at all,
    # else written out again without any.
    assert state == (text if not any(c in text for c in " \t\n\r") else encode(value))
    assert parse_state(state) == state  # Stable.


@fuzz
@given(json_texts())
def test_json_text_parses_iff_it_is_an_object_and_round_trips(text: str) -> None:
    check_parse_state(text)


@fuzz
@given(damaged_json())
def test_damaged_json_is_refused_with_a_reason_or_round_trips(text: str) -> None:
    check_parse_state(text)


@fuzz
@given(st.text(max_size=200))
def test_any_text_is_a_state_or_a_message_error(text: str) -> None:
    check_parse_state(text)


@fuzz
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_every_json_object_is_accepted_with_its_content_unchanged(
    state: dict[str, Any],
) -> None:
    text = json.dumps(state)
    result = parse_state(text)
    assert strict_json(result) == state
    assert result == json.dumps(state, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------- presence


class PresenceSnapshots(RuleBasedStateMachine):
    """Joins, moves and leaves in any order: the snapshot is the model, in JSON."""

    users = Bundle("users")

    def __init__(self) -> None:
        super().__init__()
        self.presence = Users()
        self.model: dict[str, dict[str, Any]] = {}
        #: What a client applying every round's changes has.
        self.view: dict[str, dict[str, Any]] = {}
        self.counter = 0

    @rule(target=users, username=st.text(max_size=70))
    def join(self, username: str) -> str:
        self.counter += 1
        uuid = f"user-{self.counter}"
        self.presence.join(uuid, username)
        self.model[uuid] = {"username": username, "state": {}}
        assert self.presence.changed
        return uuid

    @rule(
        uuid=users,
        state=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    )
    def move(self, uuid: str, state: dict[str, Any]) -> None:
        if uuid not in self.model:
            return
        self.presence.update(uuid, parse_state(json.dumps(state)))
        self.model[uuid]["state"] = state
        assert self.presence.changed

    @rule(uuid=consumes(users))
    def leave(self, uuid: str) -> None:
        user = self.presence.leave(uuid)
        assert (user is not None) == (uuid in self.model)
        self.model.pop(uuid, None)

    @rule()
    def snapshot_twice(self) -> None:
        first = self.presence.snapshot()
        assert self.presence.snapshot() == first

    @rule()
    def round(self) -> None:
        """A client that applies each round's changes sees the model."""
        changes = strict_json(self.presence.take_changes().encode())
        for uuid, user in changes.get("joined", {}).items():
            self.view[uuid] = user
        for uuid, state in changes.get("updated", {}).items():
            self.view[uuid]["state"] = state
        for uuid in changes.get("left", []):
            del self.view[uuid]
        assert self.view == self.model
        assert list(self.view) == list(self.model)  # Join order.
        assert not self.presence.changed

    @invariant()
    def snapshot_is_valid_json_equal_to_the_model(self) -> None:
        text = self.presence.snapshot()
        text.encode("utf-8")
        value = strict_json(text)
        assert value == self.model
        assert list(value) == list(self.model)  # Join order.
        assert text == encode(self.model)  # Compact, like JSON.stringify.
        assert len(self.presence) == len(self.model)


PresenceSnapshots.TestCase.settings = settings(
    max_examples=max(10, EXAMPLES // 2),
    deadline=None,
    stateful_step_count=30,
    suppress_health_check=[HealthCheck.too_slow],
)
test_presence_snapshots_are_always_the_model_as_json = PresenceSnapshots.TestCase
