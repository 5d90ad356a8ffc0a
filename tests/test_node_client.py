"""Node's ``ws``, the tutorial's own library, as a client of wspractice.

``scripts/test.sh`` installs it into ``tests/node/node_modules`` when Node.js
is on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import TIMEOUT, RunningServer

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture
def node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ws").is_dir():
        message = "Node.js and tests/node/node_modules/ws (bash scripts/test.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"missing: {message}")
        pytest.skip(f"missing: {message}")
    return node


def test_tutorial_ws_client_moves_and_gets_an_error_reply(
    server: RunningServer, node: str
) -> None:
    # The tutorial's URL form: no slash between the port and the query.
    url = f"ws://127.0.0.1:{server.port}?username=Node"
    result = subprocess.run(
        [node, "tutorial_client.js", url],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (result.returncode, result.stderr) == (0, "")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 3, events
    ((uuid, user),) = events[0]["snapshot"].items()
    assert len(uuid) == 36
    assert user == {"username": "Node", "state": {"x": 412, "y": 230}}
    error = "message is not valid JSON: Expecting value: line 1 column 1 (char 0)"
    assert events[1:] == [{"error": error}, {"close": [1000, "done"]}]
