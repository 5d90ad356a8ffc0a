"""The client's address behind a reverse proxy, and who may say what it is.

Unit tests of :mod:`wspractice.forwarded` (examples and properties), then a
real server behind a "proxy": a raw socket from 127.0.0.1 that sends the
headers nginx would. The address it forwards must reach the logs, the
per-address limit and the metrics, and only when the proxy is trusted.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wspractice import Options
from wspractice.forwarded import (
    TrustedProxies,
    client_address,
    forwarded_for,
    parse_address,
    x_forwarded_for,
)

from .conftest import RunningServer
from .rawws import HTTPResponse, RawClient, upgrade_request
from .strategies import fuzz

LOCAL_PROXY = TrustedProxies.parse(["127.0.0.1"])


def xff(*values: str) -> list[tuple[str, str]]:
    return [("X-Forwarded-For", value) for value in values]


# ------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("203.0.113.7:4711", "203.0.113.7"),
        ("2001:db8::17", "2001:db8::17"),
        ("[2001:db8::17]", "2001:db8::17"),
        ("[2001:db8::17]:4711", "2001:db8::17"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("[::ffff:203.0.113.7]:1", "203.0.113.7"),
        ("unknown", None),
        ("_hidden", None),
        ("example.com", None),
        ("[2001:db8::17", None),
        ("[2001:db8::17]x", None),
        ("", None),
    ],
)
def test_parse_address_takes_an_ip_with_or_without_a_port(
    text: str, expected: str | None
) -> None:
    address = parse_address(text)
    assert (None if address is None else str(address)) == expected


def test_forwarded_for_reads_rfc_7239_elements() -> None:
    assert forwarded_for(
        [
            'for=192.0.2.43, for="[2001:db8:cafe::17]:4711"',
            "for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com",
            'proto=https;For="_gazonk"',
            'by=x;host="a,b;c"',
        ]
    ) == [
        "192.0.2.43",
        "[2001:db8:cafe::17]:4711",
        "198.51.100.17",
        "_gazonk",
        "unknown",
    ]
    assert forwarded_for(['for="a\\"b"']) == ['a"b']
    assert forwarded_for([""]) == []


def test_x_forwarded_for_joins_every_header_in_order() -> None:
    assert x_forwarded_for(["1.1.1.1, 2.2.2.2", "3.3.3.3"]) == [
        "1.1.1.1",
        "2.2.2.2",
        "3.3.3.3",
    ]


def test_trusted_proxies_parse_addresses_networks_and_star() -> None:
    proxies = TrustedProxies.parse(["10.0.0.0/8", "::1", "[fd00::1]", "192.0.2.1"])
    assert proxies.trusts(ipaddress.ip_address("10.1.2.3"))
    assert proxies.trusts(ipaddress.ip_address("::1"))
    assert proxies.trusts(ipaddress.ip_address("fd00::1"))
    assert not proxies.trusts(ipaddress.ip_address("11.0.0.1"))
    assert not proxies.trusts(None)
    assert TrustedProxies.parse(["*"]).trusts(None)
    assert not TrustedProxies.parse([])
    with pytest.raises(ValueError):
        TrustedProxies.parse(["example.com"])


# ------------------------------------------------------------- the walk


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    headers = xff("198.51.100.1")
    assert client_address("192.0.2.9", headers, LOCAL_PROXY) is None
    assert client_address("127.0.0.1", headers, TrustedProxies()) is None


def test_a_trusted_proxy_names_the_client() -> None:
    assert client_address("127.0.0.1", xff("198.51.100.1"), LOCAL_PROXY) == (
        "198.51.100.1"
    )
    # An IPv4 peer as an IPv6 socket reports it.
    assert client_address("::ffff:127.0.0.1", xff("198.51.100.1"), LOCAL_PROXY) == (
        "198.51.100.1"
    )


def test_without_the_header_the_proxy_itself_is_the_client() -> None:
    assert client_address("127.0.0.1", [("Host", "x")], LOCAL_PROXY) is None


def test_a_client_cannot_get_past_the_hop_its_proxy_appended() -> None:
    # The client sent "X-Forwarded-For: 10.0.0.1"; nginx appended its address.
    headers = xff("10.0.0.1, 198.51.100.1")
    assert client_address("127.0.0.1", headers, LOCAL_PROXY) == "198.51.100.1"


def test_the_walk_skips_every_trusted_proxy() -> None:
    trusted = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8"])
    headers = xff("6.6.6.6, 198.51.100.1", "10.0.0.2, 10.0.0.3")
    assert client_address("127.0.0.1", headers, trusted) == "198.51.100.1"
    assert client_address("127.0.0.1", xff("10.0.0.2"), trusted) == "10.0.0.2"


def test_an_unusable_hop_leaves_the_proxy_as_the_client() -> None:
    assert client_address("127.0.0.1", xff("unknown"), LOCAL_PROXY) is None
    assert client_address("127.0.0.1", xff("1.1.1.1, garbage"), LOCAL_PROXY) is None
    assert client_address("127.0.0.1", xff(""), LOCAL_PROXY) is None


def test_only_the_configured_header_is_read() -> None:
    headers = [("Forwarded", "for=198.51.100.1"), ("X-Forwarded-For", "6.6.6.6")]
    assert client_address("127.0.0.1", headers, LOCAL_PROXY) == "6.6.6.6"
    assert (
        client_address("127.0.0.1", headers, LOCAL_PROXY, "forwarded") == "198.51.100.1"
    )
    assert client_address("127.0.0.1", xff("6.6.6.6"), LOCAL_PROXY, "forwarded") is (
        None
    )


def test_forwarded_with_quoted_ipv6_and_port() -> None:
    headers = [("forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https')]
    assert client_address("127.0.0.1", headers, LOCAL_PROXY, "forwarded") == (
        "2001:db8:cafe::17"
    )


def test_trusting_everyone_believes_the_first_hop() -> None:
    headers = xff("198.51.100.1, 10.0.0.1")
    assert client_address("192.0.2.9", headers, TrustedProxies.parse(["*"])) == (
        "198.51.100.1"
    )


addresses = st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(str)
public = st.ip_addresses(v=4, network="198.51.100.0/24").map(str)
proxies = st.ip_addresses(v=4, network="10.0.0.0/8").map(str)


@fuzz
@given(
    st.lists(st.text(max_size=20) | addresses, max_size=5),
    public,
    st.lists(proxies, max_size=3),
)
def test_whatever_a_client_writes_its_proxies_name_it(
    spoofed: list[str], client: str, chain: list[str]
) -> None:
    """Hops a client writes itself come before the ones its proxies append:
    the walk from the end stops at the client's real address."""
    trusted = TrustedProxies.parse(["127.0.0.1", "10.0.0.0/8"])
    value = ", ".join(
        [s.replace(",", "").replace("\r", "").replace("\n", "") for s in spoofed]
        + [client, *chain]
    )
    assert client_address("127.0.0.1", xff(value), trusted) == client


