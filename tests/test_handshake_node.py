"""The same raw handshakes sent to the Node tutorial's server and to wspractice.

docs/handshake.md shows, byte for byte, what each server answers to five
requests: a good upgrade, no username, a bad key, a wrong version and a
plain GET. These tests send the same bytes to both servers and check the
status lines, headers and bodies the page shows, and that the page still
shows them, so that it stays true when either side changes.

The Node side is ``scripts/bench/peers/tutorial.js``, the tutorial's server
(``http.createServer()`` + ws's ``WebSocketServer({ server })`` + uuid), run
with the ``ws`` and ``uuid`` of ``tests/node`` (``npm ci`` there, which
``scripts/test.sh`` does).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from wspractice import __version__

from .conftest import TIMEOUT, RunningServer

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "node"
TUTORIAL_JS = ROOT / "scripts" / "bench" / "peers" / "tutorial.js"
HANDSHAKE_MD = ROOT / "docs" / "handshake.md"

#: RFC 6455's own example key, so both servers' accept values can be checked
#: against the RFC's answer.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

UPGRADE = "Upgrade: websocket\r\nConnection: Upgrade\r\n"

#: name -> the request, with PORT standing for the server's port.
REQUESTS = {
    "good upgrade": (
        "GET /?username=Alex HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n"
        + UPGRADE
        + f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ),
    "no username": (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n"
        + UPGRADE
        + f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ),
    "bad key": (
        "GET /?username=Alex HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n"
        + UPGRADE
        + "Sec-WebSocket-Key: hello\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ),
    "wrong version": (
        "GET /?username=Alex HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n"
        + UPGRADE
        + f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 12\r\n\r\n"
    ),
    "plain GET": "GET /?username=Alex HTTP/1.1\r\nHost: 127.0.0.1:PORT\r\n\r\n",
}

NODE_101 = (
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    f"Sec-WebSocket-Accept: {ACCEPT}\r\n"
    "\r\n"
)

#: What the Node tutorial answers, byte for byte (no Date: nothing varies).
NODE_ANSWERS = {
    "good upgrade": NODE_101,
    "no username": NODE_101,
    "bad key": (
        "HTTP/1.1 400 Bad Request\r\n"
        "Connection: close\r\n"
        "Content-Type: text/html\r\n"
        "Content-Length: 43\r\n"
        "\r\n"
        "Missing or invalid Sec-WebSocket-Key header"
    ),
    "wrong version": (
        "HTTP/1.1 400 Bad Request\r\n"
        "Connection: close\r\n"
        "Content-Type: text/html\r\n"
        "Content-Length: 47\r\n"
        "Sec-WebSocket-Version: 13, 8\r\n"
        "\r\n"
        "Missing or invalid Sec-WebSocket-Version header"
    ),
}

DATE = "Date: <the time of the response>"
SERVER = f"Server: wspractice/{__version__}"


def refusal(status: str, body: str, *extra: str) -> str:
    """wspractice's plain-text refusal, with ``extra`` headers."""
    lines = [
        f"HTTP/1.1 {status}",
        SERVER,
        DATE,
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body.encode())}",
        *extra,
        "Connection: close",
    ]
    return "\r\n".join(lines) + "\r\n\r\n" + body


INDEX_HTML = resources.files("wspractice").joinpath("static/index.html").read_bytes()

#: What wspractice answers, with its Date replaced by DATE.
WSPRACTICE_ANSWERS = {
    "good upgrade": (
        "HTTP/1.1 101 Switching Protocols\r\n"
        f"{SERVER}\r\n"
        f"{DATE}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ACCEPT}\r\n"
        "\r\n"
    ),
    "no username": refusal(
        "400 Bad Request", "username is required: add ?username=NAME to the URL\n"
    ),
    "bad key": refusal(
        "400 Bad Request",
        "Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters)\n",
    ),
    "wrong version": refusal(
        "426 Upgrade Required",
        "unsupported Sec-WebSocket-Version '12'; this server speaks 13\n",
        "Sec-WebSocket-Version: 13",
    ),
    "plain GET": (
        "HTTP/1.1 200 OK\r\n"
        f"{SERVER}\r\n"
        f"{DATE}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(INDEX_HTML)}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "Content-Security-Policy: default-src 'none'; script-src 'self';"
        " style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none';"
        " form-action 'self'; frame-ancestors 'none'\r\n"
        "Referrer-Policy: no-referrer\r\n"
        "Cache-Control: no-cache\r\n"
        "\r\n"
    ),
}

#: An IMF-fixdate (RFC 9110 section 5.6.7), as http.server writes it.
IMF_DATE = re.compile(
    r"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
    r"|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT"
)


# ---------------------------------------------------------------- talking


@dataclass
class Answer:
    head: str  # status line and headers, each ending with CR LF, and the empty line
    body: bytes  # Content-Length bytes, if the head has Content-Length
    rest: bytes  # what came after: frames, after a 101


def ask(port: int, name: str) -> tuple[socket.socket, Answer]:
    """Send request ``name``; read the head and the body it announces."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(REQUESTS[name].replace("PORT", str(port)).encode("ascii"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    match = re.search(rb"\r\nContent-Length: (\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection before the whole body"
        rest += chunk
    answer = Answer(
        (head + b"\r\n\r\n").decode("latin-1"), rest[:length], rest[length:]
    )
    return sock, answer


def normalized(answer: Answer) -> str:
    """The head and body as text, with wspractice's Date replaced by DATE."""
    head, count = IMF_DATE.subn(DATE, answer.head)
    assert count <= 1, answer.head
    return head + answer.body.decode("utf-8")


