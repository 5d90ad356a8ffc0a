"""scripts/conformance.py: the runs it selects, its gate, and the Docker path.

Docker does not run here, so the ``--runner docker`` path is checked in two
ways: the spec files and ``docker run`` command lines it builds, against the
image's documented usage; and its whole flow (spec, container, one client
process per case, reports) with a stand-in ``docker`` command that runs the
same ``wstest`` from the local installation of the suite (skipped when the
suite is not installed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(
    os.environ.get("AUTOBAHN_VENV", Path.home() / ".cache" / "wsp-autobahn-venv")
)
WSTEST = VENV / "env" / "bin" / "wstest"


def _load() -> Any:
    path = ROOT / "scripts" / "conformance.py"
    spec = importlib.util.spec_from_file_location("conformance", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["conformance"] = module
    spec.loader.exec_module(module)
    return module


conformance = _load()
RUNS = conformance.RUNS


# ---------------------------------------------------------------- selection


def names(runs: list[Any]) -> list[str]:
    return [run.name for run in runs]


def test_all_four_runs_by_default_in_report_order() -> None:
    runs = conformance.select_runs(["all"], fast=False)
    assert names(runs) == ["plain", "deflate", "client", "client-deflate"]
    assert [(r.side, r.compression, r.cases) for r in runs] == [
        ("server", False, "*"),
        ("server", True, "12.*,13.*"),
        ("client", False, "*"),
        ("client", True, "12.*,13.*"),
    ]


def test_runs_by_name_and_group_without_repeats() -> None:
    runs = conformance.select_runs(["client-deflate,server", "plain"], fast=False)
    assert names(runs) == ["client-deflate", "plain", "deflate"]


def test_fast_leaves_out_9_from_the_runs_of_all_cases() -> None:
    runs = conformance.select_runs(["all"], fast=True)
    assert [r.excludes for r in runs] == ["9.*", "", "9.*", ""]


def test_an_unknown_run_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        conformance.main(["--run", "plain,bogus"])
    assert exit_info.value.code == 2
    assert "unknown run 'bogus'" in capsys.readouterr().err


def test_the_client_runs_use_the_echo_client() -> None:
    assert RUNS["client"].client_command() == [
        sys.executable,
        "-m",
        "wspractice.client",
        "--echo",
        "--quiet",
        "{url}",
    ]
    assert RUNS["client-deflate"].client_command()[-2:] == ["--compression", "{url}"]


def test_the_local_client_run_goes_through_fuzzingserver_py(tmp_path: Path) -> None:
    runner = conformance.LocalRunner(Path("/tools"))
    command = runner.client_command(RUNS["client-deflate"], tmp_path)
    assert command[:2] == [sys.executable, "/tools/fuzzingserver.py"]
    assert command[2:] == [
        "-c",
        "12.*,13.*",
        "--require-compression",
        "--agent",
        "wspractice",
        "--case-timeout",
        "480",
        "-o",
        str(tmp_path),
        "--",
        *RUNS["client-deflate"].client_command(),
    ]


# ---------------------------------------------------------------- the gate


def report(**cases: tuple[str, str]) -> dict[str, Any]:
    return {
        "wspractice": {
            case_id.replace("_", "."): {"behavior": b, "behaviorClose": c}
            for case_id, (b, c) in cases.items()
        }
    }


def judged(run: Any, index: dict[str, Any], expected: int) -> Any:
    result = conformance.Result(run, expected=expected)
    conformance.judge(result, index)
    return result


def test_ok_and_informational_pass() -> None:
    result = judged(
        RUNS["client"],
        report(c1_1_1=("OK", "OK"), c7_1_6=("INFORMATIONAL", "INFORMATIONAL")),
        expected=2,
    )
    assert result.passed
    assert result.informational == ["c7.1.6"]


@pytest.mark.parametrize(
    "outcome",
    [("NON-STRICT", "OK"), ("FAILED", "OK"), ("OK", "WRONG CODE"), ("OK", "UNCLEAN")],
)
def test_anything_else_fails(outcome: tuple[str, str]) -> None:
    result = judged(RUNS["client"], report(c5_1=outcome), expected=1)
    assert not result.passed
    assert result.bad == [f"c5.1 ({outcome[0]}, close {outcome[1]})"]


def test_unimplemented_deflate_passes_only_without_compression() -> None:
    index = {"wspractice": {"12.1.1": {"behavior": "UNIMPLEMENTED"}}}
    index["wspractice"]["12.1.1"]["behaviorClose"] = "OK"
    assert judged(RUNS["client"], index, expected=1).passed
    assert not judged(RUNS["client-deflate"], index, expected=1).passed


def test_a_case_missing_from_the_report_fails() -> None:
    result = judged(RUNS["client"], report(c1_1_1=("OK", "OK")), expected=2)
    assert result.bad == []
    assert not result.passed


# ---------------------------------------------------------------- Docker


def test_docker_server_spec_and_command(tmp_path: Path) -> None:
    runner = conformance.DockerRunner()
    spec = runner.server_spec(RUNS["plain"], "ws://127.0.0.1:8123/echo")
    assert spec == {
        "outdir": "/reports/servers",
        "servers": [{"agent": "wspractice", "url": "ws://127.0.0.1:8123/echo"}],
        "cases": ["*"],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    fast = replace(RUNS["plain"], excludes="9.*")
    assert runner.server_spec(fast, "ws://h/")["exclude-cases"] == ["9.*"]
    path = runner.write_spec(tmp_path, "fuzzingclient.json", spec)
    assert path == tmp_path / "config" / "fuzzingclient.json"
    assert json.loads(path.read_text()) == spec
    assert (tmp_path / "reports").is_dir()
    command = runner.command("fuzzingclient", "fuzzingclient.json", tmp_path, "n1")
    assert command == [
        "docker",
        "run",
        "--rm",
        "--name",
        "n1",
        "--network",
        "host",
        "--volume",
        f"{tmp_path}/config:/config:ro",
        "--volume",
        f"{tmp_path}/reports:/reports",
        "crossbario/autobahn-testsuite",
        "wstest",
        "--mode",
        "fuzzingclient",
        "--spec",
        "/config/fuzzingclient.json",
    ]


def test_docker_client_spec_and_command(tmp_path: Path) -> None:
    runner = conformance.DockerRunner("example/autobahn:1", "podman")
    spec = runner.client_spec(RUNS["client-deflate"], 9001)
    assert spec == {
        "url": "ws://127.0.0.1:9001",
        "outdir": "/reports/clients",
        "cases": ["12.*", "13.*"],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    command = runner.command(
        "fuzzingserver", "fuzzingserver.json", tmp_path, "n2", detach=True
    )
    assert command[:6] == ["podman", "run", "--rm", "--detach", "--name", "n2"]
    assert command[-8:] == [
        "example/autobahn:1",
        "wstest",
        "--mode",
        "fuzzingserver",
        "--spec",
        "/config/fuzzingserver.json",
        "--webport",
        "0",
    ]


def test_docker_missing_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = conformance.main(
        ["--runner", "docker", "--docker", "/nonexistent/docker", "--run", "client"]
    )
    assert code == 2
    assert "/nonexistent/docker is not installed" in capsys.readouterr().err


# A stand-in for `docker run` and `docker stop`: it runs the local wstest
# with the volumes mapped back to host paths, the way the image would.
FAKE_DOCKER = """\
#!{python}
import json, os, signal, subprocess, sys
from pathlib import Path