@fuzz
@given(st.text(max_size=60), st.sampled_from(["x-forwarded-for", "forwarded"]))
def test_any_header_gives_an_ip_address_or_none(text: str, header: str) -> None:
    got = client_address("127.0.0.1", [(header, text)], LOCAL_PROXY, header)
    assert got is None or str(ipaddress.ip_address(got)) == got


# ------------------------------------------------------------- options


def test_options_refuse_what_is_not_an_address_or_network() -> None:
    with pytest.raises(ValueError, match=r"forwarded_allow_ips: 'proxy.lan' "):
        Options(forwarded_allow_ips=("proxy.lan",))
    with pytest.raises(ValueError, match="forwarded_header must be one of"):
        Options(forwarded_header="via")
    options = Options(forwarded_allow_ips=["10.0.0.0/8", "*"])  # type: ignore[arg-type]
    assert options.forwarded_allow_ips == ("10.0.0.0/8", "*")


# ------------------------------------------------------- a real server


def upgrade_via_proxy(port: int, client: str) -> tuple[RawClient, HTTPResponse]:
    """A WebSocket to /echo through a "proxy" on 127.0.0.1 for ``client``."""
    raw = RawClient(port)
    raw.send(upgrade_request("/echo", extra=f"X-Forwarded-For: {client}\r\n"))
    return raw, raw.read_response()


