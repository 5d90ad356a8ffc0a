"""``GET /healthz`` on a real server, and health components.

A load balancer asks it every few seconds: 200 while the server serves, 503
from the start of a shutdown, and the state of each component (the Redis
link with --redis) as a member of the JSON object.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import pytest

from wspractice import __version__
from wspractice.health import Health

from .clients import join, recv_json
from .conftest import TIMEOUT, RunningServer
from .rawws import RawClient, close_frame


def http_get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    with RawClient(port) as client:
        client.send(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        response = client.read_response()
    return response.status, response.headers, response.body


def health(port: int) -> tuple[int, dict[str, str], Any]:
    status, headers, body = http_get(port, "/healthz")
    return status, headers, json.loads(body)


def test_healthz_says_ok_with_the_open_websockets(server: RunningServer) -> None:
    status, headers, report = health(server.port)
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert report["status"] == "ok" and report["websockets"] == 0
    assert report["version"] == __version__
    assert set(report) == {"status", "websockets", "uptime_seconds", "version"}
    with join(server.url("/?username=Alex")) as alex, join(server.url("/echo")):
        recv_json(alex)
        later = health(server.port)[2]
    assert later["websockets"] == 2
    assert later["uptime_seconds"] >= report["uptime_seconds"] >= 0


def test_healthz_says_503_while_the_server_shuts_down(
    start_server: Callable[..., RunningServer],
) -> None:
    running = start_server(close_timeout=4 * TIMEOUT)
    server = running.server
    port = running.port
    silent = RawClient(port)  # Holds the shutdown up: it does not answer yet.
    silent.handshake("/echo")
    prober = RawClient(port)  # A load balancer's kept-alive connection.
    probe = b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n"
    prober.send(probe)
    assert prober.read_response().status == 200
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while not server.shutting_down:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        prober.send(probe)
        response = prober.read_response()
        assert response.status == HTTPStatus.SERVICE_UNAVAILABLE
        assert response.headers["connection"] == "close"
        assert json.loads(response.body)["status"] == "shutting down"
        assert prober.at_eof()  # Connection: close, as it said.
        assert silent.read_close() == (1001, "server shutting down")
        silent.send(close_frame(1001))
    finally:
        stopper.join(8 * TIMEOUT)
        silent.close()
        prober.close()
    assert not stopper.is_alive()


def test_health_components_add_members_and_may_degrade() -> None:
    stopping = False
    health = Health(lambda: 3, lambda: stopping, started=time.monotonic() - 5)
    link = {"connected": True, "url": "redis://127.0.0.1:6379/0"}
    health.add_component("redis", lambda: link, healthy=lambda: link["connected"])
    status, body = health.check()
    assert status == 200 and body["status"] == "ok"
    assert body["websockets"] == 3 and body["redis"] == link
    assert 5 <= body["uptime_seconds"] < 5 + 60 * TIMEOUT
    link["connected"] = False
    status, body = health.check()
    assert (status, body["status"]) == (200, "degraded")
    stopping = True
    assert health.check()[0] == 503
    assert health.check()[1]["status"] == "shutting down"


def test_a_failing_component_is_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    health = Health(lambda: 0, lambda: False)

    def broken() -> dict[str, object]:
        raise RuntimeError("no link")

    health.add_component("link", broken)
    status, body = health.check()
    assert (status, body["status"]) == (200, "degraded")
    assert body["link"] == {"error": "RuntimeError: no link"}
    assert "health component link failed" in caplog.text
    with pytest.raises(ValueError, match="'status' is a member"):
        health.add_component("status", broken)