def read_frame(sock: socket.socket, data: bytes) -> tuple[int, bytes]:
    """The first frame of ``data`` and what follows on ``sock``: opcode, payload."""

    def need(n: int) -> None:
        nonlocal data
        while len(data) < n:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed before a whole frame"
            data += chunk

    need(2)
    length, offset = data[1] & 0x7F, 2
    if length == 126:
        need(4)
        length, offset = struct.unpack("!H", data[2:4])[0], 4
    assert length < 127 and not data[1] & 0x80, data[:2]
    need(offset + length)
    return data[0] & 0x0F, data[offset : offset + length]


def masked_close() -> bytes:
    """A client's close frame: code 1000, masked with the key 00 00 00 00."""
    return bytes([0x88, 0x82, 0, 0, 0, 0]) + struct.pack("!H", 1000)


# ---------------------------------------------------------------- Node


class NodeServer:
    """The tutorial's server in a Node process, and what it printed."""

    def __init__(self, node: str) -> None:
        env = dict(os.environ, NODE_PATH=str(NODE_DIR / "node_modules"))
        self.process = subprocess.Popen(
            [node, str(TUTORIAL_JS), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        match = re.fullmatch(r"WebSocket server is running on port (\d+)\n", first)
        assert match, first
        self.port = int(match.group(1))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, line: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while line not in self.lines:
            assert time.monotonic() < deadline, (line, self.lines)
            time.sleep(0.01)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(TIMEOUT)
        self._reader.join(TIMEOUT)


@pytest.fixture(scope="module")
def node_server() -> Iterator[NodeServer]:
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("Node.js (node on PATH)")
    for package in ("ws", "uuid"):
        if not (NODE_DIR / "node_modules" / package).is_dir():
            missing.append(f"tests/node/node_modules/{package} (npm ci in tests/node)")
    if node is None or missing:
        message = "missing: " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = NodeServer(node)
    yield server
    server.stop()


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", sorted(NODE_ANSWERS))
def test_node_tutorial_answers(node_server: NodeServer, name: str) -> None:
    sock, answer = ask(node_server.port, name)
    with sock:
        assert normalized(answer) == NODE_ANSWERS[name]
        if answer.head.startswith("HTTP/1.1 101"):
            # The tutorial sends nothing on a join: the first frame we get is
            # the answer to our own close.
            sock.sendall(masked_close())
            opcode, payload = read_frame(sock, answer.rest)
            assert (opcode, payload) == (0x8, struct.pack("!H", 1000))


def test_node_tutorial_accepts_a_missing_username(node_server: NodeServer) -> None:
    sock, answer = ask(node_server.port, "no username")
    with sock:
        assert answer.head.startswith("HTTP/1.1 101 ")
        node_server.wait_for_line("undefined connected")


def test_node_tutorial_never_answers_a_plain_get(node_server: NodeServer) -> None:
    with socket.create_connection(("127.0.0.1", node_server.port)) as plain:
        request = REQUESTS["plain GET"].replace("PORT", str(node_server.port))
        plain.sendall(request.encode("ascii"))
        # A whole handshake on another connection, sent after the GET...
        sock, answer = ask(node_server.port, "good upgrade")
        sock.close()
        assert answer.head == NODE_101
        # ... and still not a byte for the GET: nothing handles 'request'.
        plain.settimeout(TIMEOUT / 5)
        with pytest.raises(socket.timeout):
            plain.recv(1)


@pytest.mark.parametrize("name", sorted(WSPRACTICE_ANSWERS))
def test_wspractice_answers(server: RunningServer, name: str) -> None:
    sock, answer = ask(server.port, name)
    with sock:
        assert IMF_DATE.search(answer.head), answer.head
        if name == "plain GET":  # The head as shown, then the demo page.
            assert normalized(Answer(answer.head, b"", b"")) == WSPRACTICE_ANSWERS[name]
            assert answer.body == INDEX_HTML
            return
        assert normalized(answer) == WSPRACTICE_ANSWERS[name]
        if name == "good upgrade":
            # wspractice sends the join snapshot at once.
            opcode, payload = read_frame(sock, answer.rest)
            assert opcode == 0x1
            assert re.fullmatch(
                rb'\{"[0-9a-f-]{36}":\{"username":"Alex","state":\{\}\}\}', payload
            ), payload


# ---------------------------------------------------------------- the page


def doc_text() -> str:
    text = HANDSHAKE_MD.read_text(encoding="utf-8")
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    return re.sub(r"Date: [A-Z][a-z][a-z], [^\n]* GMT", DATE, text)


def as_shown(text: str) -> str:
    """How handshake.md shows bytes: one line per CR LF, in a text block."""
    return "```text\n" + text.replace("\r\n", "\n").rstrip("\n") + "\n```"


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_handshake_md_shows_the_requests(name: str) -> None:
    assert as_shown(REQUESTS[name]) in doc_text()


@pytest.mark.parametrize("name", sorted(NODE_ANSWERS))
def test_handshake_md_shows_node_answers(name: str) -> None:
    assert as_shown(NODE_ANSWERS[name]) in doc_text()


@pytest.mark.parametrize("name", sorted(WSPRACTICE_ANSWERS))
def test_handshake_md_shows_wspractice_answers(name: str) -> None:
    assert as_shown(WSPRACTICE_ANSWERS[name]) in doc_text()
