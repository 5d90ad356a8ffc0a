"""The benchmark harness behaves: scripts/benchmark.py and scripts/bench/loadgen.js.

These tests check what the harness counts, not how fast anything is: the load
generator runs for about a second against small servers whose behaviour is
known (one that coalesces snapshots, one that forgets updates), and the
driver's helpers are fed records whose figures are known.

The generator tests need Node.js; they install the generator's packages with
``npm ci`` if needed and are skipped where Node or npm is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from .conftest import TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"


def _load_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPTS / "benchmark.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmark"] = module
    spec.loader.exec_module(module)
    return module


benchmark = _load_benchmark()


# ------------------------------------------------------------ the driver's helpers


def test_numbers_are_written_with_three_significant_digits() -> None:
    assert benchmark.fmt(0.012345) == "0.0123"
    assert benchmark.fmt(12.345) == "12.3"
    assert benchmark.fmt(12345.6) == "12,346"
    assert benchmark.fmt(1234) == "1,234"
    assert benchmark.fmt(None) == "—"
    assert benchmark.fmt(True) == "yes"


def test_tables_are_markdown_with_the_server_column_left_aligned() -> None:
    text = benchmark.table(["server", "msgs/s"], [["wspractice", "12"], ["ws", "3"]])
    assert text.splitlines() == [
        "| server     | msgs/s |",
        "|------------|-------:|",
        "| wspractice |     12 |",
        "| ws         |      3 |",
    ]


def record(server: str, users: int, p99: float, status: str = "ok") -> dict[str, Any]:
    return {
        "scenario": "presence",
        "server": server,
        "params": {"users": users},
        "status": status,
        "notes": [],
        "latency": {"p99_ms": p99},
    }


def test_ratios_divide_by_wspractice_at_the_same_user_count() -> None:
    rows = [
        record("wspractice", 100, 10.0),
        record("tutorial", 100, 25.0),
        record("wspractice", 300, 20.0),
        record("tutorial", 300, 10.0),
    ]
    _, cell = benchmark.ratio_col("÷ wsp", "latency.p99_ms", rows, "params.users")
    assert [cell(r) for r in rows] == ["1.00×", "2.50×", "1.00×", "0.50×"]


def test_no_ratio_when_wspractice_failed() -> None:
    rows = [record("wspractice", 100, 10.0, "failed"), record("tutorial", 100, 25.0)]
    _, cell = benchmark.ratio_col("÷ wsp", "latency.p99_ms", rows, "params.users")
    assert cell(rows[1]) == "—"


def test_a_run_that_lost_many_updates_counts_as_collapsed() -> None:
    fine = dict(record("tutorial", 100, 10.0), lost_share=0.0)
    lossy = dict(record("tutorial", 100, 10.0), lost_share=0.5)
    assert not benchmark.collapsed(fine)
    assert benchmark.collapsed(lossy)
    assert benchmark.collapsed(record("tutorial", 100, 10.0, "failed"))


def test_cpu_and_memory_are_read_from_proc() -> None:
    cpu = benchmark.proc_cpu_seconds(os.getpid())
    rss = benchmark.proc_rss_kb(os.getpid())
    assert cpu is not None and cpu > 0
    assert rss is not None and rss > 1000
    assert benchmark.proc_cpu_seconds(2**22 + 1) is None


def test_quick_changes_only_the_options_not_given() -> None:
    argv = ["--quick", "--users", "7"]
    args = benchmark.build_parser().parse_args(argv)
    benchmark.apply_quick(args, argv)
    assert args.users == [7]
    assert args.duration == benchmark.QUICK["duration"]


# ------------------------------------------------------------ small servers


class FakePresence:
    """A presence server whose broadcast policy a test chooses.

    ``coalesce``: send the latest snapshot every 50 ms instead of once per
    message. ``forget_after``: ignore every update whose sequence number is
    higher (the generator's state is {"s": SEQ, ...}).
    """

    def __init__(self, coalesce: bool = False, forget_after: int | None = None):
        self.coalesce = coalesce
        self.forget_after = forget_after
        self.lock = threading.Lock()
        self.users: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, ServerConnection] = {}
        self.version = 0
        self.stopping = threading.Event()

    def snapshot(self) -> tuple[str, list[ServerConnection]]:
        with self.lock:
            text = json.dumps(self.users, separators=(",", ":"))
            return text, list(self.connections.values())

    def broadcast(self) -> None:
        text, targets = self.snapshot()
        for connection in targets:
            try:
                connection.send(text)
            except ConnectionClosed:
                pass

    def handler(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        name = connection.request.path.split("username=")[-1]
        user_id = str(uuid.uuid4())
        with self.lock:
            self.users[user_id] = {"username": name, "state": {}}
            self.connections[user_id] = connection
        try:
            for message in connection:
                state = json.loads(message)
                if self.forget_after is not None and state["s"] > self.forget_after:
                    continue
                with self.lock:
                    self.users[user_id]["state"] = state
                    self.version += 1
                if not self.coalesce:
                    self.broadcast()
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                del self.users[user_id]
                del self.connections[user_id]

    def ticker(self) -> None:
        seen = -1
        while not self.stopping.wait(0.05):
            if self.version != seen:
                seen = self.version
                self.broadcast()


@pytest.fixture
def fake_presence() -> Iterator[Callable[..., str]]:
    """Start FakePresence servers; returns their ws:// base URL."""
    running: list[tuple[Server, FakePresence, threading.Thread]] = []

    def start(**kwargs: Any) -> str:
        app = FakePresence(**kwargs)
        server = serve(app.handler, "127.0.0.1", 0, compression=None)
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        if app.coalesce:
            threading.Thread(target=app.ticker, daemon=True).start()
        running.append((server, app, thread))
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}"

    yield start
    for server, app, thread in running:
        app.stopping.set()
        server.shutdown()
        thread.join(TIMEOUT)


