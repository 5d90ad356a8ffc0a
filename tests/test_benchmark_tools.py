"""The benchmark harness behaves: scripts/bench/ and the modules it shares.

These tests check what the harness counts, parses and starts, not how fast
anything is. One section per module: ``procstat`` and ``serverproc`` (shared
with the soak test), ``rawframes`` (shared with the tests), then the bench
package's ``servers``, ``cli``, ``needs``, ``records``, ``table``, the
scenarios' tables, ``report``, ``stalled``, the load generator against small
servers whose behaviour is known (one that coalesces snapshots, one that
forgets updates), and finally whole runs of ``scripts/benchmark.py``.

The generator tests need Node.js and npm; they run ``npm ci --prefix
scripts/bench`` if its packages are missing, and are skipped without npm.
"""

from __future__ import annotations

import argparse
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
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

import procstat  # noqa: E402
import rawframes  # noqa: E402
import serverproc  # noqa: E402
from bench import cli, generator, needs, pinning, servers  # noqa: E402
from bench.context import Context  # noqa: E402
from bench.plot import FILENAME as PLOT  # noqa: E402
from bench.records import (  # noqa: E402
    EchoRecord,
    PresenceRecord,
    Record,
    SharedRecord,
    record_from_json,
)
from bench.plot import DELTA_FILENAME as DELTA_PLOT  # noqa: E402
from bench.scenarios import bigroom, planned_runs, presence, stall  # noqa: E402
from bench.stalled import StalledClient  # noqa: E402
from bench.summary import headline  # noqa: E402
from bench.table import fmt, ratio_col, table  # noqa: E402

PYTHON = sys.executable


# ------------------------------------------------------------ procstat


def test_proc_reads_this_process() -> None:
    usage = procstat.usage(os.getpid())
    assert usage is not None
    assert usage.cpu_seconds > 0
    assert 1000 < usage.rss_kib <= usage.peak_rss_kib
    assert usage.threads >= 1
    with open(__file__) as extra:
        assert procstat.open_fds(os.getpid()) == usage.fds + 1, extra.name
    assert procstat.open_fds(os.getpid()) == usage.fds


def test_proc_says_none_for_a_process_that_is_gone() -> None:
    done = subprocess.run([PYTHON, "-c", "pass"], check=True)
    assert done.returncode == 0
    gone = 2**22 + 1  # Above the kernel's largest pid.
    assert procstat.usage(gone) is None
    assert procstat.cpu_seconds(gone) is None
    assert procstat.rss_kib(gone) is None
    assert procstat.open_fds(gone) is None


def test_cpu_waiting_is_read_per_thread_and_a_thread_gone_is_not_negative() -> None:
    mine = generator.run_queue_waits(os.getpid())
    assert mine is not None and str(threading.get_native_id()) in mine
    assert generator.run_queue_waits(2**22 + 1) is None  # No such process.
    # Thread 2 ended, thread 3 started: 2 ns more for 1, all 4 of 3's.
    assert generator.waited({"1": 5, "2": 10}, {"1": 7, "3": 4}) == 6e-9
    assert generator.waited(None, {"1": 7}) is None


