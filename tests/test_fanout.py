"""Fan-out: the round clock's rule, coalesced rounds, the gate, slow clients.

The rule and the rounds are tested with a fake clock; the gate and what
clients see, on a real server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest

from wspractice.fanout import NO_GATE, Gate, RoundClock, Rounds

from .clients import collect_until, join, recv_json, recv_until, users_named
from .conftest import TIMEOUT
from .rawws import OP_TEXT, RawClient, frame, read_until_closed

# ---------------------------------------------------------------- the rule


def test_the_first_round_goes_out_at_once() -> None:
    clock = RoundClock(interval_ms=5)
    assert clock.next_round(100.0) == 100.0


def test_rounds_start_at_least_an_interval_apart() -> None:
    clock = RoundClock(interval_ms=5, pacing=False)
    clock.finished(start=100.0, end=100.001, sent=1000, readers_busy=0.5)
    assert clock.next_round(100.002) == pytest.approx(100.005)
    # After a quiet spell, a change goes out at once.
    assert clock.next_round(101.0) == 101.0


def test_the_bandwidth_cap_spaces_rounds_by_their_bytes() -> None:
    clock = RoundClock(interval_ms=1, bandwidth_mb_s=200, pacing=False)
    # A thousand users joining: 70 MB a round.
    clock.finished(start=100.0, end=100.05, sent=70_000_000, readers_busy=0.0)
    assert clock.next_round(100.06) == pytest.approx(100.35)
    uncapped = RoundClock(interval_ms=1, bandwidth_mb_s=0, pacing=False)
    uncapped.finished(start=100.0, end=100.05, sent=70_000_000, readers_busy=0.0)
    assert uncapped.next_round(100.06) == 100.06


@pytest.mark.parametrize(
    ("readers_busy", "pause"),
    [
        (0.0, 0.001 / 9),  # Quiet readers: rounds may take 90% of the time.
        (0.5, 0.001 * 0.6 / 0.4),
        (0.95, 0.001 * 9),  # Busy readers keep 90% of the time.
    ],
)
def test_pacing_leaves_busy_readers_their_share(
    readers_busy: float, pause: float
) -> None:
    clock = RoundClock(interval_ms=0.001)
    clock.finished(start=100.0, end=100.001, sent=0, readers_busy=readers_busy)
    assert clock.pause == pytest.approx(pause)
    assert clock.next_round(100.001) == pytest.approx(100.001 + pause)


def test_without_pacing_there_is_no_pause() -> None:
    clock = RoundClock(interval_ms=0.001, pacing=False)
    clock.finished(start=100.0, end=100.001, sent=0, readers_busy=0.95)
    assert clock.next_round(100.001) == 100.001


# ---------------------------------------------------------------- rounds


class FakeScheduler:
    def __init__(self) -> None:
        self.calls: list[tuple[float, Any]] = []

    def __call__(self, when: float, callback: Any) -> None:
        self.calls.append((when, callback))


def test_interval_zero_broadcasts_every_change_at_once() -> None:
    sent = []
    scheduler = FakeScheduler()
    rounds = Rounds(lambda: sent.append(1) or 10, RoundClock(0), scheduler, NO_GATE)
    for _ in range(3):
        rounds.request()
    assert sent == [1, 1, 1]
    assert scheduler.calls == []


def test_changes_before_a_round_share_it() -> None:
    sent = []
    scheduler = FakeScheduler()
    rounds = Rounds(lambda: sent.append(1) or 10, RoundClock(5), scheduler, NO_GATE)
    for _ in range(100):
        rounds.request()
    assert len(scheduler.calls) == 1 and sent == []
    _, run = scheduler.calls[0]
    run(time.monotonic())
    assert sent == [1]
    rounds.request()  # A change after the round asks for the next one.
    assert len(scheduler.calls) == 2
    # No sooner than the interval after the last round's start.
    assert scheduler.calls[1][0] >= rounds.clock.last_start + 0.005


# ---------------------------------------------------------------- the gate


def test_a_reader_waits_while_the_writer_holds_the_gate() -> None:
    gate = Gate()
    inside = threading.Event()
    with gate.exclusive():
        reader = threading.Thread(target=lambda: gate.__enter__() or inside.set())
        reader.start()
        assert not inside.wait(0.2)
    assert inside.wait(TIMEOUT)
    gate.__exit__(None, None, None)
    reader.join(TIMEOUT)


def test_a_pausing_reader_lets_a_waiting_writer_in_first() -> None:
    gate = Gate()
    order = []
    gate.__enter__()  # A reader busy with its messages.

    def write() -> None:
        with gate.exclusive():
            order.append("writer")

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + TIMEOUT
    while not gate._wanted:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    gate.pause()  # Between two messages: the writer goes first.
    order.append("reader")
    gate.__exit__(None, None, None)
    writer.join(TIMEOUT)
    assert order == ["writer", "reader"]


def test_a_round_never_overlaps_a_reader_handling_a_message(start_server: Any) -> None:
    """The gate's contract, counted on a real server: while a round goes out,
    no reader is inside ``handle_message``, however busy the readers are.

    (With ``WSPRACTICE_ABLATE=gate`` rounds and readers overlap: this test
    fails, which is what the gate is there to prevent.)
    """
    server = start_server(broadcast_interval=1, rate_limit=0)
    app = server.server.presence
    lock = threading.Lock()
    counts = {"handling": 0, "in_round": 0, "overlaps": 0, "rounds": 0, "handled": 0}
    handle_message, broadcast = app.handle_message, app.rounds.broadcast

    def observed_message(connection: Any, message: str | bytes) -> None:
        with lock:
            counts["handling"] += 1
            counts["handled"] += 1
            counts["overlaps"] += counts["in_round"]
        try:
            handle_message(connection, message)
        finally:
            with lock:
                counts["handling"] -= 1

    def observed_round() -> int:
        with lock:
            counts["in_round"] = 1
            counts["rounds"] += 1
            counts["overlaps"] += counts["handling"]
        try:
            return broadcast()
        finally:
            with lock:
                counts["in_round"] = 0

    app.handle_message = observed_message  # type: ignore[method-assign]
    app.rounds.broadcast = observed_round
    clients = [RawClient(server.port) for _ in range(20)]
    batch = b"".join(frame(OP_TEXT, b'{"x": %d}' % i) for i in range(50))
    try:
        for number, client in enumerate(clients):
            client.handshake(f"/?username=u{number}")
        for _ in range(20):  # 20,000 messages in all, arriving together.
            for client in clients:
                client.send(batch)
        deadline = time.monotonic() + 6 * TIMEOUT
        while counts["handled"] < 20_000:
            assert time.monotonic() < deadline, counts
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()
    assert counts["rounds"] > 10, counts  # Rounds and readers really competed.
    assert counts["overlaps"] == 0, counts


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
        final = {"Alex": {"i": 19}, "Bob": {"i": -19}}
        for ws in (alex, bob):
            snapshots = collect_until(ws, lambda s: users_named(s) == final)
            assert users_named(snapshots[-1]) == final, "the last state never came"


def test_the_bandwidth_cap_holds_back_snapshots_on_the_wire(start_server: Any) -> None:
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
    server = start_server(
        broadcast_interval=0, send_timeout=1.0, rate_limit=0, max_state_size=32768
    )
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
        _, how = read_until_closed(stalled.sock)
        assert how in ("eof", "reset"), f"the stalled client was not dropped: {how}"
        stalled.close()


def test_a_stalled_reader_never_holds_more_than_one_pending_snapshot(
    start_server: Any,
) -> None:
    server = start_server(
        broadcast_interval=0, send_timeout=30, rate_limit=0, max_state_size=32768
    )
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
