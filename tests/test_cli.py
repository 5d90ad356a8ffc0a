"""The command line, including Ctrl-C and SIGTERM on a real process."""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from wspractice.cli import build_parser, main

from .clients import join, recv_json
from .conftest import TIMEOUT
from .rawws import RawClient

STARTUP = re.compile(
    r"^WebSocket server is running on port (\d+):"
    r" (ws://127\.0\.0\.1:\1/\?username=Alex)"
    r" - demo page: (http://127\.0\.0\.1:\1/)$"
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


def test_keyfile_without_certfile_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyfile = tmp_path / "key.pem"
    keyfile.write_text("not used")
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--keyfile", str(keyfile)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error: --keyfile needs --certfile" in err
    assert "cannot serve wss://" in err


@pytest.mark.parametrize("missing", ["--certfile", "--keyfile"])
def test_a_missing_certificate_file_is_named(
    missing: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    present = tmp_path / "present.pem"
    present.write_text("never parsed: the missing file is found first")
    gone = tmp_path / "missing.pem"
    files = {"--certfile": present, "--keyfile": present, missing: gone}
    argv = ["--port", "0"]
    for flag, path in files.items():
        argv += [flag, str(path)]
    assert main(argv) == 1
    assert f"cannot read {missing} {gone}: No such file or directory" in caplog.text
    assert "None" not in caplog.text


def test_log_config_problems_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = tmp_path / "logging.ini"
    assert main(["--port", "0", "--log-config", str(gone)]) == 1
    assert f"cannot read --log-config {gone}: No such file or directory" in caplog.text
    broken = tmp_path / "logging.json"
    broken.write_text('{"version": 1, "handlers": {"h": {"class": "nowhere.Nope"}}}')
    assert main(["--port", "0", "--log-config", str(broken)]) == 1
    assert f"--log-config {broken}: ValueError: Unable to configure handler" in (
        caplog.text
    )


Server = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start_process() -> Iterator[Server]:
    """Start ``python -m wspractice --port 0 ARGS...``; all are killed after."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wspractice", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.fixture
def process(start_process: Server) -> subprocess.Popen[str]:
    return start_process()


def startup_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().rstrip("\n")


def started_url(proc: subprocess.Popen[str]) -> str:
    line = startup_line(proc)
    match = STARTUP.match(line)
    assert match, line
    return match.group(2)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, then the process's whole stderr once it has exited with 0."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return err


def test_the_startup_line_gives_the_demo_page_which_serves_it(
    process: subprocess.Popen[str],
) -> None:
    line = startup_line(process)
    match = STARTUP.match(line)
    assert match, line
    with urllib.request.urlopen(match.group(3), timeout=TIMEOUT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")


def test_with_tls_the_startup_line_says_wss_and_https(
    start_process: Server, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile = tmp_path / "cert.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    line = startup_line(start_process("--certfile", str(certfile)))
    match = re.match(
        r"^WebSocket server is running on port (\d+):"
        r" wss://127\.0\.0\.1:\1/\?username=Alex - demo page:"
        r" (https://127\.0\.0\.1:\1/)$",
        line,
    )
    assert match, line
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with urllib.request.urlopen(
        match.group(2), timeout=TIMEOUT, context=context
    ) as response:
        assert response.status == 200


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


class StderrLines:
    """A process's stderr, read line by line in a thread while it runs."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.stream = proc.stderr
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.stream:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, text: str) -> None:
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(text in line for line in self.lines), timeout=TIMEOUT
            )
        assert found, f"{text!r} not in {self.lines}"

    def all(self) -> str:
        self.thread.join(TIMEOUT)
        with self.changed:
            return "".join(self.lines)


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM)],
    ids=["SIGINT twice", "SIGTERM twice"],
)
def test_a_second_signal_while_closing_stops_at_once_without_a_traceback(
    start_process: Server, signals: tuple[int, int]
) -> None:
    # The client never answers the close frame, so the server would wait
    # --close-timeout for it: far longer than the test waits.
    proc = start_process("--close-timeout", str(100 * TIMEOUT))
    port = int(STARTUP.match(startup_line(proc)).group(1))  # type: ignore[union-attr]
    stderr = StderrLines(proc)
    with RawClient(port) as silent:
        silent.handshake()
        silent.read_frame()  # The snapshot: the server has the user.
        proc.send_signal(signals[0])
        stderr.wait_for("closing 1 connection(s) with 1001")
        proc.send_signal(signals[1])
        proc.wait(TIMEOUT)
        err = stderr.all()
    assert proc.returncode == -signals[1], err
    name = signal.Signals(signals[1]).name
    assert f"{name} again: stopping now, without waiting" in err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err


def visit(proc: subprocess.Popen[str]) -> None:
    """A page load and a user who joins and leaves."""
    url = started_url(proc)
    page = url.replace("ws://", "http://").split("?")[0]
    with urllib.request.urlopen(page, timeout=TIMEOUT) as response:
        assert response.status == 200
    with join(url) as alex:
        recv_json(alex)


@pytest.mark.parametrize("flag", [[], ["--access-log"], ["--no-access-log"]])
def test_the_access_log_can_be_switched_off(
    start_process: Server, flag: list[str]
) -> None:
    proc = start_process(*flag)
    visit(proc)
    err = stop(proc)
    assert "Alex connected" in err
    logged = '"GET / HTTP/1.1" 200' in err
    assert logged == (flag != ["--no-access-log"]), err


LOG_FORMAT = "CONFIGURED %(name)s %(levelname)s %(message)s"


def json_log_config(logfile: Path) -> str:
    return json.dumps(
        {
            "version": 1,
            "formatters": {"plain": {"format": LOG_FORMAT}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(logfile),
                    "formatter": "plain",
                }
            },
            "root": {"level": "INFO", "handlers": ["file"]},
        }
    )


def ini_log_config(logfile: Path) -> str:
    return f"""\
[loggers]
keys = root

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = file

[handler_file]
class = FileHandler
args = ({str(logfile)!r},)
formatter = plain

[formatter_plain]
format = {LOG_FORMAT}
"""


@pytest.mark.parametrize(
    ("name", "make"),
    [("logging.json", json_log_config), ("logging.ini", ini_log_config)],
    ids=["json", "ini"],
)
def test_log_config_file_configures_every_logger(
    start_process: Server, tmp_path: Path, name: str, make: Callable[[Path], str]
) -> None:
    logfile = tmp_path / "server.log"
    config = tmp_path / name
    config.write_text(make(logfile))
    proc = start_process("--log-config", str(config))
    visit(proc)
    err = stop(proc)
    assert "Alex connected" not in err  # Not the default stderr handler.
    logged = logfile.read_text()
    assert re.search(r"^CONFIGURED wspractice\.\S+ INFO Alex connected$", logged, re.M)
    assert re.search(
        r'^CONFIGURED wspractice\.access INFO 127\.0\.0\.1 "GET / HTTP/1\.1" 200',
        logged,
        re.M,
    )
    assert "CONFIGURED wspractice INFO stopped" in logged


def test_log_level_and_no_access_log_apply_over_a_log_config(
    start_process: Server, tmp_path: Path
) -> None:
    logfile = tmp_path / "server.log"
    config = tmp_path / "logging.json"
    config.write_text(json_log_config(logfile))
    proc = start_process(
        "--log-config", str(config), "--log-level", "debug", "--no-access-log"
    )
    visit(proc)
    stop(proc)
    logged = logfile.read_text()
    assert "Alex connected" in logged
    assert re.search(r"^CONFIGURED wspractice\.\S+ DEBUG ", logged, re.M), logged
    assert "wspractice.access" not in logged
