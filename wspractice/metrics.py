"""``GET /metrics``: the server's numbers in Prometheus' text format.

The numbers are not kept in prometheus_client's ``Counter`` objects: each of
those takes a lock on every ``inc()``, and the hottest numbers (messages
received, bytes sent) change on every message of every connection. They are
kept where the work happens instead, as plain integers that one thread (or
one lock already held there) writes: each connection counts its own traffic
(:class:`~wspractice.connection.Connection` the bytes it reads, its
:class:`~wspractice.protocol.Protocol` the rest), the WebSocket server counts upgrades
and closes under the lock those moments take anyway
(:meth:`~wspractice.upgrade.WebSocketServer.statistics`), and the presence app
counts its rounds. :class:`ServerCollector` adds them up when Prometheus
scrapes, as a prometheus_client *custom collector*; the library then writes
the text format (or OpenMetrics, when the scraper asks for it) and adds the
process's CPU, memory and file descriptors (``process_*``) and the
interpreter's (``python_*``).

A program that embeds wspractice and has a registry of its own can register
the collector there: ``REGISTRY.register(server.metrics.collector)``.

No metric has a client address or a user name as a label: their number is
unbounded, and every label value is a time series that Prometheus keeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from . import __version__
from .upgrade import Statistics

#: What each traffic total is called, and its help text.
TRAFFIC_METRICS = {
    "messages_received": (
        "wspractice_messages_received",
        "Whole WebSocket messages received from clients.",
    ),
    "bytes_received": (
        "wspractice_bytes_received",
        "Bytes read from WebSocket connections (TLS records included).",
    ),
    "bytes_sent": (
        "wspractice_bytes_sent",
        "Bytes written to WebSocket connections (TLS records included).",
    ),
    "broadcasts_sent": (
        "wspractice_snapshots_sent",
        "Broadcasts written to connections: presence snapshots, or changes for"
        " wspractice-delta clients.",
    ),
    "broadcasts_merged": (
        "wspractice_snapshots_coalesced",
        "Broadcasts replaced by a newer one before a slow connection could"
        " take them.",
    ),
}


class Source(Protocol):
    """What the collector reads (:class:`wspractice.server.Server`)."""

    @property
    def started(self) -> float:
        """When the server started, in seconds since the epoch."""

    @property
    def shutting_down(self) -> bool: ...

    def websocket_statistics(self) -> Statistics: ...

    def presence_statistics(self) -> tuple[int, int]:
        """Users in the room, and broadcast rounds so far."""

    def tcp_connections(self) -> int:
        """TCP connections being served, WebSocket or not."""

    def components_up(self) -> dict[str, bool]:
        """Whether each health component that can tell is healthy."""


class ServerCollector:
    """A prometheus_client collector of one server's numbers."""

    def __init__(self, source: Source) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        """The metric families, without samples (for a registry's checks)."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        source = self._source
        return self._families(
            (
                source.websocket_statistics(),
                source.presence_statistics(),
                source.tcp_connections(),
                source.components_up(),
            )
        )

    def _families(
        self,
        numbers: tuple[Statistics, tuple[int, int], int, dict[str, bool]] | None,
    ) -> Iterator[Metric]:
        source = self._source
        info = GaugeMetricFamily(
            "wspractice_info", "The wspractice version (always 1).", labels=["version"]
        )
        start = GaugeMetricFamily(
            "wspractice_start_time_seconds",
            "When the server started, in seconds since the epoch.",
        )
        stopping = GaugeMetricFamily(
            "wspractice_shutting_down",
            "1 once the server is shutting down (/healthz answers 503), else 0.",
        )
        tcp = GaugeMetricFamily(
            "wspractice_tcp_connections",
            "TCP connections being served: WebSockets, HTTP requests and"
            " handshakes.",
        )
        connections = GaugeMetricFamily(
            "wspractice_connections", "Open WebSockets.", labels=["endpoint"]
        )
        opened = CounterMetricFamily(
            "wspractice_websockets_opened",
            "WebSocket upgrades accepted (101).",
            labels=["endpoint"],
        )
        refused = CounterMetricFamily(
            "wspractice_handshakes_refused",
            "WebSocket upgrades refused, by HTTP status.",
            labels=["status"],
        )
        closes = CounterMetricFamily(
            "wspractice_closes",
            "WebSockets ended, by the code of the closing handshake's first close"
            " frame (1006: none, the connection was dropped or lost).",
            labels=["endpoint", "code"],
        )
        traffic = {
            key: CounterMetricFamily(name, text, labels=["endpoint"])
            for key, (name, text) in TRAFFIC_METRICS.items()
        }
        rounds = CounterMetricFamily(
            "wspractice_broadcast_rounds",
            "Presence broadcast rounds that sent something (each builds one"
            " snapshot).",
        )
        users = GaugeMetricFamily(
            "wspractice_users",
            "Users in the presence room (every process's, with --redis).",
        )
        addresses = GaugeMetricFamily(
            "wspractice_client_addresses",
            "Client addresses with a WebSocket open (the forwarded address"
            " behind a trusted proxy).",
        )
        busiest = GaugeMetricFamily(
            "wspractice_busiest_address_connections",
            "The most WebSockets open from one client address"
            " (--max-connections-per-address refuses beyond its limit).",
        )
        components = GaugeMetricFamily(
            "wspractice_component_up",
            "1 while a part of the server that /healthz reports (the Redis link"
            " with --redis) is healthy, else 0.",
            labels=["component"],
        )
        families: list[Metric] = [info, start, stopping, tcp, connections, opened]
        families += [refused, closes, *traffic.values(), rounds, users]
        families += [addresses, busiest, components]
        if numbers is not None:
            stats, (user_count, round_count), tcp_count, up = numbers
            info.add_metric([__version__], 1)
            start.add_metric([], source.started)
            stopping.add_metric([], int(source.shutting_down))
            tcp.add_metric([], tcp_count)
            for name, count in stats.open.items():
                connections.add_metric([name], count)
            for name, count in stats.opened.items():
                opened.add_metric([name], count)
            for status, count in sorted(stats.refused.items()):
                refused.add_metric([str(status)], count)
            for (name, code), count in sorted(stats.closes.items()):
                closes.add_metric([name, str(code)], count)
            for name, totals in stats.traffic.items():
                for key, family in traffic.items():
                    family.add_metric([name], totals[key])
            rounds.add_metric([], round_count)
            users.add_metric([], user_count)
            addresses.add_metric([], stats.addresses)
            busiest.add_metric([], stats.busiest_address)
            for name, healthy in sorted(up.items()):
                components.add_metric([name], int(healthy))
        return iter(families)


class Metrics:
    """The registry that ``/metrics`` shows: the server's collector, and the
    process's and the interpreter's from prometheus_client."""

    def __init__(self, source: Source) -> None:
        self.collector = ServerCollector(source)
        self.registry = CollectorRegistry()
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The body and its Content-Type, in the format ``accept`` prefers
        (Prometheus' text format unless it asks for OpenMetrics)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
