"""The command line, including Ctrl-C and SIGTERM on a real process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from wspractice.cli import build_parser, main

from .clients import join, recv_json
from .conftest import TIMEOUT

STARTUP = re.compile(
    r"^WebSocket server is running on port (\d+):"
    r" (ws://127\.0\.0\.1:\1/\?username=Alex)$"
)


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for action in build_parser()._actions:
        for flag in action.option_strings:
            assert flag in out
        if action.option_strings and action.dest not in ("help", "version"):
            assert action.help, f"{action.option_strings} has no help"
    assert "Ctrl-C" in out


@pytest.mark.parametrize(
    "argv",
    [["--port", "70000"], ["--max-message-size", "0"], ["--log-level", "loud"]],
)
def test_bad_arguments_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.fixture
def process() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wspractice", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def started_url(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().rstrip("\n")
    match = STARTUP.match(line)
    assert match, line
    return match.group(2)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_closes_websockets_with_1001_and_exits_0(
    process: subprocess.Popen[str], signum: int
) -> None:
    url = started_url(process)
    with join(url) as alex:
        recv_json(alex)
        process.send_signal(signum)
        with pytest.raises(ConnectionClosed):
            while True:
                alex.recv(timeout=TIMEOUT)
    assert (alex.close_code, alex.close_reason) == (1001, "server shutting down")
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert "Alex connected" in err
    assert "Alex disconnected" in err
    assert "closing 1 connection(s) with 1001" in err


def test_port_in_use_is_a_clear_error(process: subprocess.Popen[str]) -> None:
    url = started_url(process)
    port = url.split(":")[2].split("/")[0]
    result = subprocess.run(
        [sys.executable, "-m", "wspractice", "--port", port],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr
