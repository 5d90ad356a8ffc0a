"""``scripts/demo_clients.py``: simulated users that fill the demo page."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from .clients import join, recv_json, recv_until, users_named
from .conftest import TIMEOUT, RunningServer

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "demo_clients.py"


def start(server: RunningServer, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--url", server.url("/"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_users_join_move_smoothly_and_leave_after_the_duration(
    server: RunningServer,
) -> None:
    with join(server.url("/?username=Watcher")) as watcher:
        proc = start(server, "--users", "3", "--rate", "20", "--duration", "1.5")
        try:
            names = {"Ada", "Grace", "Linus"}
            first = recv_until(watcher, lambda s: names <= set(users_named(s)))
            seen: dict[str, list[Any]] = {name: [] for name in names}
            while True:
                snapshot = recv_json(watcher)
                for name, state in users_named(snapshot).items():
                    if name in seen and state:
                        seen[name].append((state["x"], state["y"]))
                if not names & set(users_named(snapshot)):
                    break  # Everyone left.
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert out == "3 users moving at 20 messages a second each; Ctrl-C stops them\n"
    assert sorted(users_named(first)) == ["Ada", "Grace", "Linus", "Watcher"]
    for name, points in seen.items():
        distinct = sorted(set(points))
        assert len(distinct) >= 10, (name, points)  # About 30 were sent.
        for (x1, y1), (x2, y2) in zip(points, points[1:]):
            assert 0 <= x2 <= 900 and 0 <= y2 <= 600
            assert abs(x2 - x1) + abs(y2 - y1) < 100, (name, points)  # Smooth.


def test_ctrl_c_closes_every_user_cleanly_and_exits_0(server: RunningServer) -> None:
    with join(server.url("/?username=Watcher")) as watcher:
        proc = start(server, "--users", "2")
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("2 users moving")
            recv_until(watcher, lambda s: {"Ada", "Grace"} <= set(users_named(s)))
            proc.send_signal(signal.SIGINT)
            recv_until(watcher, lambda s: sorted(users_named(s)) == ["Watcher"])
            _, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert (proc.returncode, err) == (0, "")


def test_no_server_is_reported_and_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--url", url, "--users", "1"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Ada: cannot connect to {url}: ")


def run_script(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """The script with the websockets library made unimportable: it must
    need nothing beyond wspractice's own dependency, wsproto."""
    argv = [str(SCRIPT), "--url", server.url("/"), *args]
    code = (
        "import runpy, sys\n"
        "sys.modules['websockets'] = None\n"
        f"sys.argv = {argv!r}\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=4 * TIMEOUT,
    )


def test_users_answer_pings_and_need_only_wsproto(start_server: Any) -> None:
    server = start_server(ping_interval=0.2, ping_timeout=0.5)
    result = run_script(server, "--users", "2", "--duration", "1.5")
    assert (result.returncode, result.stderr) == (0, "")


def test_a_refused_handshake_is_reported_with_the_servers_reason(
    start_server: Any,
) -> None:
    server = start_server(max_connections=1)
    result = run_script(server, "--users", "2", "--duration", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("Grace: handshake refused: HTTP 503: "), result


def test_a_close_by_the_server_is_reported_with_its_code(start_server: Any) -> None:
    server = start_server(max_message_size=64)
    # Coordinates this wide make a message longer than 64 bytes.
    result = run_script(server, "--users", "1", "--width", str(10**70))
    assert result.returncode == 1
    assert result.stderr.startswith("Ada: the server closed the connection: 1009 ")