def test_the_per_address_limit_counts_forwarded_clients(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(
        max_connections_per_address=1, forwarded_allow_ips=("127.0.0.1",)
    )
    first, response1 = upgrade_via_proxy(server.port, "198.51.100.1")
    second, response2 = upgrade_via_proxy(server.port, "198.51.100.2")
    third, refused = upgrade_via_proxy(server.port, "6.6.6.6, 198.51.100.1")
    try:
        assert response1.status == response2.status == 101
        assert refused.status == 429
        assert refused.body == (
            b"too many WebSockets from 198.51.100.1: 1 are open"
            b" (--max-connections-per-address)\n"
        )
        stats = server.server.websockets.statistics()
        assert (stats.addresses, stats.busiest_address) == (2, 1)
    finally:
        for raw in (first, second, third):
            raw.close()


def test_an_untrusted_proxy_is_one_client(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_connections_per_address=1)  # Nobody trusted.
    first, accepted = upgrade_via_proxy(server.port, "198.51.100.1")
    second, refused = upgrade_via_proxy(server.port, "198.51.100.2")
    try:
        assert accepted.status == 101
        assert refused.status == 429
        assert b"too many WebSockets from 127.0.0.1" in refused.body
    finally:
        first.close()
        second.close()


def test_logs_show_the_client_and_the_proxy(
    start_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(
        forwarded_allow_ips=("127.0.0.1",), forwarded_header="forwarded"
    )
    caplog.set_level(logging.INFO)
    with RawClient(server.port) as raw:
        raw.send(
            b"GET /nothing HTTP/1.1\r\nHost: localhost\r\n"
            b'Forwarded: for="[2001:db8::17]:4711"\r\n\r\n'
        )
        assert raw.read_response().status == 404
    with RawClient(server.port) as raw:  # The handshake's refusal too.
        raw.send(
            upgrade_request(
                "/?username=", host="localhost", extra="Forwarded: for=198.51.100.9\r\n"
            )
        )
        assert raw.read_response().status == 400
    lines = [record.getMessage() for record in caplog.records]
    via = r"via 127\.0\.0\.1:\d+"
    assert any(re.match(rf"\[2001:db8::17\] {via} .*GET /nothing", s) for s in lines)
    assert any(
        re.match(rf"rejected handshake from 198\.51\.100\.9 {via} for ", line)
        for line in lines
    ), lines


def test_each_request_on_a_kept_alive_connection_says_it_anew(
    start_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy may send several clients' requests over one connection."""
    server = start_server(forwarded_allow_ips=("127.0.0.1",))
    caplog.set_level(logging.INFO, logger="wspractice.access")
    with RawClient(server.port) as raw:
        for client in ("198.51.100.1", "198.51.100.2", None):
            header = f"X-Forwarded-For: {client}\r\n" if client else ""
            raw.send(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
            assert raw.read_response().status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "wspractice.access"]
    via = r" via 127\.0\.0\.1:\d+ \"GET /healthz HTTP/1\.1\" 200 -"
    assert re.fullmatch("198\\.51\\.100\\.1" + via, lines[0]), lines
    assert re.fullmatch("198\\.51\\.100\\.2" + via, lines[1]), lines
    # Without the header, the proxy is the client, as http.server names it.
    assert lines[2] == '127.0.0.1 "GET /healthz HTTP/1.1" 200 -', lines
