"""One room, several processes: real wspractice processes sharing it through a
real Redis (``--redis``).

Every wait has a deadline (a multiple of TIMEOUT); what decides a test is
what the clients were sent, never how long it took.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wspractice.config import check_redis_url, redact_url
from wspractice.shared_users import decode_message, decode_users_hash

from .conftest import TIMEOUT
from .redisproc import (
    RedisServer,
    Watcher,
    Wspractice,
    free_port,
    names,
    need_redis_server,
    states,
    wait_for,
)

#: The fixtures redis_server, start_process and workdir.
pytest_plugins = ["tests.redisfixtures"]

#: Short, so that a vanished process's users leave quickly, yet long enough
#: that a process starved for a second on a busy machine is not taken for dead.
PRESENCE_TIMEOUT = "4"

Start = Callable[..., Wspractice]


@pytest.fixture
def watch() -> Iterator[Callable[[Wspractice, str], Watcher]]:
    """Connect presence clients; all are closed after the test."""
    watchers: list[Watcher] = []

    def connect(process: Wspractice, name: str) -> Watcher:
        watcher = Watcher(process.url(name), name)
        watchers.append(watcher)
        return watcher

    yield connect
    for watcher in watchers:
        watcher.close()


def shared(redis_server: RedisServer, *more: str) -> list[str]:
    return ["--redis", redis_server.url, "--presence-timeout", PRESENCE_TIMEOUT, *more]


def everyone(expected: list[str]) -> Callable[[dict[str, Any]], bool]:
    return lambda snapshot: sorted(names(snapshot)) == sorted(expected)


def test_users_on_two_processes_see_one_room_with_one_uuid_each(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    a = start_process(*shared(redis_server))
    b = start_process(*shared(redis_server))
    alex = watch(a, "Alex")
    alex.wait(everyone(["Alex"]), "herself", TIMEOUT)
    bob = watch(b, "Bob")
    seen_by_bob = bob.wait(everyone(["Alex", "Bob"]), "Alex and Bob", 2 * TIMEOUT)
    seen_by_alex = alex.wait(everyone(["Alex", "Bob"]), "Alex and Bob", 2 * TIMEOUT)
    assert list(seen_by_alex) == list(seen_by_bob)  # Same uuids, same order.
    assert names(seen_by_alex) == ["Alex", "Bob"]
    alex.send({"x": 1, "y": 2})
    bob.wait(lambda s: states(s)["Alex"] == {"x": 1, "y": 2}, "Alex move", TIMEOUT)
    bob.close()
    alex.wait(everyone(["Alex"]), "Bob leave", TIMEOUT)


def test_three_processes_show_one_join_order(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    processes = [start_process(*shared(redis_server)) for _ in range(3)]
    plan = [(0, "Alex"), (1, "Bob"), (2, "Cleo"), (0, "Dan"), (2, "Eve"), (1, "Fay")]
    clients: list[Watcher] = []
    for number, name in plan:
        client = watch(processes[number], name)
        clients.append(client)
        joined = [n for _, n in plan[: len(clients)]]
        for other in clients:  # Everyone sees the newcomer before the next.
            other.wait(everyone(joined), f"{joined}", 2 * TIMEOUT)
    order = [name for _, name in plan]
    for client in clients:
        assert names(client.wait(everyone(order), "everyone", TIMEOUT)) == order
    assert len({tuple(c.wait(everyone(order), "all", TIMEOUT)) for c in clients}) == 1


def test_crossing_updates_all_arrive_and_none_goes_back(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    processes = [start_process(*shared(redis_server)) for _ in range(3)]
    clients = [watch(p, f"user{n}") for n, p in enumerate(processes)]
    clients += [watch(p, f"user{n + 3}") for n, p in enumerate(processes)]
    all_names = [c.name for c in clients]
    for client in clients:
        client.wait(everyone(all_names), "everyone", 3 * TIMEOUT)
    moves = 40

    def move(client: Watcher) -> None:
        for seq in range(1, moves + 1):
            client.send({"seq": seq})
            time.sleep(0.01)

    threads = [threading.Thread(target=move, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = {name: {"seq": moves} for name in all_names}
    for client in clients:
        client.wait(lambda s: states(s) == final, "every last move", 3 * TIMEOUT)
    for client in clients:
        for name, seqs in client.seqs.items():
            assert seqs == sorted(seqs), f"{client.name} saw {name} go back: {seqs}"


def test_a_process_started_later_gets_the_whole_room_in_its_first_snapshot(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    a = start_process(*shared(redis_server))
    b = start_process(*shared(redis_server))
    alex, bob = watch(a, "Alex"), watch(b, "Bob")
    alex.send({"x": 10})
    bob.send({"x": 20})
    want = {"Alex": {"x": 10}, "Bob": {"x": 20}}
    for client in (alex, bob):
        client.wait(lambda s: states(s) == want, "both moves", 2 * TIMEOUT)
    c = start_process(*shared(redis_server))
    cleo = watch(c, "Cleo")
    cleo.wait(lambda s: "Cleo" in names(s), "herself", TIMEOUT)
    assert cleo.first is not None
    assert states(cleo.first) == {**want, "Cleo": {}}
    # Alex and Bob joined at about the same time: whichever order the room
    # gave them, the newcomer's process shows the same.
    seen_by_alex = alex.wait(lambda s: "Cleo" in names(s), "Cleo", 2 * TIMEOUT)
    assert list(cleo.first) == list(seen_by_alex)


def test_error_replies_stay_with_their_sender(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    a = start_process(*shared(redis_server))
    b = start_process(*shared(redis_server))
    alex, bob = watch(a, "Alex"), watch(b, "Bob")
    bob.wait(everyone(["Alex", "Bob"]), "Alex", 2 * TIMEOUT)
    alex.ws.send("hello")
    alex.send({"after": 1})
    bob.wait(lambda s: states(s)["Alex"] == {"after": 1}, "Alex's move", TIMEOUT)
    assert alex.errors and "not valid JSON" in alex.errors[0]
    assert bob.errors == []


def test_sigkill_a_process_and_its_users_leave_everyones_view(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    a = start_process(*shared(redis_server))
    b = start_process(*shared(redis_server))
    alex = watch(a, "Alex")
    watch(b, "Bob")
    alex.wait(everyone(["Alex", "Bob"]), "Bob", 2 * TIMEOUT)
    killed = time.monotonic()
    b.signal(signal.SIGKILL)
    alex.wait(everyone(["Alex"]), "Bob leave after SIGKILL", 2 * TIMEOUT + 2)
    print(f"Bob left Alex's view {time.monotonic() - killed:.2f} s after SIGKILL")
    assert redis_server.client().smembers("wspractice:nodes") == {node_of(a).encode()}


def test_sigterm_removes_the_users_at_once_and_closes_clients_with_1001(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    # A long presence timeout: only the goodbye can remove Bob in time.
    args = ["--redis", redis_server.url, "--presence-timeout", "600"]
    a = start_process(*args)
    b = start_process(*args)
    alex, bob = watch(a, "Alex"), watch(b, "Bob")
    alex.wait(everyone(["Alex", "Bob"]), "Bob", 2 * TIMEOUT)
    b.signal(signal.SIGTERM)
    alex.wait(everyone(["Alex"]), "Bob leave after SIGTERM", 2 * TIMEOUT)
    assert bob.wait_closed(TIMEOUT) == 1001
    assert b.wait() == 0
    assert f"process {node_of(b)} stopped: its users left" in a.log()


def node_of(process: Wspractice) -> str:
    return process.log().split("as process ")[1].split()[0]


def test_redis_killed_and_restarted_empty_while_clients_keep_moving(
    redis_server: RedisServer, start_process: Start, watch: Any
) -> None:
    a = start_process(*shared(redis_server))
    b = start_process(*shared(redis_server))
    clients = [watch(a, "Alex"), watch(a, "Ann"), watch(b, "Bob"), watch(b, "Ben")]
    all_names = [c.name for c in clients]
    for client in clients:
        client.wait(everyone(all_names), "everyone", 2 * TIMEOUT)
    sent = {c.name: 0 for c in clients}
    stop = threading.Event()

    def keep_moving() -> None:
        while not stop.is_set():
            for client in clients:
                sent[client.name] += 1
                client.send({"seq": sent[client.name]})
            time.sleep(0.05)

    mover = threading.Thread(target=keep_moving)
    mover.start()
    try:
        redis_server.kill()
        # Each process keeps serving its own users: Ann sees Alex move.
        mark = sent["Alex"]
        clients[1].wait(
            lambda s: states(s)["Alex"].get("seq", 0) > mark + 5,
            "Alex keep moving while Redis is down",
            2 * TIMEOUT,
        )
        clients[3].wait(
            lambda s: states(s)["Bob"].get("seq", 0) > mark + 5,
            "Bob keep moving while Redis is down",
            2 * TIMEOUT,
        )
        redis_server.start()  # Empty: it kept nothing.
        mark = dict(sent)
        for client in clients:
            client.wait(
                lambda s: sorted(names(s)) == sorted(all_names)
                and all(states(s)[n].get("seq", 0) > mark[n] for n in all_names),
                "everyone moving again after Redis came back",
                4 * TIMEOUT,
            )
    finally:
        stop.set()
        mover.join()
    assert all(client.closed is None for client in clients), "a client was dropped"
    for process in (a, b):
        log = process.log()
        assert log.count("is unavailable") == 1, log
        assert "is back after" in log, log
        assert "Traceback" not in log, log


def test_redis_down_at_start_then_up(
    workdir: Path, start_process: Start, watch: Any
) -> None:
    need_redis_server()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    a = start_process("--redis", url, "--presence-timeout", PRESENCE_TIMEOUT)
    alex = watch(a, "Alex")
    alex.send({"x": 1})
    alex.wait(lambda s: states(s) == {"Alex": {"x": 1}}, "her own move", TIMEOUT)
    assert "is unavailable" in a.log()
    redis = RedisServer.__new__(RedisServer)
    redis.port, redis.workdir, redis.process = port, workdir, None
    redis.start()
    try:
        b = start_process("--redis", url, "--presence-timeout", PRESENCE_TIMEOUT)
        bob = watch(b, "Bob")
        bob.wait(lambda s: states(s).get("Alex") == {"x": 1}, "Alex", 3 * TIMEOUT)
        alex.wait(everyone(["Alex", "Bob"]), "Bob", 2 * TIMEOUT)
    finally:
        redis.stop()


def test_a_password_in_the_url_works_and_is_never_logged(
    workdir: Path, start_process: Start, watch: Any
) -> None:
    need_redis_server()
    redis = RedisServer.__new__(RedisServer)
    redis.port, redis.workdir, redis.process = free_port(), workdir, None
    secret = "hunter2-s3cret"
    log = open(workdir / "redis-auth.log", "wb")
    redis.process = subprocess.Popen(
        ["redis-server", "--port", str(redis.port), "--save", "", "--appendonly"]
        + ["no", "--requirepass", secret],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"redis://:{secret}@127.0.0.1:{redis.port}/0"
        wrong = f"redis://:wrong-{secret}@127.0.0.1:{redis.port}/0"
        a = start_process("--redis", url, "--log-level", "debug")
        b = start_process("--redis", url)
        c = start_process("--redis", wrong)
        alex = watch(a, "Alex")
        watch(b, "Bob")
        alex.wait(everyone(["Alex", "Bob"]), "Bob", 3 * TIMEOUT)
        watch(c, "Cleo").wait(everyone(["Cleo"]), "herself", TIMEOUT)  # Alone.
        wait_for(lambda: "is unavailable" in c.log(), "the warning", TIMEOUT)
        for process in (a, b, c):
            assert secret not in process.log()
        assert f"redis://:***@127.0.0.1:{redis.port}/0" in a.log()
        assert "is unavailable" in c.log()
    finally:
        redis.kill()
        log.close()


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://127.0.0.1:6379/0", "must start with redis:// or rediss://"),
        ("redis://:hunter2@127.0.0.1:notaport/0", "is not usable: Port"),
        ("redis://127.0.0.1:6379/zero", "must be a database number"),
        ("redis://", "has no host"),
    ],
)
def test_a_bad_redis_url_is_refused_at_start_with_a_clear_error(
    url: str, message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wspractice", "--port", "0", "--redis", url],
        capture_output=True,
        text=True,
        timeout=6 * TIMEOUT,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "argument --redis: redis URL" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_hostile_clients_never_put_anything_but_validated_states_in_redis(
    redis_server: RedisServer, start_server: Any
) -> None:
    """The raw-bytes fuzz against a server sharing its room through Redis,
    with a listener that checks everything the server publishes and writes:
    each message decodes (every state re-checked as a JSON object, every
    username and uuid valid), and so does the users hash."""
    from . import test_server as fuzz

    running = start_server(
        redis=redis_server.url,
        presence_timeout=2.0,
        max_message_size=fuzz.MAX_MESSAGE_SIZE,
        max_header_size=fuzz.MAX_HEADER_SIZE,
        max_bad_messages=5,
        handshake_timeout=1.0,
        close_timeout=0.5,
        send_timeout=1.0,
    )
    pubsub = redis_server.client().pubsub()
    pubsub.subscribe("wspractice:changes")
    problems: list[str] = []
    walker = fuzz.Walker(f"ws://127.0.0.1:{running.port}", "walker-1", problems)
    try:
        with fuzz.ThreadPoolExecutor(fuzz.WORKERS) as pool:
            outcomes = list(
                pool.map(
                    lambda n: fuzz.run_case(n, running.port, False, problems),
                    range(min(fuzz.CASES, 100)),
                )
            )
    finally:
        walker.close()
    published = 0
    states_seen = 0
    while True:
        reply = pubsub.get_message(timeout=TIMEOUT / 5)
        if reply is None:
            break
        if reply["type"] != "message":
            continue
        message = decode_message(reply["data"])  # Raises unless all valid.
        published += 1
        for entry in message.batch.joined.values():
            assert isinstance(json.loads(entry.state), dict)
            states_seen += 1
        for state in message.batch.updated.values():
            assert isinstance(json.loads(state), dict)
            states_seen += 1
    pubsub.close()
    client = redis_server.client()
    for node in client.smembers("wspractice:nodes"):
        decode_users_hash(client.hgetall(b"wspractice:users:" + node))
    print(f"{len(outcomes)} hostile connections, {published} messages published")
    assert not problems, problems[:20]
    assert published > 0 and states_seen > 0


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://bob:hunter2@h/2", "rediss://bob:***@h/2"),
        ("redis://hunter2@h", "redis://***@h"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("hunter2@h", "<not a URL>"),
    ],
)
def test_logs_show_a_redis_url_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_error_about_a_redis_url_never_shows_the_password() -> None:
    with pytest.raises(ValueError) as error:
        check_redis_url("redis://:hunter2@h:99999/0")
    assert "hunter2" not in str(error.value)
    assert "redis://:***@h:99999/0" in str(error.value)


def healthz(process: Wspractice) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{process.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_reports_the_redis_link_degraded_while_redis_is_down(
    workdir: Path, start_process: Start
) -> None:
    need_redis_server()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    a = start_process("--redis", url, "--presence-timeout", PRESENCE_TIMEOUT)
    status, body = healthz(a)
    # Still serving its own users: up, but degraded.
    assert (status, body["status"], body["redis"]["connected"]) == (
        200,
        "degraded",
        False,
    )
    redis = RedisServer.__new__(RedisServer)
    redis.port, redis.workdir, redis.process = port, workdir, None
    redis.start()
    try:
        deadline = time.monotonic() + 3 * TIMEOUT
        while True:
            status, body = healthz(a)
            if body["redis"]["connected"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert (status, body["status"], body["redis"]["connected"]) == (
            200,
            "ok",
            True,
        )
    finally:
        redis.stop()