state = Path({state!r})
args = sys.argv[1:]
if args[0] == "stop":
    pid = int((state / args[1]).read_text())
    os.kill(pid, signal.SIGTERM)
    sys.exit(0)
assert args[0] == "run", args
args = args[1:]
detach, name, volumes = False, None, {{}}
while args[0].startswith("-"):
    flag = args.pop(0)
    if flag == "--rm":
        continue
    if flag == "--detach":
        detach = True
    elif flag == "--name":
        name = args.pop(0)
    elif flag == "--network":
        assert args.pop(0) == "host"
    elif flag == "--volume":
        host, inside = args.pop(0).split(":")[:2]
        volumes[inside] = host
    else:
        sys.exit("unknown flag " + flag)
image, program, *options = args
assert program == "wstest", program
spec = options[options.index("--spec") + 1]
config = json.loads(Path(volumes["/config"], Path(spec).name).read_text())
config["outdir"] = config["outdir"].replace("/reports", volumes["/reports"], 1)
local_spec = Path(volumes["/reports"], "local-spec.json")
local_spec.write_text(json.dumps(config))
options[options.index("--spec") + 1] = str(local_spec)
proc = subprocess.Popen(
    [{wstest!r}, *options],
    cwd=volumes["/reports"],
    stdout=open(Path(volumes["/reports"], "wstest.log"), "w"),
    stderr=subprocess.STDOUT,
)
if detach:
    (state / name).write_text(str(proc.pid))
    sys.exit(0)