def test_pinning_keeps_every_thread_of_a_process_on_its_cpus() -> None:
    assert pinning.parse_pin("0/1") == ({0}, {1})
    assert pinning.parse_pin("0-1,3/2") == ({0, 1, 3}, {2})
    assert pinning.parse_pin(None) == (set(), set())
    with pytest.raises(ValueError, match="SERVER_CPUS/GENERATOR_CPUS"):
        pinning.parse_pin("0")
    cpu = min(os.sched_getaffinity(0))
    script = (
        "import threading, time, sys\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"  # Pinned: start one more thread.
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "print('more', flush=True)\n"
        "time.sleep(30)\n"
    )
    child = subprocess.Popen(
        [PYTHON, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"
        pinning.pin(child.pid, {cpu})
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "more\n"
        tasks = os.listdir(f"/proc/{child.pid}/task")
        assert len(tasks) == 3
        assert all(os.sched_getaffinity(int(t)) == {cpu} for t in tasks)
    finally:
        child.kill()
        child.wait()


# ------------------------------------------------------------ serverproc


def test_a_server_is_found_on_its_port_sampled_and_stopped(tmp_path: Path) -> None:
    server = serverproc.ServerProcess(
        [PYTHON, "-m", "wspractice", "--port", "0", "--log-level", "warning"],
        log_path=tmp_path / "server.log",
        cwd=ROOT,
    )
    port = server.start(timeout=10 * TIMEOUT)
    try:
        assert port == server.port > 0
        assert server.url == f"ws://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
            pass
        usage = server.usage()
        assert usage is not None and usage.threads >= 1 and usage.rss_kib > 1000
        assert server.exit_status() is None
    finally:
        code = server.stop()
    assert code == 0  # wspractice exits 0 on SIGTERM.
    assert server.usage() is None
    assert f"running on port {port}" in server.log_text()


def fake_server(script: str) -> list[str]:
    return [PYTHON, "-c", "import os, sys, time\n" + script]


def test_the_runner_passes_env_and_cwd_and_reads_the_port_line(
    tmp_path: Path,
) -> None:
    server = serverproc.ServerProcess(
        fake_server(
            "print('HELLO', os.environ['WSPRACTICE_ABLATE'], os.getcwd())\n"
            "print('started: running on port 4321', flush=True)\n"
            "time.sleep(60)"
        ),
        log_path=tmp_path / "logs" / "fake.log",
        cwd=tmp_path,
        env={"WSPRACTICE_ABLATE": "gate,pacing"},
    )
    assert server.start(timeout=10 * TIMEOUT) == 4321
    code = server.stop()
    assert code == -15  # The fake has no SIGTERM handler.
    assert f"HELLO gate,pacing {tmp_path}" in server.log_text()


def test_a_server_that_exits_at_startup_is_an_error_with_its_output(
    tmp_path: Path,
) -> None:
    server = serverproc.ServerProcess(
        fake_server("print('cannot listen'); sys.exit(3)"),
        log_path=tmp_path / "s.log",
    )
    with pytest.raises(serverproc.ServerError, match="exited with 3.*cannot listen"):
        server.start(timeout=10 * TIMEOUT)


def test_a_server_that_prints_no_port_is_an_error_and_is_stopped(
    tmp_path: Path,
) -> None:
    server = serverproc.ServerProcess(
        fake_server("print('hello'); time.sleep(60)"), log_path=tmp_path / "s.log"
    )
    with pytest.raises(serverproc.ServerError, match="printed no port"):
        server.start(timeout=0.5)
    assert server.proc is not None and server.proc.poll() is not None


def test_a_server_over_its_memory_limit_is_killed(tmp_path: Path) -> None:
    server = serverproc.ServerProcess(
        fake_server("print('running on port 1', flush=True); time.sleep(60)"),
        log_path=tmp_path / "s.log",
        max_rss_kib=1,
        sample_every=0.01,
    )
    server.start(timeout=10 * TIMEOUT)
    assert server.proc is not None
    server.proc.wait(TIMEOUT)
    status = server.exit_status()
    server.stop()
    assert status is not None and status.startswith("killed: RSS")
    assert server.peak_rss_kib > 1


# ------------------------------------------------------------ rawframes


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_a_masked_frame_reads_back_whole_and_not_before(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    data = rawframes.frame(rawframes.OP_BINARY, payload, fin=False)
    assert rawframes.parse_frame(data[:-1] if size else data[:1]) is None
    parsed = rawframes.parse_frame(data + b"next")
    assert parsed is not None
    got, used = parsed
    assert (got.opcode, got.fin, got.masked, got.payload) == (2, False, True, payload)
    assert used == len(data)


def test_an_unmasked_frame_with_a_reserved_bit_and_a_false_length() -> None:
    data = rawframes.frame(rawframes.OP_TEXT, b"hi", mask=False, rsv=4, length=5)
    assert data == b"\xc1\x05hi"
    assert rawframes.parse_frame(data) is None  # Waits for 3 more bytes.


def test_close_codes_and_accept_keys_follow_the_rfc() -> None:
    close = rawframes.close_frame(1001, "bye")
    parsed = rawframes.parse_frame(close)
    assert parsed is not None
    assert rawframes.close_code(parsed[0].payload) == (1001, "bye")
    assert rawframes.close_code(b"") == (None, "")
    # RFC 6455 section 1.3's example.
    assert rawframes.accept_value(rawframes.KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_an_upgrade_request_and_a_response_head() -> None:
    request = rawframes.upgrade_request("/echo", extra="Origin: x\r\n")
    assert request.startswith(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert request.endswith(b"Sec-WebSocket-Version: 13\r\nOrigin: x\r\n\r\n")
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket"
    assert rawframes.response_status(head) == 101
    assert rawframes.parse_response_head(head) == (101, {"upgrade": "websocket"})


# ------------------------------------------------------------ servers: variants


def test_a_variant_takes_a_root_args_and_env_with_commas() -> None:
    text = (
        f"slow root={ROOT} args='--broadcast-interval 5 --log-level info'"
        " env=WSPRACTICE_ABLATE=gate,pacing env=OTHER=a=b"
    )
    variant = servers.parse_variant(text, Path("/nowhere"), ["--trace"])
    assert variant.name == "slow"
    assert variant.root == ROOT
    assert variant.args == (
        "--trace",
        "--broadcast-interval",
        "5",
        "--log-level",
        "info",
    )
    assert variant.env == (("WSPRACTICE_ABLATE", "gate,pacing"), ("OTHER", "a=b"))
    # What results.json keeps reads back to the same variant.
    again = servers.parse_variant(variant.describe(), Path("/nowhere"), [])
    assert again == variant


def test_a_variant_runs_its_own_checkout_with_its_args_and_env() -> None:
    variant = servers.Variant("v", ROOT, ("--broadcast-interval", "0"), (("K", "1"),))
    spec = servers.variant_spec(variant)
    assert spec.command[1:] == [
        "-m",
        "wspractice",
        "--port",
        "0",
        "--log-level",
        "warning",
        "--broadcast-interval",
        "0",
    ]
    assert spec.cwd == ROOT  # So that python -m imports this checkout.
    assert spec.env == {"K": "1"}
    assert spec.variant is variant


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "start with the variant's name"),
        ("root=/tmp", "start with the variant's name"),
        ("a/b", "is not a name"),
        ("v colour=red", "unknown key 'colour'"),
        ("v args", "is not KEY=VALUE"),
        ("v env=NOVALUE", "env wants NAME=VALUE"),
        ("v root=/", "has no wspractice/ package"),
        ("v args='unclosed", "No closing quotation"),
    ],
)
def test_a_bad_variant_is_refused_with_the_reason(text: str, error: str) -> None:
    with pytest.raises(servers.BadOption, match=error):
        servers.parse_variant(text, ROOT, [])


def test_wspractice_in_servers_stands_for_every_variant() -> None:
    variants = [servers.Variant("new", ROOT), servers.Variant("base", ROOT)]
    specs = servers.all_specs(variants, ["mine=ws://127.0.0.1:9"])
    assert list(specs)[:2] == ["new", "base"]
    assert servers.chosen_servers(None, specs, variants) == [
        "new",
        "base",
        *servers.PEER_NAMES,
    ]
    chosen = servers.chosen_servers(["tutorial", "wspractice", "mine"], specs, variants)
    assert chosen == ["tutorial", "new", "base", "mine"]
    assert specs["mine"].url == "ws://127.0.0.1:9"
    with pytest.raises(servers.BadOption, match="unknown server 'nope'"):
        servers.chosen_servers(["nope"], specs, variants)
    with pytest.raises(servers.BadOption, match="two servers are called 'tutorial'"):
        servers.all_specs([servers.Variant("tutorial", ROOT)], [])
    with pytest.raises(servers.BadOption, match="--target wants NAME=ws://"):
        servers.target_spec("mine=http://127.0.0.1:9")


# ------------------------------------------------------------ cli


def parse(*argv: str) -> argparse.Namespace:
    args = cli.build_parser().parse_args(argv)
    if args.quick:
        cli.apply_quick(args, argv)
    return args


def test_without_variants_one_called_wspractice_runs_this_checkout() -> None:
    args = parse("--wspractice-args", "--broadcast-interval 5")
    (variant,) = cli.variants(args)
    assert (variant.name, variant.root) == ("wspractice", ROOT)
    assert variant.args == ("--broadcast-interval", "5")


def test_the_reference_is_the_first_variant_run_unless_chosen() -> None:
    found = cli.variants(parse("--variant", "a", "--variant", "b"))
    assert cli.reference(None, ["tutorial", "b", "a"], found) == "a"
    assert cli.reference(None, ["tutorial", "b"], found) == "b"
    assert cli.reference(None, ["tutorial"], found) == "tutorial"
    assert cli.reference("tutorial", ["a", "tutorial"], found) == "tutorial"
    with pytest.raises(servers.BadOption, match="not among the servers"):
        cli.reference("websockets", ["a"], found)
    with pytest.raises(servers.BadOption, match="two variants are called 'a'"):
        cli.variants(parse("--variant", "a", "--variant", "a args=-x"))


def test_quick_changes_only_the_options_not_given() -> None:
    args = parse("--quick", "--users", "7")
    assert args.users == [7]
    assert args.duration == cli.QUICK["duration"]
    assert parse("--users", "7").duration == 10.0


def test_planned_runs_count_every_scenario_per_server() -> None:
    args = parse("--users", "10,20,30", "--scenarios", "presence,stall,echo")
    # 3 user counts, 2 stall runs (with and without), 1 echo: per server.
    assert planned_runs(args, 2) == 2 * (3 + 2 + 1)


def test_the_big_room_runs_only_when_named_once_per_size_mode_and_server() -> None:
    assert "bigroom" not in parse().scenarios
    args = parse("--scenarios", "bigroom", "--room-sizes", "10,20")
    assert args.room_modes == ["full", "delta", "mixed"]
    assert planned_runs(args, 2) == 2 * 3 * 2
    args = parse(
        "--scenarios", "presence", "--users", "10,20", "--protocols", "full,delta"
    )
    assert planned_runs(args, 3) == 2 * 2 * 3
    assert parse("--quick", "--scenarios", "bigroom").room_sizes == [30]
    # Movers and idle users on delta: none, all, or half of each.
    assert bigroom.mix(2000, 20, "full") == (0, 0)
    assert bigroom.mix(2000, 20, "delta") == (20, 1980)
    assert bigroom.mix(2000, 20, "mixed") == (10, 990)


# ------------------------------------------------------------ needs


def test_node_packages_must_match_the_lockfile(tmp_path: Path) -> None:
    shutil.copy(SCRIPTS / "bench" / "package-lock.json", tmp_path)
    with pytest.raises(needs.Missing, match=r"ws 8\.23\.0 \(found none\)"):
        needs.node_packages(tmp_path)
    for name, version in (("ws", "8.23.0"), ("uuid", "9.0.0")):
        (tmp_path / "node_modules" / name).mkdir(parents=True)
        meta = {"name": name, "version": version}
        (tmp_path / "node_modules" / name / "package.json").write_text(json.dumps(meta))
    with pytest.raises(needs.Missing, match=r"uuid 9\.0\.1 \(found 9\.0\.0\)$"):
        needs.node_packages(tmp_path)


def test_python_packages_are_named_as_pip_knows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    needs.python_modules({"json", "websocket_server"})
    monkeypatch.setitem(servers.PYTHON_PACKAGES, "no_such_module", "no-such-package")
    with pytest.raises(needs.Missing, match=r": no-such-package, other_module$"):
        needs.python_modules({"json", "no_such_module", "other_module"})


def test_a_variant_must_import_its_own_checkout(tmp_path: Path) -> None:
    needs.variant_imports(servers.variant_spec(servers.Variant("v", ROOT)))
    broken = tmp_path / "wspractice"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('half a checkout')\n")
    spec = servers.variant_spec(servers.Variant("v", tmp_path))
    with pytest.raises(needs.Missing, match="v: cannot import .*half a checkout"):
        needs.variant_imports(spec)


def test_without_node_the_benchmark_says_what_to_install_and_exits_2(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(PYTHON)
    done = subprocess.run(
        [PYTHON, str(SCRIPTS / "benchmark.py"), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=30 * TIMEOUT,
        env={**os.environ, "PATH": str(bin_dir)},
    )
    assert done.returncode == 2, done.stderr
    assert "Node.js (node, 18 or newer) is not on PATH" in done.stderr
    assert needs.SETUP in done.stderr
    assert not (tmp_path / "out").exists()  # Nothing ran.


# ------------------------------------------------------------ records and tables


def presence_record(
    server: str, users: int, p99: float, status: str = "ok", lost_share: float = 0
) -> PresenceRecord:
    record = PresenceRecord("presence", server, {"users": users})
    record.status = status
    record.latency = {"p99_ms": p99}
    record.lost_share = lost_share
    return record


def test_records_go_to_json_and_back_and_old_files_still_read() -> None:
    record = presence_record("wspractice", 100, 12.5)
    record.flag("lossy", "3 of 100 updates lost")
    data = json.loads(json.dumps(record.to_json()))
    again = record_from_json(data)
    assert again == record and isinstance(again, PresenceRecord)
    assert again.status == "lossy"
    old = {"scenario": "echo", "server": "x", "params": {}, "messages_per_second": 5}
    old["a_field_of_an_older_version"] = 1
    echo = record_from_json(old)
    assert isinstance(echo, EchoRecord) and echo.messages_per_second == 5


def test_a_windows_load_written_under_its_earlier_name_reads_back() -> None:
    old = {"scenario": "bigroom", "server": "x", "params": {}, "machine_load": 3.5}
    assert record_from_json(old).window_load == 3.5
    shared = {"scenario": "shared", "server": "x", "params": {}, "machine_load": 2.0}
    again = record_from_json(shared)
    assert isinstance(again, SharedRecord)
    assert (again.window_load, again.machine_load) == (None, 2.0)


def test_a_record_flag_keeps_the_worst_status() -> None:
    record = Record("echo", "x", {})
    record.flag("errors", "2 of 10 not accepted")
    record.flag("lossy", "lost some")
    assert record.status == "errors"
    record.fail("server exited")
    assert (record.status, record.usable) == ("failed", False)
    assert record.notes == ["2 of 10 not accepted", "lost some", "server exited"]


def test_a_run_that_lost_many_updates_counts_as_collapsed() -> None:
    assert not presence_record("t", 100, 10.0, lost_share=0.05).collapsed
    assert presence_record("t", 100, 10.0, lost_share=0.5).collapsed
    assert presence_record("t", 100, 10.0, status="failed").collapsed


def test_numbers_are_written_with_three_significant_digits() -> None:
    assert fmt(0.012345) == "0.0123"
    assert fmt(12.345) == "12.3"
    assert fmt(12345.6) == "12,346"
    assert fmt(1234) == "1,234"
    assert fmt(None) == "—"
    assert fmt(True) == "yes"


def test_tables_are_markdown_with_the_server_column_left_aligned() -> None:
    text = table(["server", "msgs/s"], [["wspractice", "12"], ["ws", "3"]])
    assert text.splitlines() == [
        "| server     | msgs/s |",
        "|------------|-------:|",
        "| wspractice |     12 |",
        "| ws         |      3 |",
    ]


def test_ratios_divide_by_the_reference_at_the_same_user_count() -> None:
    rows = [
        presence_record("new", 100, 10.0),
        presence_record("base", 100, 25.0),
        presence_record("new", 300, 20.0),
        presence_record("base", 300, 10.0),
    ]
    _, cell = ratio_col("p99 ÷ ref", "latency.p99_ms", rows, "new", "params.users")
    assert [cell(r) for r in rows] == ["1.00×", "2.50×", "1.00×", "0.50×"]
    _, cell = ratio_col("p99 ÷ ref", "latency.p99_ms", rows, "base", "params.users")
    assert [cell(r) for r in rows] == ["0.40×", "1.00×", "2.00×", "1.00×"]


def test_no_ratio_when_the_reference_failed() -> None:
    rows = [
        presence_record("new", 100, 10.0, "failed"),
        presence_record("b", 100, 25.0),
    ]
    _, cell = ratio_col("÷ ref", "latency.p99_ms", rows, "new", "params.users")
    assert cell(rows[1]) == "—"


def context(servers_: list[str], reference: str, **settings: Any) -> Context:
    args = argparse.Namespace(
        rate=20.0,
        duration=10.0,
        users=[100, 300],
        scenarios=["presence", "stall"],
        **settings,
    )
    return Context(args, servers_, reference, Path("/nonexistent"))


def test_the_presence_table_has_a_row_per_variant_and_size_in_order() -> None:
    ctx = context(["new", "base", "websockets"], "base")
    ctx.records = [
        presence_record("websockets", 100, 50.0),
        presence_record("base", 300, 40.0),
        presence_record("new", 300, 20.0),
        presence_record("base", 100, 10.0),
        presence_record("new", 100, 5.0),
    ]
    ((title, text),) = presence.tables(ctx)
    assert title.startswith("Presence broadcast (20 updates/s per user, 10 s")
    rows = [line.split("|")[1:6] for line in text.splitlines()[2:]]
    cells = [[c.strip() for c in row] for row in rows]
    assert [(c[0], c[1], c[3], c[4]) for c in cells] == [
        ("new", "100", "5", "0.50×"),
        ("base", "100", "10", "1.00×"),
        ("websockets", "100", "50", "5.00×"),
        ("new", "300", "20", "0.50×"),
        ("base", "300", "40", "1.00×"),
    ]
    header = text.splitlines()[0]
    for column in ("lost", "snapshots/s", "CPU µs/snap", "gen CPU", "gen lag p99 ms"):
        assert column in header


def delta_record(
    server: str, users: int, p99: float, mbs: float, protocol: str | None
) -> PresenceRecord:
    record = presence_record(server, users, p99)
    if protocol:
        record.params["protocol"] = protocol
        record.verify = {"delta_checked": users, "delta_mismatches": 0}
    record.bytes_per_second = mbs * 1e6
    return record


def test_delta_runs_have_a_table_of_their_own_against_full_maps() -> None:
    ctx = context(["new", "base"], "new")
    ctx.records = [
        delta_record("new", 100, 10.0, 100, None),
        delta_record("new", 100, 5.0, 10, "delta"),
        delta_record("base", 100, 20.0, 100, None),
        delta_record("base", 100, 40.0, 50, "delta"),
    ]
    (full_title, full), (title, text) = presence.tables(ctx)
    # The full-map table is as before: no delta rows in it.
    assert full_title.startswith("Presence broadcast (")
    assert len(full.splitlines()) == 2 + 2
    assert "wspractice-delta against full maps" in title
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()]
    header = rows[0]
    ratio_of = header.index("p99 ÷ full")
    mb_of = header.index("MB/s ÷ full")
    assert [(r[0], r[2], r[ratio_of], r[mb_of]) for r in rows[2:]] == [
        ("new", "full", "1.00×", "1.00×"),
        ("new", "delta", "0.50×", "0.10×"),
        ("base", "full", "1.00×", "1.00×"),
        ("base", "delta", "2.00×", "0.50×"),
    ]
    assert rows[3][header.index("map mismatches")] == "0"
    # The summary and the main plot take the full-map runs only.
    found = headline(ctx, ["new", "base"])
    assert found is not None and "p99 10 ms" in found[1] and "p99 5 ms" not in found[1]


def room_record(mode: str, p99: dict[str, float], mb: float) -> PresenceRecord:
    params = {"users": 2000, "movers": 20, "mode": mode, "duration": 10.0}
    record = PresenceRecord("bigroom", "wspractice", params)
    record.room = {}
    for kind in ("full", "delta"):
        movers = 10 if mode == "mixed" else 20 if kind == mode else 0
        record.room[kind] = {
            "movers": movers,
            "latency": {"p50_ms": p99.get(kind), "p99_ms": p99.get(kind)},
            "others_latency": {"p99_ms": p99.get(kind)},
            "updates_lost": 0,
            "others_lost": 0,
            "most_messages": 50 if movers or mode != "mixed" else 0,
        }
    record.verify = {"delta_checked": 1, "delta_mismatches": 0, "delta_unconverged": 0}
    record.verify["full_unconverged"] = 0
    record.bytes_per_second = mb * 1e6
    record.server_cpu_seconds = 5.0
    record.server_cpu_cores = 0.5
    return record


def test_the_big_room_tables_show_each_kind_of_mover_and_what_a_round_costs() -> None:
    ctx = context(["wspractice"], "wspractice")
    ctx.records = [
        room_record("mixed", {"full": 900.0, "delta": 30.0}, 50.0),
        room_record("delta", {"delta": 20.0}, 2.0),
        room_record("full", {"full": 1400.0}, 200.0),
    ]
    (title, movers), (cost_title, costs) = bigroom.tables(ctx)
    assert "20 moving at 20 Hz" in title and cost_title.startswith("Big room: what")
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in movers.splitlines()]
    header = rows[0]
    cells = {r[2]: r for r in rows[2:]}
    assert list(cells) == ["full", "delta", "mixed"]  # In the modes' order.
    delta_p99 = header.index("delta own p99 ms")
    full_p99 = header.index("full own p99 ms")
    assert (cells["full"][delta_p99], cells["full"][full_p99]) == ("", "1,400")
    assert (cells["delta"][delta_p99], cells["delta"][full_p99]) == ("20", "")
    assert (cells["mixed"][delta_p99], cells["mixed"][full_p99]) == ("30", "900")
    assert cells["mixed"][header.index("delta lost")] == "0+0"
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in costs.splitlines()]
    header = rows[0]
    cells = {r[2]: r for r in rows[2:]}
    # 50 rounds in 10 s; 200 MB/s over 5 rounds a second is 40 MB a round.
    assert cells["full"][header.index("rounds/s")] == "5"
    assert cells["full"][header.index("MB/round")] == "40"
    assert cells["delta"][header.index("MB/s ÷ full")] == "0.01×"
    assert cells["full"][header.index("CPU ms/round")] == "100"


def stall_record(server: str, p99: float, stalled: bool) -> PresenceRecord:
    params: dict[str, object] = {"users": 19}
    if stalled:
        params["stalled_clients"] = 1
    record = PresenceRecord("stall", server, params, latency={"p99_ms": p99})
    record.generator = {"cpu_cores": 0.5, "workers": 1, "loop_delay_p99_ms": 3.0}
    return record


def test_the_stall_table_pairs_each_servers_runs() -> None:
    ctx = context(["a", "b"], "a")
    ctx.records = [
        stall_record("b", 4.0, False),
        stall_record("a", 2.0, False),
        stall_record("a", 3.0, True),
        stall_record("b", 12.0, True),
    ]
    ((title, text),) = stall.tables(ctx)
    assert "among 20; figures for the other 19" in title
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:6]] == [
        "server",
        "p99 ms without",
        "p99 ms with",
        "with ÷ without",
        "with ÷ ref",
    ]
    assert [c.strip() for c in lines[2].split("|")[1:6]] == [
        "a",
        "2",
        "3",
        "1.50×",
        "1.00×",
    ]
    assert [c.strip() for c in lines[3].split("|")[1:6]] == [
        "b",
        "4",
        "12",
        "3.00×",
        "4.00×",
    ]
    assert "0.5 (1w)" in lines[2]


