"""``GET /metrics`` on a real server, and what it counts.

Each count is checked against what independent clients did and saw: the
messages a raw client sent, the exact bytes it received, the close codes it
exchanged. Counts are final once a connection's thread is done, which the
open-WebSocket gauge tells; the tests wait for that, never for a time.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from wspractice import __version__
from wspractice.config import Options
from wspractice.protocol import Protocol, Snapshot

from .clients import join, recv_until
from .conftest import TIMEOUT, RunningServer
from .rawws import OP_CLOSE, OP_TEXT, RawClient, close_frame, frame, upgrade_request

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def http_get(
    port: int, target: str, headers: str = ""
) -> tuple[int, dict[str, str], bytes]:
    with RawClient(port) as client:
        client.send(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()
        )
        response = client.read_response()
    return response.status, response.headers, response.body


def scrape(port: int) -> Samples:
    status, headers, body = http_get(port, "/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for_closed(port: int, endpoint: str) -> Samples:
    """Scrape until no WebSocket of ``endpoint`` is open: its counts are final."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        samples = scrape(port)
        if value(samples, "wspractice_connections", endpoint=endpoint) == 0:
            return samples
        assert time.monotonic() < deadline, "a connection's thread did not end"
        time.sleep(0.02)


def has_state(state: dict[str, int]) -> Callable[[dict[str, Any]], bool]:
    return lambda snapshot: any(u["state"] == state for u in snapshot.values())


def read_exactly(client: RawClient, count: int) -> list[tuple[int, bool, bytes]]:
    return [client.read_frame() for _ in range(count)]


# ------------------------------------------------------------- /metrics


def test_a_fresh_server_shows_every_metric_at_zero(server: RunningServer) -> None:
    samples = scrape(server.port)
    for endpoint in ("presence", "/echo"):
        assert value(samples, "wspractice_connections", endpoint=endpoint) == 0
        assert (
            value(samples, "wspractice_messages_received_total", endpoint=endpoint) == 0
        )
        assert ("wspractice_bytes_sent_total", (("endpoint", endpoint),)) in samples
    assert value(samples, "wspractice_users") == 0
    assert value(samples, "wspractice_shutting_down") == 0
    assert value(samples, "wspractice_info", version=__version__) == 1
    assert abs(value(samples, "wspractice_start_time_seconds") - time.time()) < 3600
    # The process's own, from prometheus_client.
    assert ("process_cpu_seconds_total", ()) in samples
    assert ("process_open_fds", ()) in samples


def test_echo_traffic_is_counted_to_the_byte(server: RunningServer) -> None:
    port = server.port
    with RawClient(port) as client:
        client.handshake("/echo")
        sent = 0
        for i in range(25):
            data = frame(OP_TEXT, f"message {i}".encode())
            client.send(data)
            sent += len(data)
        echoes = read_exactly(client, 25)
        assert [payload for _, _, payload in echoes][-1] == b"message 24"
        samples = scrape(port)
        assert value(samples, "wspractice_connections", endpoint="/echo") == 1
        bye = close_frame(4000, "bye")
        client.send(bye)
        sent += len(bye)
        assert client.read_close() == (4000, "bye")
        assert client.at_eof()
    # Unmasked server frames under 126 bytes: a 2-byte head and the payload.
    received = sum(2 + len(payload) for _, _, payload in echoes) + 2 + 2 + 3
    samples = wait_for_closed(port, "/echo")
    assert value(samples, "wspractice_messages_received_total", endpoint="/echo") == 25
    assert value(samples, "wspractice_bytes_received_total", endpoint="/echo") == sent
    assert value(samples, "wspractice_bytes_sent_total", endpoint="/echo") == received
    assert value(samples, "wspractice_websockets_opened_total", endpoint="/echo") == 1
    assert value(samples, "wspractice_closes_total", endpoint="/echo", code="4000") == 1
    assert (
        value(samples, "wspractice_messages_received_total", endpoint="presence") == 0
    )


def test_presence_users_snapshots_and_rounds(server: RunningServer) -> None:
    port = server.port
    with join(server.url("/?username=Alex")) as alex, join(
        server.url("/?username=Bob")
    ) as bob:
        recv_until(alex, lambda s: len(s) == 2)
        recv_until(bob, lambda s: len(s) == 2)
        for i in range(10):
            alex.send(json.dumps({"x": i}))
            recv_until(alex, has_state({"x": i}))
        recv_until(bob, has_state({"x": 9}))
        samples = scrape(port)
        assert value(samples, "wspractice_users") == 2
        assert value(samples, "wspractice_connections", endpoint="presence") == 2
        assert value(samples, "wspractice_client_addresses") == 1
        assert value(samples, "wspractice_busiest_address_connections") == 2
        assert (
            value(samples, "wspractice_messages_received_total", endpoint="presence")
            == 10
        )
        rounds = value(samples, "wspractice_broadcast_rounds_total")
        snapshots = value(
            samples, "wspractice_snapshots_sent_total", endpoint="presence"
        )
        # Each of the 10 updates reached both; joins took a round or two more.
        assert 11 <= rounds <= 12
        assert 2 * 11 <= snapshots <= 2 * rounds
    samples = wait_for_closed(port, "presence")
    assert value(samples, "wspractice_users") == 0
    assert (
        value(samples, "wspractice_closes_total", endpoint="presence", code="1000") == 2
    )


