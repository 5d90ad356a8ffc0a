"""The Host rule (DNS rebinding): examples, properties, and a real server.

A page on a name its author controls can re-resolve that name to 127.0.0.1
and then talk to a server on the visitor's machine as if it were its own
origin, so the Origin check cannot refuse it. The name is still in ``Host``:
the server answers only to IP addresses, ``localhost``, its own names when
it listens beyond loopback, and ``--allowed-host``.

``WSPRACTICE_FUZZ_EXAMPLES`` (default 100) sets the examples per property.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable
from http import HTTPStatus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wspractice import Options
from wspractice.errors import HandshakeError
from wspractice.handshake import (
    HostRule,
    check_host,
    check_host_header,
    check_upgrade,
    host_rule,
    parse_host,
)
from wspractice.server import machine_names

from .conftest import TIMEOUT, RunningServer
from .rawws import KEY, RawClient, upgrade_request
from .strategies import fuzz, latin1

LOOPBACK = host_rule("127.0.0.1")


def refusal(value: str, rule: HostRule = LOOPBACK) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        check_host(value, rule)
    return info.value


# ----------------------------------------------------------- parse_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost", ("localhost", None)),
        ("localhost:8000", ("localhost", 8000)),
        ("LocalHost.:8000", ("localhost", 8000)),
        ("127.0.0.1", ("127.0.0.1", None)),
        ("127.0.0.1:18123", ("127.0.0.1", 18123)),
        ("[::1]", ("::1", None)),
        ("[::1]:8000", ("::1", 8000)),
        ("[0:0::1]:8000", ("::1", 8000)),
        ("[::FFFF:127.0.0.1]", ("::ffff:7f00:1", None)),
        ("example.com:", ("example.com", None)),
        (" example.com ", ("example.com", None)),
        ("my_box.lan:65535", ("my_box.lan", 65535)),
    ],
)
def test_parse_host_gives_the_canonical_name_and_the_port(
    value: str, expected: tuple[str, int | None]
) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "::1",  # IPv6 needs brackets.
        "[::1",
        "[::1]x",
        "[v1.x]",
        "[example.com]",
        "user@example.com",
        "example.com:80:80",
        "example.com:http",
        "example.com:65536",
        "example.com:123456",
        "exa mple.com",
        "example..com",
        ".example.com",
        "example.com/path",
        "http://example.com",
    ],
)
def test_a_malformed_host_is_a_400_that_quotes_it(value: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_host(value)
    assert info.value.status == HTTPStatus.BAD_REQUEST
    assert info.value.reason == (
        f"the Host header {value!r} is not a host name or address with an"
        " optional port"
    )


# ------------------------------------------------------------ the rule


@pytest.mark.parametrize(
    "value",
    [
        "localhost",
        "localhost:18123",
        "LOCALHOST:1",
        "localhost.",
        "app.localhost:3000",
        "127.0.0.1",
        "127.0.0.1:18123",
        "127.1.2.3:80",
        "[::1]",
        "[::1]:18123",
        "192.168.1.20:8000",  # An IP address cannot be rebound.
        "[2001:db8::1]:443",
    ],
)
def test_a_loopback_server_answers_to_addresses_and_localhost(value: str) -> None:
    check_host(value, LOOPBACK)


@pytest.mark.parametrize(
    "value",
    [
        "evil.example:18123",
        "evil.example",
        "localhost.evil.example",
        "evil-localhost",
        "127.0.0.1.nip.io",
        "0x7f000001",
        "2130706433",
        "127.1",  # Browsers send 127.0.0.1 for http://127.1/.
    ],
)
def test_a_loopback_server_refuses_other_names_with_403(value: str) -> None:
    exc = refusal(value)
    assert exc.status == HTTPStatus.FORBIDDEN
    name = parse_host(value)[0]
    assert exc.reason == (
        f"Host {value!r} is not a name of this server; if it is, start the"
        f" server with --allowed-host {name} (other names are refused to"
        " guard against DNS rebinding)"
    )


def test_the_reason_names_no_allowed_name() -> None:
    rule = host_rule("0.0.0.0", ["secret.example"], ["my-laptop"])
    reason = refusal("evil.example", rule).reason
    assert "secret" not in reason and "laptop" not in reason


def test_allowed_hosts_add_names_in_any_case_and_with_a_final_dot() -> None:
    rule = host_rule("127.0.0.1", ["Example.COM", "chat.example.org."])
    check_host("example.com:443", rule)
    check_host("EXAMPLE.com.", rule)
    check_host("chat.example.org", rule)
    assert refusal("www.example.com", rule).status == HTTPStatus.FORBIDDEN
    assert refusal("example.org", rule).status == HTTPStatus.FORBIDDEN


def test_a_leading_dot_allows_a_domain_and_its_subdomains_only() -> None:
    rule = host_rule("127.0.0.1", [".example.com"])
    for value in ("example.com", "www.example.com", "a.b.example.com:8000"):
        check_host(value, rule)
    for value in ("badexample.com", "example.com.evil", "example.co"):
        assert refusal(value, rule).status == HTTPStatus.FORBIDDEN


def test_a_star_allows_every_well_formed_host() -> None:
    rule = host_rule("127.0.0.1", ["*"])
    check_host("evil.example:18123", rule)
    with pytest.raises(HandshakeError) as info:
        check_host("user@evil.example", rule)
    assert info.value.status == HTTPStatus.BAD_REQUEST


def test_a_server_on_every_interface_answers_to_the_machine_s_names() -> None:
    for listen in ("0.0.0.0", "::", ""):
        rule = host_rule(listen, machine_names=["My-Laptop", "my-laptop.local"])
        check_host("my-laptop:8000", rule)
        check_host("MY-LAPTOP.local", rule)
        check_host("192.168.1.20:8000", rule)
        assert refusal("evil.example", rule).status == HTTPStatus.FORBIDDEN


def test_a_server_on_a_specific_address_answers_to_the_machine_s_names() -> None:
    rule = host_rule("192.168.1.20", machine_names=["my-laptop"])
    check_host("192.168.1.20:8000", rule)
    check_host("my-laptop", rule)


def test_a_loopback_server_does_not_answer_to_the_machine_s_names() -> None:
    for listen in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        rule = host_rule(listen, machine_names=["my-laptop"])
        assert refusal("my-laptop", rule).status == HTTPStatus.FORBIDDEN


def test_a_server_listening_on_a_name_answers_to_that_name() -> None:
    rule = host_rule("chat.example.com", machine_names=["box"])
    check_host("chat.example.com:8000", rule)
    check_host("box", rule)  # The name resolves beyond loopback.


def test_machine_names_are_this_machine_s() -> None:
    names = machine_names()
    hostname = socket.gethostname().lower()
    assert names[0] == hostname
    assert names[1:] == ([] if "." in hostname else [f"{hostname}.local"])


def test_plain_requests_may_omit_host_but_not_repeat_it() -> None:
    check_host_header([("Accept", "*/*")], LOOPBACK)
    check_host_header([("HOST", "localhost:1")], LOOPBACK)
    with pytest.raises(HandshakeError) as info:
        check_host_header([("Host", "localhost"), ("Host", "localhost")], LOOPBACK)
    assert (info.value.status, info.value.reason) == (
        HTTPStatus.BAD_REQUEST,
        "more than one Host header",
    )
    with pytest.raises(HandshakeError) as info:
        check_host_header([("Host", "evil.example")], LOOPBACK)
    assert info.value.status == HTTPStatus.FORBIDDEN


def upgrade_headers(host: str, origin: str | None = None) -> list[tuple[str, str]]:
    headers = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ]
    return headers + ([("Origin", origin)] if origin else [])


def test_check_upgrade_applies_the_rule_before_the_origin_check() -> None:
    # Origin equals Host: the Origin check alone lets this through.
    headers = upgrade_headers("evil.example:18123", "http://evil.example:18123")
    assert check_upgrade("HTTP/1.1", "/?username=A", headers).path == "/"
    with pytest.raises(HandshakeError) as info:
        check_upgrade("HTTP/1.1", "/?username=A", headers, host_rule=LOOPBACK)
    assert info.value.status == HTTPStatus.FORBIDDEN
    assert info.value.reason.startswith("Host 'evil.example:18123' is not a name")


# ----------------------------------------------------------- properties

label = st.from_regex(r"\A[a-z0-9](?:[a-z0-9_-]{0,14}[a-z0-9])?\Z")
dns_names = st.lists(label, min_size=1, max_size=4).map(".".join)
other_names = dns_names.filter(
    lambda n: n != "localhost"
    and not n.endswith(".localhost")
    and not _is_ip(n)
    and n not in ("my-laptop", "my-laptop.local")
)
ports = st.none() | st.integers(min_value=0, max_value=65535)
listen_hosts = st.sampled_from(
    ["127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "", "192.168.1.20"]
)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def with_port(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


def mixed_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c for c, f in zip(text, flips))


@fuzz
@given(st.ip_addresses(), ports, listen_hosts)
def test_every_ip_address_is_accepted_on_every_port(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int | None,
    listen: str,
) -> None:
    host = f"[{address}]" if address.version == 6 else str(address)
    value = with_port(host, port)
    check_host(value, host_rule(listen, machine_names=["my-laptop"]))
    assert parse_host(value) == (str(address), port)


@fuzz
@given(other_names, ports, listen_hosts, st.data())
def test_another_name_is_refused_until_allowed(
    name: str, port: int | None, listen: str, data: st.DataObject
) -> None:
    value = with_port(mixed_case(data.draw, name), port)
    rule = host_rule(listen, machine_names=["my-laptop", "my-laptop.local"])
    assert refusal(value, rule).status == HTTPStatus.FORBIDDEN
    allowed = mixed_case(data.draw, name) + data.draw(st.sampled_from(["", "."]))
    check_host(value, host_rule(listen, [allowed]))
    check_host(value, host_rule(listen, ["." + name]))
    check_host(value, host_rule(listen, ["*"]))


@fuzz
@given(dns_names, dns_names, ports)
def test_a_domain_allows_exactly_its_subdomains(
    domain: str, other: str, port: int | None
) -> None:
    rule = host_rule("127.0.0.1", ["." + domain])
    check_host(with_port(f"{other}.{domain}", port), rule)
    candidate = f"{other}{domain}"  # No dot between: another domain.
    if not (
        candidate.endswith(".localhost")
        or candidate == "localhost"
        or _is_ip(candidate)
    ):
        assert refusal(with_port(candidate, port), rule).status == 403


@fuzz
@given(st.text(latin1, max_size=40))
def test_any_header_value_is_accepted_or_refused_with_400_or_403(text: str) -> None:
    try:
        name, port = parse_host(text)
    except HandshakeError as exc:
        assert exc.status == HTTPStatus.BAD_REQUEST
        return
    assert name == name.lower() and not name.endswith(".")
    assert port is None or 0 <= port <= 65535
    try:
        check_host(text, LOOPBACK)
    except HandshakeError as exc:
        assert exc.status == HTTPStatus.FORBIDDEN
        assert not (_is_ip(name) or name == "localhost" or name.endswith(".localhost"))


# ------------------------------------------------------- a real server


def exchange(port: int, request: bytes) -> tuple[int, bytes]:
    with RawClient(port) as client:
        client.send(request)
        response = client.read_response()
    return response.status, response.body


def host_forms(port: int) -> list[str]:
    return [
        "127.0.0.1",
        f"127.0.0.1:{port}",
        "localhost",
        f"localhost:{port}",
        f"LOCALHOST.:{port}",
        f"app.localhost:{port}",
        "[::1]",
        f"[::1]:{port}",
        "127.0.0.1:1",  # Any port.
    ]


def test_upgrades_with_every_loopback_host_form_are_accepted(
    server: RunningServer,
) -> None:
    for host in host_forms(server.port):
        for path in ("/?username=Alex", "/echo"):
            status, body = exchange(server.port, upgrade_request(path, host=host))
            assert status == 101, (host, path, body)


def test_the_rebinding_request_of_the_report_is_refused(server: RunningServer) -> None:
    port = server.port
    request = upgrade_request(
        "/?username=Mallory",
        host=f"evil.example:{port}",
        extra=f"Origin: http://evil.example:{port}\r\n",
    )
    status, body = exchange(port, request)
    assert status == 403
    assert (
        body
        == (
            f"Host 'evil.example:{port}' is not a name of this server; if it is,"
            " start the server with --allowed-host evil.example (other names are"
            " refused to guard against DNS rebinding)\n"
        ).encode()
    )
    metrics = plain(port, "/metrics", "10.9.8.7")[1].decode()
    assert 'wspractice_handshakes_refused_total{status="403"} 1.0' in metrics


@pytest.mark.parametrize(
    ("host", "status"),
    [("evil.example", 403), ("[::1", 400), ("::1", 400), ("a@b", 400)],
)
def test_other_hosts_are_refused_on_every_endpoint(
    server: RunningServer, host: str, status: int
) -> None:
    for path in ("/?username=Alex", "/echo"):
        assert exchange(server.port, upgrade_request(path, host=host))[0] == status


def plain(port: int, target: str, host: str, method: str = "GET") -> tuple[int, bytes]:
    request = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    return exchange(port, request)


def test_the_demo_page_and_its_files_get_the_same_check(server: RunningServer) -> None:
    port = server.port
    for host in host_forms(port):
        assert plain(port, "/", host)[0] == 200, host
        assert plain(port, "/static/style.css", host)[0] == 200, host
    status, body = plain(port, "/", f"evil.example:{port}")
    assert status == 403 and b"--allowed-host evil.example" in body
    assert plain(port, "/static/style.css", "evil.example")[0] == 403
    assert plain(port, "/", "evil.example", "HEAD")[0] == 403
    # Without Host (HTTP/1.0, never a browser) there is no name to check.
    assert exchange(port, b"GET / HTTP/1.0\r\n\r\n")[0] == 200


def test_health_and_metrics_answer_any_host(server: RunningServer) -> None:
    for host in ("evil.example", "10.0.0.5:8000", "wspractice.internal"):
        status, body = plain(server.port, "/healthz", host)
        assert status == 200 and json.loads(body)["status"] == "ok"
        status, body = plain(server.port, "/metrics", host)
        assert status == 200 and b"wspractice_connections" in body


def test_allowed_host_adds_a_public_name(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(allowed_hosts=("chat.example.com", ".example.org"))
    for host in ("chat.example.com", "chat.example.com:443", "www.example.org"):
        assert exchange(server.port, upgrade_request(host=host))[0] == 101
        assert plain(server.port, "/", host)[0] == 200
    assert exchange(server.port, upgrade_request(host="example.com"))[0] == 403


def test_allowed_host_star_restores_any_name(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(allowed_hosts=("*",))
    request = upgrade_request(
        host="evil.example:1", extra="Origin: http://evil.example:1\r\n"
    )
    assert exchange(server.port, request)[0] == 101


def test_a_server_on_every_interface_answers_to_the_machine_s_name(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(host="0.0.0.0")
    hostname = socket.gethostname()
    assert exchange(server.port, upgrade_request(host=hostname))[0] == 101
    assert exchange(server.port, upgrade_request(host="evil.example"))[0] == 403


def test_ipv6_loopback_server_checks_hosts_too(
    start_server: Callable[..., RunningServer],
) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = start_server(host="::1")
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1: {exc}")
    with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(upgrade_request(host=f"[::1]:{server.port}"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    with socket.create_connection(("::1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(upgrade_request(host="evil.example"))
        assert sock.recv(4096).startswith(b"HTTP/1.1 403 ")


def test_options_refuse_an_allowed_host_with_a_port_or_scheme() -> None:
    for bad in ("example.com:443", "https://example.com", "exa mple.com", ""):
        with pytest.raises(ValueError, match="allowed_hosts: .* is not a host name"):
            Options(allowed_hosts=(bad,))
    Options(allowed_hosts=("*", ".example.com", "[::1]", "10.0.0.1", "box_1.lan"))