sys.exit(proc.wait())
"""


@pytest.fixture
def fake_docker(tmp_path: Path) -> Iterator[str]:
    if not os.access(WSTEST, os.X_OK):
        pytest.skip("the Autobahn TestSuite is not installed (autobahn.sh --setup)")
    state = tmp_path / "containers"
    state.mkdir()
    path = tmp_path / "docker"
    path.write_text(
        FAKE_DOCKER.format(python=sys.executable, state=str(state), wstest=str(WSTEST))
    )
    path.chmod(0o755)
    yield str(path)
    for pidfile in state.iterdir():  # Any container a failed test left.
        subprocess.run([str(path), "stop", pidfile.name])


def test_the_docker_client_run_drives_one_client_per_case(
    fake_docker: str, tmp_path: Path
) -> None:
    runner = conformance.DockerRunner(docker=fake_docker)
    run = replace(RUNS["client"], cases="1.1.1,2.10,5.1")
    result = conformance.execute(runner, run, tmp_path / "out")
    assert result.error == ""
    assert (result.cases, result.expected) == (3, 3)
    assert result.behavior == {"OK": 3} and result.close == {"OK": 3}
    assert result.passed
    log = (tmp_path / "out" / "clients.log").read_text()
    assert log.count("== case ") == 3
    assert "runCase?case=3&agent=wspractice" in log


def test_the_docker_server_run_tests_a_fresh_server(
    fake_docker: str, tmp_path: Path
) -> None:
    runner = conformance.DockerRunner(docker=fake_docker)
    run = replace(RUNS["deflate"], cases="12.1.1,13.1.1")
    result = conformance.execute(runner, run, tmp_path / "out")
    assert result.error == ""
    assert (result.cases, result.behavior, result.close) == (
        2,
        {"OK": 2},
        {"OK": 2},
    )
    assert result.passed


def test_the_printed_result_names_the_command_and_the_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = judged(RUNS["client"], report(c1_1_1=("OK", "OK")), expected=1)
    result.command = "python3 fuzzingserver.py -c '*'"
    result.summary = "result: PASS (0 failed, 0 missing, 1 run)\n"
    conformance.print_result(result)
    assert capsys.readouterr().out == textwrap.dedent("""\
        == client: client, without compression (--echo) ==
        command:       python3 fuzzingserver.py -c '*'
        result: PASS (0 failed, 0 missing, 1 run)
        -- the gate (every case OK or INFORMATIONAL) --
        cases:         1 in the report / 1 selected
        behavior:      OK=1
        behaviorClose: OK=1
        informational: none
        wall time:     0 s
        result:        PASS

        """)


def test_the_local_server_run_counts_cases_and_cpu(tmp_path: Path) -> None:
    tools = conformance.DEFAULT_TOOLS
    if not (tools / "autobahn.sh").exists() or not os.access(WSTEST, os.X_OK):
        pytest.skip("the Autobahn runners or the suite are not installed here")
    runner = conformance.LocalRunner(tools)
    run = replace(RUNS["plain"], cases="1.1.1,2.1,12.1.1")
    result = conformance.execute(runner, run, tmp_path / "out")
    assert result.error == ""
    assert (result.cases, result.expected) == (3, 3)
    assert result.behavior == {"OK": 2, "UNIMPLEMENTED": 1}
    assert result.passed
    assert "result: PASS" in result.summary  # The runner's own summary.
    assert set(result.cpu) == {"suite", "server"}
    assert all(cpu > 0 for cpu in result.cpu.values())