def test_the_summary_shows_every_variant_against_the_websockets_server() -> None:
    ctx = context(["new", "base", "websockets"], "new")
    ctx.records = [
        presence_record("new", 100, 5.0),
        presence_record("base", 100, 10.0),
        presence_record("websockets", 100, 50.0),
    ]
    found = headline(ctx, ["new", "base"])
    assert found is not None
    _, text = found
    header, _, row = text.splitlines()[:3]
    assert [c.strip() for c in header.split("|")[1:-1]] == [
        "target",
        "new",
        "base",
        "websockets",
        "new ÷ peer",
    ]
    assert [c.strip() for c in row.split("|")[1:-1]] == [
        "presence, 100 users × 20 Hz",
        "p99 5 ms, — lost",
        "p99 10 ms, — lost",
        "p99 50 ms, — lost",
        "0.10×",
    ]


def test_an_earlier_runs_results_are_reported_again(tmp_path: Path) -> None:
    """A results.json written before variants existed reads as one variant."""
    echo = {
        "scenario": "echo",
        "params": {"clients": 10, "size": 64, "window": 1},
        "status": "ok",
        "notes": [],
        "generator": {"cpu_cores": 0.5, "workers": 1, "loop_delay_p99_ms": 2.5},
    }
    old = {
        "meta": {
            "date": "2026-11-28T18:14:56+00:00",
            "command": "python scripts/benchmark.py --scenarios echo",
            "wspractice_commit": "2870895",
            "machine": {"cpu": "AMD EPYC", "cores": 2},
            "servers": {"wspractice": "python -m wspractice", "tutorial": "node"},
            "settings": {"scenarios": ["echo"], "users": [25], "rate": 20.0},
        },
        "records": [
            dict(echo, server="wspractice", messages_per_second=8000.0),
            dict(echo, server="tutorial", messages_per_second=20000.0),
        ],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(old))
    done = subprocess.run(
        [PYTHON, str(SCRIPTS / "benchmark.py"), "--from-results", str(path)],
        capture_output=True,
        text=True,
        timeout=30 * TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wspractice 2870895 on AMD EPYC × 2, 2026-11-28")
    assert "divided by the reference server's, wspractice" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[1].split("|")[1:4] == [" wspractice ", "  8,000 ", " 1.00× "]
    assert rows[2].split("|")[1:4] == [" tutorial   ", " 20,000 ", " 2.50× "]
    assert (tmp_path / "results.md").read_text() == done.stdout


def test_several_runs_are_reported_together_each_delta_beside_its_full_run(
    tmp_path: Path,
) -> None:
    def run(date: str, full_p99: float, delta_p99: float) -> Path:
        meta = {
            "date": date,
            "command": f"python scripts/benchmark.py # {date}",
            "machine": {"cpu": "AMD EPYC", "cores": 2},
            "servers": {"wspractice": "python -m wspractice"},
            "reference": "wspractice",
            "settings": {
                "scenarios": ["presence"],
                "users": [300],
                "rate": 20.0,
                "duration": 10.0,
            },
        }
        records = [
            delta_record("wspractice", 300, full_p99, 100, None).to_json(),
            delta_record("wspractice", 300, delta_p99, 50, "delta").to_json(),
        ]
        path = tmp_path / f"{date}.json"
        path.write_text(json.dumps({"meta": meta, "records": records}))
        return path

    first, second = run("2026-12-01", 100.0, 50.0), run("2026-12-02", 300.0, 600.0)
    argv = ["--from-results", str(first), "--from-results", str(second)]
    refused = subprocess.run(
        [PYTHON, str(SCRIPTS / "benchmark.py"), *argv], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "need an --output" in refused.stderr
    out = tmp_path / "both"
    done = subprocess.run(
        [
            PYTHON,
            str(SCRIPTS / "benchmark.py"),
            *argv,
            "--output",
            str(out),
            "--no-plot",
        ],
        capture_output=True,
        text=True,
        timeout=30 * TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert "Runs reported together" in done.stdout and "# 2026-12-02" in done.stdout
    table = done.stdout.split("wspractice-delta against full maps")[1]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| wsp")]
    # Each delta run divided by the full-map run of the same invocation.
    assert [(r[3].strip(), r[5].strip(), r[6].strip()) for r in rows] == [
        ("full", "100", "1.00×"),
        ("delta", "50", "0.50×"),
        ("full", "300", "1.00×"),
        ("delta", "600", "2.00×"),
    ]
    merged = json.loads((out / "results.json").read_text())
    assert len(merged["records"]) == 4 and len(merged["meta"]["merged"]) == 2


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
    """Node.js, with the generator's packages (installed here if missing:
    the benchmark itself installs nothing)."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed for the load generator")
    try:
        needs.node_packages()
    except needs.Missing:
        subprocess.run(
            [npm, "ci", "--prefix", str(SCRIPTS / "bench"), "--no-audit", "--no-fund"],
            check=True,
            capture_output=True,
            timeout=600,
        )
    needs.node_packages()
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
    # Each update is sent to the 4 clients: 4 snapshots per update, give or
    # take the updates that straddle the window's edges.
    per_update = result["snapshots"] / result["updates_measured"]
    assert 3 < per_update < 5, result
    assert result["stale_snapshots"] == 0


def test_the_generator_marks_the_window_before_its_result(
    node: str, fake_presence: Callable[..., str]
) -> None:
    url = fake_presence()
    events = loadgen(node, "presence", url, clients=2, warmup=0, duration=0.3, grace=0)
    assert list(events) == ["connected", "measure_start", "measure_end", "result"]


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


# ------------------------------------------------------------ the room: deltas

DELTA = "wspractice-delta"


class FakeDeltaRoom:
    """A presence server that speaks wspractice-delta, with a chosen bug.

    Full-map clients get the whole map after every change; delta clients get
    ``{"you", "users"}`` first, then one delta per change. ``forget``: the
    deltas leave out this user's updates (the full maps carry them).
    """

    def __init__(self, forget: str | None = None) -> None:
        self.forget = forget
        self.lock = threading.Lock()
        self.users: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, tuple[ServerConnection, bool]] = {}

    def send_all(self, delta: dict[str, Any] | None) -> None:
        """The full map to full-map clients, ``delta`` to the others (under
        the lock, so that every client gets the changes in one order)."""
        full = json.dumps(self.users, separators=(",", ":"))
        text = json.dumps(delta, separators=(",", ":")) if delta else None
        for connection, is_delta in list(self.connections.values()):
            try:
                if not is_delta:
                    connection.send(full)
                elif text is not None:
                    connection.send(text)
            except ConnectionClosed:
                pass

    def handler(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        name = connection.request.path.split("username=")[-1]
        is_delta = connection.subprotocol == DELTA
        user_id = str(uuid.uuid4())
        with self.lock:
            self.users[user_id] = {"username": name, "state": {}}
            self.send_all({"joined": {user_id: self.users[user_id]}})
            self.connections[user_id] = (connection, is_delta)
            if is_delta:
                first = {"you": user_id, "users": self.users}
                connection.send(json.dumps(first, separators=(",", ":")))
            else:
                connection.send(json.dumps(self.users, separators=(",", ":")))
        try:
            for message in connection:
                with self.lock:
                    self.users[user_id]["state"] = json.loads(message)
                    forgotten = name == self.forget
                    self.send_all(
                        None
                        if forgotten
                        else {"updated": {user_id: json.loads(message)}}
                    )
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                del self.users[user_id]
                del self.connections[user_id]
                self.send_all({"left": [user_id]})


@pytest.fixture
def fake_delta_room() -> Iterator[Callable[..., str]]:
    running: list[tuple[Server, threading.Thread]] = []

    def start(**kwargs: Any) -> str:
        app = FakeDeltaRoom(**kwargs)
        server = serve(
            app.handler,
            "127.0.0.1",
            0,
            compression=None,
            # Only when offered, as wspractice does.
            select_subprotocol=lambda _, offered: DELTA if DELTA in offered else None,
        )
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        running.append((server, thread))
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}"

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(TIMEOUT)


ROOM = {"warmup": 0.3, "duration": 1, "grace": 2, "verify_wait": 5}


def test_a_mixed_room_on_wspractice_ends_with_every_map_right(
    node: str, server: Any
) -> None:
    url = f"ws://127.0.0.1:{server.port}"
    result = loadgen(
        node, "room", url, clients=12, movers=4, delta_movers=2, delta_idle=4, **ROOM
    )["result"]
    assert result["error_count"] == 0, result["errors"]
    full, delta = result["room"]["full"], result["room"]["delta"]
    assert (full["clients"], full["movers"]) == (6, 2)
    assert (delta["clients"], delta["movers"]) == (6, 2)
    for kind in (full, delta):
        assert kind["updates_measured"] >= 2 * 20 * 0.8
        assert kind["updates_lost"] == kind["others_lost"] == 0
        assert kind["latency"]["count"] == kind["updates_measured"]
        # Each mover watches the 3 others.
        assert kind["others_latency"]["count"] == kind["others_measured"] > 0
        assert kind["messages"] > 0 and kind["broken"] == 0
    # Deltas are far smaller than maps of 12 users.
    assert delta["bytes"] / delta["messages"] < full["bytes"] / full["messages"] / 2
    # The run started once every client held the whole room.
    assert result["settle"]["settled"] and result["settle"]["waiting"] == 0
    verify = result["verify"]
    assert verify["server_map_entries"] == 13  # The observer too.
    assert (verify["delta_checked"], verify["delta_mismatches"]) == (6, 0)
    assert (verify["full_checked"], verify["full_unconverged"]) == (6, 0)
    assert verify["delta_unconverged"] == verify["closed"] == 0


def test_a_delta_that_leaves_out_an_update_shows_as_lost_and_as_a_wrong_map(
    node: str, fake_delta_room: Callable[..., str]
) -> None:
    # Movers are spread evenly over the 6 clients: u2 and u5, both on delta.
    url = fake_delta_room(forget="u2")
    result = loadgen(
        node, "room", url, clients=6, movers=2, delta_movers=2, delta_idle=2, **ROOM
    )["result"]
    delta, full = result["room"]["delta"], result["room"]["full"]
    assert (delta["clients"], full["clients"]) == (4, 2)
    # u2 never sees its own updates come back; u5 never sees u2's.
    assert delta["updates_lost"] == delta["updates_measured"] / 2 > 0
    assert delta["others_lost"] > 0
    verify = result["verify"]
    assert verify["delta_mismatches"] == verify["delta_checked"] == 4
    # The full maps carry every update: those clients are right.
    assert (verify["full_checked"], verify["full_unconverged"]) == (2, 0)


def test_a_server_without_the_subprotocol_refuses_delta_clients(
    node: str, fake_presence: Callable[..., str]
) -> None:
    url = fake_presence()  # Selects no subprotocol.
    events = loadgen(node, "room", url, clients=3, delta_movers=3, **ROOM)
    assert events["connected"]["failed"] == 3
    assert "Server sent no subprotocol" in json.dumps(events["result"]["errors"])


# ------------------------------------------------------------ the stalled client


def test_a_stalled_client_is_seen_held_then_dropped(start_server: Any) -> None:
    running = start_server(close_timeout=0.2)
    stalled = StalledClient(running.port)
    try:
        assert stalled.held_by(os.getpid()) is True
        running.stop()
        deadline = time.monotonic() + TIMEOUT
        while stalled.held_by(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stalled.held_by(os.getpid()) is False
    finally:
        stalled.close()


def test_a_stalled_client_refused_by_the_server_is_an_error(start_server: Any) -> None:
    running = start_server(max_connections=1)
    with StalledClient(running.port, "first") as first:
        assert first.held_by(os.getpid()) is True
        with pytest.raises(serverproc.ServerError, match="HTTP 503"):
            StalledClient(running.port, "second")


# ------------------------------------------------------------ whole runs


def benchmark(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, str(SCRIPTS / "benchmark.py"), *argv],
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT,
        cwd=ROOT,
    )


def test_a_quick_run_writes_tables_and_results(node: str, tmp_path: Path) -> None:
    done = benchmark(
        "--quick",
        "--servers",
        "wspractice",
        "--scenarios",
        "echo,presence",
        "--output",
        str(tmp_path),
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
    assert (tmp_path / PLOT).stat().st_size > 0
    assert (tmp_path / "logs" / "echo-wspractice.server.log").exists()


def test_a_quick_run_of_the_big_room_and_of_delta_presence(
    node: str, tmp_path: Path
) -> None:
    done = benchmark(
        "--quick",
        "--servers",
        "wspractice",
        "--scenarios",
        "presence,bigroom",
        "--protocols",
        "full,delta",
        "--room-modes",
        "full,delta",
        "--output",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    for title in ("### Presence broadcast, every client", "### Big room: what the"):
        assert title in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    runs = {
        (r["scenario"], r["params"].get("protocol") or r["params"].get("mode")): r
        for r in results["records"]
    }
    assert set(runs) == {
        ("presence", None),
        ("presence", "delta"),
        ("bigroom", "full"),
        ("bigroom", "delta"),
    }
    for key in (("presence", "delta"), ("bigroom", "delta"), ("bigroom", "full")):
        run = runs[key]
        assert run["latency"]["count"] > 0, key
        assert run["verify"]["delta_mismatches"] == 0, key
    assert runs["bigroom", "delta"]["verify"]["delta_checked"] == 30
    assert runs["bigroom", "full"]["settle"]["settled"] is True
    assert runs["bigroom", "full"]["verify"]["full_checked"] == 30
    assert (tmp_path / DELTA_PLOT).stat().st_size > 0


def test_two_variants_run_side_by_side_with_their_args_and_env(
    node: str, tmp_path: Path
) -> None:
    done = benchmark(
        "--quick",
        "--variant",
        "open",
        "--variant",
        "capped args='--max-connections 2' env=WSPRACTICE_ABLATE=gate,pacing",
        "--scenarios",
        "idle",
        "--idle-connections",
        "4",
        "--servers",
        "wspractice",
        "--output",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    meta = results["meta"]
    assert meta["reference"] == "open"
    assert meta["variants"]["capped"]["args"] == ["--max-connections", "2"]
    assert meta["variants"]["capped"]["env"] == {"WSPRACTICE_ABLATE": "gate,pacing"}
    idle = {r["server"]: r for r in results["records"]}
    # The cap reached the server: it refused the connections beyond it.
    assert (idle["open"]["connected"], idle["open"]["connect_failed"]) == (4, 0)
    assert (idle["capped"]["connected"], idle["capped"]["connect_failed"]) == (2, 2)
    assert idle["capped"]["status"] == "errors"
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[1].startswith("| open ") and rows[2].startswith("| capped ")
    assert "- capped: python -m wspractice from" in done.stdout
    assert "with WSPRACTICE_ABLATE=gate,pacing" in done.stdout