# ------------------------------------------------------------ the load generator


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are needed for the load generator")
    try:
        benchmark.ensure_node_packages(True)
    except (subprocess.SubprocessError, SystemExit) as exc:
        pytest.skip(f"cannot install the load generator's packages: {exc}")
    return node


def loadgen(node: str, scenario: str, url: str, **options: object) -> dict[str, Any]:
    """Run loadgen.js; return its events by name (the last of each)."""
    command = [node, str(SCRIPTS / "bench" / "loadgen.js"), scenario, "--url", url]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=20 * TIMEOUT, check=False
    )
    events = {}
    for line in done.stdout.splitlines():
        event = json.loads(line)
        events[event["event"]] = event
    assert "result" in events, done.stderr
    return events


SHORT = {"warmup": 0.3, "duration": 1, "grace": 1}


def test_every_update_is_seen_through_a_coalescing_server(
    node: str, fake_presence: Callable[..., str]
) -> None:
    url = fake_presence(coalesce=True)
    result = loadgen(node, "presence", url, clients=5, rate=20, **SHORT)["result"]
    assert result["error_count"] == 0, result["errors"]
    assert result["updates_measured"] >= 5 * 20 * 0.8
    assert result["updates_lost"] == 0
    # Every measured update has a latency, though the server skipped snapshots.
    assert result["latency"]["count"] == result["updates_measured"]
    assert result["snapshots"] < result["updates_measured"] * 5
    assert result["uuids_distinct"] == 5


def test_updates_that_never_show_up_are_lost(
    node: str, fake_presence: Callable[..., str]
) -> None:
    url = fake_presence(forget_after=3)
    result = loadgen(node, "presence", url, clients=3, rate=20, **SHORT)["result"]
    assert result["updates_measured"] > 0
    assert result["updates_lost"] == result["updates_measured"]
    assert result["latency"]["count"] == 0


def test_one_broadcast_per_message_delivers_users_squared_snapshots(
    node: str, fake_presence: Callable[..., str]
) -> None:
    url = fake_presence()
    result = loadgen(node, "presence", url, clients=4, rate=10, **SHORT)["result"]
    assert result["updates_lost"] == 0
    # 4 users × 10 Hz, each update sent to 4 clients: about 160 a second.
    assert 80 < result["snapshots_per_second"] < 240
    assert result["stale_snapshots"] == 0


def test_the_generator_marks_the_window_before_its_result(
    node: str, fake_presence: Callable[..., str]
) -> None:
    url = fake_presence()
    command = [str(SCRIPTS / "bench" / "loadgen.js"), "presence", "--url", url]
    command += ["--clients", "2", "--warmup", "0", "--duration", "0.3", "--grace", "0"]
    done = subprocess.run(
        [node, *command], capture_output=True, text=True, timeout=20 * TIMEOUT
    )
    kinds = [json.loads(line)["event"] for line in done.stdout.splitlines()]
    assert kinds == ["connected", "measure_start", "measure_end", "result"]


def test_echo_and_handshakes_against_wspractice(node: str, server: Any) -> None:
    url = f"ws://127.0.0.1:{server.port}"
    echo = loadgen(node, "echo", url, clients=2, size=64, **SHORT)["result"]
    assert echo["error_count"] == 0, echo["errors"]
    assert echo["messages"] > 0 and echo["rtt"]["count"] == echo["messages"]
    shakes = loadgen(node, "handshake", url, clients=2, **SHORT)["result"]
    assert shakes["error_count"] == 0, shakes["errors"]
    assert shakes["handshakes"] > 0


def test_refused_connections_are_counted_not_hidden(node: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on that port.
    events = loadgen(
        node, "idle", f"ws://127.0.0.1:{port}", clients=3, warmup=0, duration=0.1
    )
    assert events["connected"]["connected"] == 0
    assert events["connected"]["failed"] == 3


# ------------------------------------------------------------ the stalled client


def test_a_stalled_client_is_seen_held_then_dropped(start_server: Any) -> None:
    running = start_server(close_timeout=0.2)
    stalled = benchmark.StalledClient(running.port)
    try:
        assert stalled.held_by(os.getpid()) is True
        running.stop()
        deadline = time.monotonic() + TIMEOUT
        while stalled.held_by(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stalled.held_by(os.getpid()) is False
    finally:
        stalled.close()


# ------------------------------------------------------------ the whole driver


def test_a_quick_run_writes_tables_and_results(node: str, tmp_path: Path) -> None:
    command = [sys.executable, str(SCRIPTS / "benchmark.py"), "--quick"]
    command += ["--servers", "wspractice", "--scenarios", "echo,presence"]
    command += ["--output", str(tmp_path), "--no-install"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60 * TIMEOUT, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "### Echo" in done.stdout and "### Presence broadcast" in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    runs = {(r["scenario"], r["server"]): r for r in results["records"]}
    assert set(runs) == {("echo", "wspractice"), ("presence", "wspractice")}
    # Figures depend on the machine; that the runs worked does not.
    assert runs["echo", "wspractice"]["messages_per_second"] > 0
    assert runs["presence", "wspractice"]["latency"]["count"] > 0
    assert (tmp_path / "results.md").read_text().startswith("wspractice ")
