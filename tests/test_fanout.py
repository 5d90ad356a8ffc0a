"""Broadcast behaviour: coalescing, one snapshot per message, slow clients."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT
from .rawws import RawClient


def assert_disconnected(client: RawClient) -> None:
    """The server has dropped the connection: reading ends in EOF or a reset."""
    try:
        while client.sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    client.close()


def test_coalescing_delivers_the_latest_state(start_server: Any) -> None:
    server = start_server(broadcast_interval=200)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        for i in range(50):
            alex.send(json.dumps({"x": i}))
        snapshots = [recv_json(alex)]
        while users_named(snapshots[-1])["Alex"] != {"x": 49}:
            snapshots.append(recv_json(alex))
        # 50 updates within one interval: a couple of snapshots, not 50.
        assert len(snapshots) < 5
        # Nothing newer is pending, and nothing stale follows the latest.
        try:
            extra = alex.recv(timeout=0.5)
        except TimeoutError:
            extra = None
        assert extra is None


def test_coalesced_broadcast_reaches_every_client(start_server: Any) -> None:
    server = start_server(broadcast_interval=50)
    with join(server.url("/?username=Alex")) as alex, join(
        server.url("/?username=Bob")
    ) as bob:
        for ws in (alex, bob):
            recv_until(ws, lambda s: len(s) == 2)
        for i in range(20):
            alex.send(json.dumps({"i": i}))
            bob.send(json.dumps({"i": -i}))
        for ws in (alex, bob):
            final = recv_until(
                ws,
                lambda s: users_named(s) == {"Alex": {"i": 19}, "Bob": {"i": -19}},
            )
            assert len(final) == 2


def test_a_change_after_a_quiet_interval_goes_out_at_once(start_server: Any) -> None:
    server = start_server(broadcast_interval=1000)
    started = time.monotonic()
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        assert time.monotonic() - started < 0.5  # Nothing was sent before.
        with join(server.url("/?username=Bob")) as bob:
            # Within the interval of the last broadcast: it waits for the
            # interval to end, then carries both users.
            assert len(recv_json(bob)) == 2
            assert time.monotonic() - started > 0.8


def test_the_bandwidth_cap_spaces_rounds_by_their_size(start_server: Any) -> None:
    # A round to Alex and Bob sends two ~130-byte frames; at 500 bytes a
    # second the next round may follow only about half a second later.
    server = start_server(broadcast_interval=1, broadcast_bandwidth=0.0005)
    with join(server.url("/?username=Alex")) as alex, join(
        server.url("/?username=Bob")
    ) as bob:
        recv_until(bob, lambda s: len(s) == 2)
        for i in range(20):
            alex.send(json.dumps({"x": i}))
            time.sleep(0.025)
        snapshots = [recv_json(bob)]
        while users_named(snapshots[-1])["Alex"] != {"x": 19}:
            snapshots.append(recv_json(bob))
        # 20 moves in half a second: an uncapped 1 ms interval would send a
        # snapshot for nearly each; the cap lets through only a few, and the
        # last one still carries the latest state.
        assert len(snapshots) <= 4


def test_interval_zero_sends_one_snapshot_per_message(start_server: Any) -> None:
    server = start_server(broadcast_interval=0)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        for i in range(30):
            alex.send(json.dumps({"x": i}))
        for i in range(30):
            assert users_named(recv_json(alex)) == {"Alex": {"x": i}}
        try:
            extra = alex.recv(timeout=0.5)
        except TimeoutError:
            extra = None
        assert extra is None


def test_a_stalled_reader_is_dropped_while_the_others_keep_receiving(
    start_server: Any,
) -> None:
    server = start_server(broadcast_interval=0, send_timeout=1.0, rate_limit=0)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        stalled = RawClient(server.port)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.handshake("/?username=Stalled")  # ...and never reads again.
        recv_until(alex, lambda s: len(s) == 2)
        pad = "x" * 2000
        started = time.monotonic()
        received = 0
        # Alex keeps moving (big states fill Stalled's buffers quickly) and
        # keeps receiving; Stalled is dropped once it has taken nothing for
        # send_timeout seconds, and leaves.
        while True:
            alex.send(json.dumps({"pad": pad, "n": received}))
            snapshot = recv_json(alex)
            received += 1
            if "Stalled" not in users_named(snapshot):
                break
            assert time.monotonic() - started < 3 * TIMEOUT
        elapsed = time.monotonic() - started
        assert elapsed > 1.0
        assert received > 20
        alex.send("{}")
        recv_until(alex, lambda s: users_named(s) == {"Alex": {}})
        assert_disconnected(stalled)


def test_a_stalled_reader_never_holds_more_than_one_pending_snapshot(
    start_server: Any,
) -> None:
    server = start_server(broadcast_interval=0, send_timeout=30, rate_limit=0)
    with join(server.url("/?username=Alex")) as alex:
        recv_json(alex)
        stalled = RawClient(server.port)
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.handshake("/?username=Stalled")
        recv_until(alex, lambda s: len(s) == 2)
        session = next(
            c
            for c in server.server.websockets.clients
            if getattr(c.context, "username", None) == "Stalled"
        )
        pad = "x" * 4000
        for i in range(300):
            alex.send(json.dumps({"pad": pad, "i": i}))
            recv_json(alex)
        with session.lock:
            pending = session.protocol.pending_bytes
        # The frame being written plus at most one waiting snapshot.
        snapshot_size = 2 * (len(pad) + 200)
        assert pending <= 2 * snapshot_size
        stalled.close()
