"""scripts/soak.py, run briefly so that it cannot rot."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import RunningServer
from .rawws import OP_BINARY, frame

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "scripts" / "soak.py"


def test_soak_help_explains_the_run() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--duration", "--walkers", "--rate", "--connect-rate", "--kinds"):
        assert option in result.stdout
    assert "Arguments after -- go to the server" in result.stdout
    assert "stalled readers" in result.stdout  # The whole description.


#: Checks that hold however busy the machine is.
ALWAYS = (
    "no snapshot out of order",
    "every snapshot valid",
    "threads back to the baseline",
    "fds back to the baseline",
    "no ERROR or traceback in the server log",
    "clean shutdown (exit 0)",
)
#: Checks that a starved load generator can fail on its own (its requests
#: arrive after the handshake deadline, its walkers miss the keepalive
#: window): required only when the report says the generator kept up.
WHEN_IT_KEPT_UP = (
    "no update lost",
    "walkers connected until the shutdown closed them with 1001",
    "every hostile client saw an expected outcome",
)


def test_a_short_soak_passes_its_checks() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--duration",
            "5",
            "--walkers",
            "3",
            "--connect-rate",
            "20",
            "--progress",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    report = result.stdout
    explain = report + result.stderr[-3000:]
    assert result.returncode in (0, 1), explain
    checks = {
        line[8:]: line[2:6]
        for line in report.splitlines()
        if line.startswith(("  PASS  ", "  FAIL  "))
    }
    for name in ALWAYS:
        assert checks.get(name) == "PASS", f"{name}\n{explain}"
    if checks.get("the load generator kept up (event-loop lag under 1 s)") == "PASS":
        for name in WHEN_IT_KEPT_UP:
            assert checks.get(name) == "PASS", f"{name}\n{explain}"
    assert ("result: PASS" in report) == (result.returncode == 0)
    for kind in ("normal", "reset", "oversize", "garbage_http", "bad_json", "bulky"):
        assert f"\n  {kind} " in report
    assert "\n  crowd " in report
    assert "the server allows at most 16 connections per address" in report
    assert "[soak] t=" in result.stderr  # Progress goes to stderr.


# ------------------------------------------------------------ its parts

SCRIPTS = ROOT / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from soaktest.hostile import EXPECTED, HostileMix, expected, loopback  # noqa: E402
from soaktest.rawclient import Raw  # noqa: E402
from soaktest.server import ServerLog  # noqa: E402

from wspractice.cli import build_parser as server_parser  # noqa: E402


def test_unknown_kinds_are_refused() -> None:
    result = subprocess.run(
        [sys.executable, str(SOAK), "--kinds", "normal,teleport"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "unknown kinds: teleport" in result.stderr


def test_every_kind_says_what_it_may_see() -> None:
    assert set(EXPECTED) == set(HostileMix.KINDS)
    assert expected("binary", "close 1003")
    assert not expected("binary", "close 1000")
    # A server that closes may reset a client slower than --close-timeout...
    assert expected("binary", "reset by server")
    # ...but a client the server should never close must not be reset.
    assert not expected("normal", "reset by server")


def test_the_server_log_is_counted_by_level() -> None:
    text = "\n".join(
        [
            "WebSocket server is running on port 1: ws://127.0.0.1:1",
            "2026-12-01 20:41:00,001 WARNING wspractice: slow client",
            "2026-12-01 20:41:00,002 ERROR wspractice: oops",
            "Traceback (most recent call last):",
            '  File "x.py", line 1',
            "2026-12-01 20:41:00,003 WARNING wspractice: again",
        ]
    )
    found = ServerLog.read(text)
    assert found.levels == {"WARNING": 2, "ERROR": 1, "Traceback": 1}
    assert found.errors == ["2026-12-01 20:41:00,002 ERROR wspractice: oops"]
    assert found.bad == 2


def test_a_raw_client_reads_the_servers_close(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_message_size=1024)

    async def binary_then_oversize() -> list[str]:
        seen = []
        for payload in (b"\x00\x01", b"x" * 2000):
            client = await Raw.open(server.port)
            try:
                await client.handshake("/?username=raw")
                await client.send(frame(OP_BINARY, payload))
                seen.append(await client.until_close())
            finally:
                client.close()
        return seen

    assert asyncio.run(binary_then_oversize()) == ["close 1003", "close 1009"]


def hostile_mix(server: RunningServer, *argv: str) -> HostileMix:
    """The hostile clients against ``server``, which runs with ``argv``."""
    options = server_parser().parse_args(list(argv))
    return HostileMix(server.port, options, stop_at=0.0)


def test_a_crowd_from_one_address_is_refused_beyond_the_limit_alone(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_connections_per_address=4)
    mix = hostile_mix(server, "--max-connections-per-address", "4")

    async def crowd_and_a_neighbour() -> tuple[str, str]:
        crowd = await mix.crowd()  # 8 from one address: 4 accepted, 4 refused.
        # Another client, from an address of its own, is still welcome.
        return crowd, await mix.normal()

    assert asyncio.run(crowd_and_a_neighbour()) == (
        "accepted up to the limit, the rest 429",
        "close 1000",
    )
    assert expected("crowd", "accepted up to the limit, the rest 429")
    assert not expected("crowd", "101 x8 (limit 4)")


def test_every_client_has_an_address_of_its_own_and_each_crowd_one() -> None:
    mix = HostileMix(1, server_parser().parse_args([]), stop_at=0.0)
    addresses = {mix.address() for _ in range(1000)}
    assert len(addresses) == 1000
    assert all(
        a.startswith("127.1.") and not a.endswith((".0", ".255")) for a in addresses
    )
    assert loopback(2, 0) != loopback(2, 1)


def test_bulky_states_get_error_replies_then_1008_after_too_many(
    start_server: Callable[..., RunningServer],
) -> None:
    server = start_server(max_state_size=100, max_bad_messages=3)
    mix = hostile_mix(server, "--max-state-size", "100", "--max-bad-messages", "3")

    async def bulky() -> list[str]:
        return [await mix.bulky(count) for count in (1, 2, 3)]

    assert asyncio.run(bulky()) == [
        "error replies, then our close 1000",
        "error replies, then our close 1000",
        "error replies, then 1008",
    ]
