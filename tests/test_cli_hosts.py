"""The command line's host and proxy options, and a real process behind them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest

from wspractice import Options
from wspractice.cli import build_parser, options_from_args

from .conftest import TIMEOUT
from .rawws import RawClient, upgrade_request


def options(*argv: str) -> Options:
    return options_from_args(build_parser().parse_args(list(argv)))


def test_defaults_trust_no_proxy_and_add_no_host() -> None:
    got = options()
    assert got.allowed_hosts == ()
    assert got.forwarded_allow_ips == ()
    assert got.forwarded_header == "x-forwarded-for"


def test_the_options_reach_options() -> None:
    got = options(
        "--allowed-host",
        "chat.example.com",
        "--allowed-host",
        ".example.org",
        "--forwarded-allow-ips",
        "127.0.0.1, 10.0.0.0/8",
        "--forwarded-allow-ips",
        "::1",
        "--forwarded-header",
        "forwarded",
    )
    assert got.allowed_hosts == ("chat.example.com", ".example.org")
    assert got.forwarded_allow_ips == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert got.forwarded_header == "forwarded"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--allowed-host", "example.com:443"],
            "argument --allowed-host: 'example.com:443' is not a host name: give"
            " the name alone, without a scheme, port or path",
        ),
        (
            ["--forwarded-allow-ips", "proxy.lan"],
            "argument --forwarded-allow-ips: 'proxy.lan' does not appear to be an"
            " IPv4 or IPv6 network",
        ),
        (["--forwarded-header", "via"], "argument --forwarded-header: invalid choice"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_process_behind_a_proxy() -> None:
    """The server started the way docs/deployment.md says, with nginx's
    headers sent by a raw socket on 127.0.0.1."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wspractice",
            "--port",
            "0",
            "--allowed-host",
            "chat.example.com",
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--max-connections-per-address",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"running on port (\d+)", line)
        assert match, line
        port = int(match.group(1))
        proxied = (
            "X-Forwarded-For: 198.51.100.{n}\r\n" "Origin: https://chat.example.com\r\n"
        )
        clients = []
        for n in (1, 2):
            client = RawClient(port)
            client.send(
                upgrade_request(
                    "/?username=U" + str(n),
                    host="chat.example.com",
                    extra=proxied.format(n=n),
                )
            )
            assert client.read_response().status == 101
            clients.append(client)
        with RawClient(port) as client:
            client.send(upgrade_request(host="evil.example"))
            assert client.read_response().status == 403
        with RawClient(port) as client:
            client.send(b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.5:8000\r\n\r\n")
            health = json.loads(client.read_response().body)
        assert health["status"] == "ok" and health["websockets"] == 2
        for client in clients:
            client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10 * TIMEOUT)
    assert proc.returncode == 0, err
    assert re.search(r"198\.51\.100\.1 via 127\.0\.0\.1:\d+ ", err), err
    assert "rejected handshake from 127.0.0.1:" in err
    assert "Host 'evil.example' is not a name of this server" in err