def test_closes_are_counted_by_code(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_message_size=100)
    port = server.port
    with RawClient(port) as client:  # Too big: the server closes with 1009.
        client.handshake("/echo")
        client.send(frame(OP_TEXT, b"x" * 101))
        assert client.read_close()[0] == 1009
        client.send(close_frame(1009))
    with RawClient(port) as client:  # Binary to the presence app: 1003.
        client.handshake("/?username=Bin")
        client.send(frame(0x2, b"\x00"))
        assert client.read_close()[0] == 1003
        client.send(close_frame(1003))
    with RawClient(port) as client:  # Gone without a close frame: 1006.
        client.handshake("/echo")
    with RawClient(port) as client:  # A close frame without a code: 1005.
        client.handshake("/echo")
        client.send(frame(OP_CLOSE, b""))
        assert client.read_frame()[0] == OP_CLOSE
    deadline = time.monotonic() + TIMEOUT
    while True:
        samples = scrape(port)
        closes = {
            labels: count
            for (name, labels), count in samples.items()
            if name == "wspractice_closes_total"
        }
        if sum(closes.values()) == 4:
            break
        assert time.monotonic() < deadline, closes
        time.sleep(0.02)
    assert closes == {
        (("code", "1009"), ("endpoint", "/echo")): 1,
        (("code", "1003"), ("endpoint", "presence")): 1,
        (("code", "1006"), ("endpoint", "/echo")): 1,
        (("code", "1005"), ("endpoint", "/echo")): 1,
    }


def test_refused_handshakes_are_counted_by_status(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_connections=1, max_connections_per_address=5)
    port = server.port

    def status_of(request: bytes) -> int:
        with RawClient(port) as client:
            client.send(request)
            return client.read_response().status

    assert status_of(upgrade_request("/?username=")) == 400
    assert status_of(upgrade_request("/", version="8")) == 426
    assert (
        status_of(upgrade_request(extra="Origin: https://elsewhere.example\r\n")) == 403
    )
    with RawClient(port) as holder:
        holder.handshake("/echo")
        assert status_of(upgrade_request("/echo")) == 503
        samples = scrape(port)
    refused = {
        labels: count
        for (name, labels), count in samples.items()
        if name == "wspractice_handshakes_refused_total"
    }
    assert refused == {
        (("status", "400"),): 1,
        (("status", "403"),): 1,
        (("status", "426"),): 1,
        (("status", "503"),): 1,
    }


def test_openmetrics_when_the_scraper_asks_for_it(server: RunningServer) -> None:
    status, headers, body = http_get(
        server.port,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n",
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text;")
    assert body.endswith(b"# EOF\n")
    assert b'wspractice_connections{endpoint="/echo"} 0' in body


def test_head_gives_the_headers_only(server: RunningServer) -> None:
    with RawClient(server.port) as client:
        client.send(b"HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        client.send(b"GET /nothing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while client.buffer.count(b"\r\n\r\n") < 2:
            assert client._fill()
        assert client.buffer.startswith(b"HTTP/1.1 200 OK\r\n")
        second = client.buffer.split(b"\r\n\r\n", 1)[1]
        assert second.startswith(b"HTTP/1.1 404 "), second


def test_the_collector_joins_another_registry(server: RunningServer) -> None:
    registry = CollectorRegistry()
    registry.register(server.server.metrics.collector)
    text = generate_latest(registry).decode()
    assert 'wspractice_connections{endpoint="presence"} 0.0' in text
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(server.server.metrics.collector)


# ----------------------------------------------------------- the counts


def test_the_protocol_counts_broadcasts_sent_and_replaced() -> None:
    protocol = Protocol(Options(), 0.0)
    protocol.send_broadcast(Snapshot(1, "{}"))
    protocol.send_broadcast(Snapshot(2, '{"a":1}'))  # Replaces the first.
    chunk = protocol.data_to_send()
    assert chunk is not None
    protocol.data_sent(len(chunk), 0.0)
    assert (protocol.broadcasts_sent, protocol.broadcasts_merged) == (1, 1)
    assert protocol.bytes_sent == len(chunk) == 2 + len('{"a":1}')
    assert protocol.data_to_send() is None


def test_the_protocol_counts_whole_messages_only() -> None:
    protocol = Protocol(Options(), 0.0)
    protocol.receive_data(frame(OP_TEXT, b"he", fin=False) + frame(0x0, b"y"), 0.0)
    protocol.receive_data(frame(OP_TEXT, b"two"), 0.0)
    assert protocol.next_message() == "hey"
    assert protocol.next_message() == "two"
    assert protocol.next_message() is None
    assert protocol.messages_received == 2


def test_a_client_s_close_code_is_the_one_counted() -> None:
    protocol = Protocol(Options(), 0.0)
    protocol.receive_data(close_frame(4001, "done"), 0.0)
    assert protocol.next_message() is None
    assert protocol.close_code == 4001
    chunk = protocol.data_to_send()
    assert (
        chunk is not None
        and bytes(chunk) == b"\x88\x06" + struct.pack("!H", 4001) + b"done"
    )


def test_a_component_s_health_is_a_metric_too(server: RunningServer) -> None:
    link = {"connected": True}
    server.server.health.add_component(
        "redis", lambda: link, healthy=lambda: link["connected"]
    )
    assert value(scrape(server.port), "wspractice_component_up", component="redis") == 1
    link["connected"] = False
    samples = scrape(server.port)
    assert value(samples, "wspractice_component_up", component="redis") == 0
    status, _, body = http_get(server.port, "/healthz")
    assert (status, json.loads(body)["redis"]) == (200, {"connected": False})
