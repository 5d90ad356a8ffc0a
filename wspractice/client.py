"""``python -m wspractice.client URL``: a small wscat-like WebSocket client.

It connects, prints ``Connected``, sends each line typed (or piped in) as a
text message and prints every message it receives as ``< message``. Lines
that start with ``/`` are commands: ``/ping [DATA]``, ``/close [CODE
[REASON]]`` and ``/help``; ``//text`` sends ``/text``. For scripts,
``-x MESSAGE`` (repeatable) sends messages without reading stdin, and
``--wait SECONDS`` says how long to keep printing before closing.

Like the server, it runs wsproto over a plain socket, in the three steps of
wsproto's example: read bytes, feed them to wsproto, handle its events. One
thread owns the socket and the wsproto object; another only reads stdin and
hands lines over through a queue, so no lock is needed.

Exit status: 0 after a clean close that we started or that the server
started with 1000 or 1001; 1 when the connection could not be made, the
handshake was refused, or the connection ended any other way; 2 for bad
arguments.
"""

from __future__ import annotations

import argparse
import queue
import selectors
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from wsproto import WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

RECV_SIZE = 64 * 1024

#: Close codes a client may send (RFC 6455 section 7.4; 1005, 1006 and 1015
#: are never sent, 1004 and 1016-2999 are reserved).
SENDABLE_CODES = (range(1000, 1004), range(1007, 1015), range(3000, 5000))

COMMANDS = """\
commands:
  /ping [DATA]             send a ping; the server answers with a pong
  /close [CODE [REASON]]   close the connection (default 1000)
  /help                    this help
  //TEXT                   send /TEXT (a message that starts with /)
anything else is sent as one text message"""


class ClientError(Exception):
    """Ends the client with exit status 1 and this message on stderr."""


# ---------------------------------------------------------------- arguments


@dataclass(frozen=True)
class Target:
    """Where to connect, from a ws:// or wss:// URL."""

    secure: bool
    host: str
    port: int
    #: The request target: path and query, e.g. ``/?username=Alex``.
    resource: str
    #: The Host header: the host, and the port unless it is the default.
    host_header: str


def parse_url(url: str) -> Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise argparse.ArgumentTypeError(
            f"the URL must start with ws:// or wss://, got {url!r}"
        )
    try:
        port = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {url!r}") from None
    if not parts.hostname:
        raise argparse.ArgumentTypeError(f"no host in {url!r}")
    secure = parts.scheme == "wss"
    default_port = 443 if secure else 80
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != default_port:
        shown = f"{shown}:{port}"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(secure, host, port or default_port, resource, shown)


def parse_header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or name != name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', got {text!r}")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(
            f"a header must be Latin-1 text, got {text!r}"
        ) from None
    return name, value.strip()


def non_negative_seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wspractice.client",
        description=(
            "Connect to a WebSocket server, send each line you type as a"
            " text message and print what the server sends (as '< message')."
            " Try: python -m wspractice.client"
            ' \'ws://127.0.0.1:8000/?username=Alex\' and type {"x": 1, "y": 2}.'
        ),
        epilog=COMMANDS
        + "\n\nCtrl-D (end of input) or Ctrl-C closes the connection with 1000."
        " Exit status: 0 after a clean close, 1 if the connection failed, was"
        " refused or ended abnormally, 2 for bad arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url", type=parse_url, metavar="URL", help="ws://HOST:PORT/PATH?QUERY"
    )
    parser.add_argument(
        "-x",
        "--execute",
        action="append",
        default=[],
        metavar="MESSAGE",
        help="send MESSAGE after connecting (repeatable), then wait --wait"
        " seconds and close, without reading stdin; sent as is, never a command",
    )
    parser.add_argument(
        "-w",
        "--wait",
        type=non_negative_seconds,
        default=1.0,
        metavar="SECONDS",
        help="after the -x messages or the end of stdin, keep printing what"
        " arrives for this long before closing (default: 1)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        type=parse_header,
        default=[],
        dest="headers",
        metavar="'NAME: VALUE'",
        help="add a header to the handshake request (repeatable)",
    )
    parser.add_argument(
        "-o",
        "--origin",
        help="send this Origin header, as a browser page from that origin would",
    )
    parser.add_argument(
        "--timeout",
        type=non_negative_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait to connect, for the handshake, and for the"
        " server to answer our close (default: 10)",
    )
    return parser


# ---------------------------------------------------------------- the client


def describe_close(code: int, reason: str) -> str:
    return f'Disconnected (code: {code}, reason: "{reason}")'


class Client:
    """One connection: the handshake, then the read-feed-handle loop."""

    def __init__(self, target: Target, out: TextIO, timeout: float) -> None:
        self.target = target
        self.out = out
        self.timeout = timeout
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock: socket.socket | None = None
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        #: True once we sent a close frame first.
        self.we_closed = False
        #: Set when the connection is over: (exit status, what to print).
        self.result: int | None = None
        self._close_deadline: float | None = None

    def print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # ------------------------------------------------------------ connect

    def connect(self, headers: Sequence[tuple[str, str]]) -> None:
        target = self.target
        try:
            sock = socket.create_connection(
                (target.host, target.port), timeout=self.timeout
            )
            if target.secure:
                context = ssl.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=target.host)
        except OSError as exc:
            raise ClientError(
                f"cannot connect to {target.host_header}: {exc.strerror or exc}"
            ) from None
        self.sock = sock
        request = Request(
            host=target.host_header,
            target=target.resource,
            extra_headers=[
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in headers
            ],
        )
        self._send(self.ws.send(request))
        self._handshake()

    def _handshake(self) -> None:
        deadline = time.monotonic() + self.timeout
        rejected: RejectConnection | None = None
        body = b""
        while True:
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    rejected = event
                    if not event.has_body:
                        self._refused(event, body)
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished and rejected is not None:
                        self._refused(rejected, body)
            data = self._recv(deadline)
            try:
                self.ws.receive_data(data or None)
            except RemoteProtocolError as exc:
                raise ClientError(f"the server's handshake response is bad: {exc}")
            if not data:
                if rejected is not None:
                    self._refused(rejected, body)
                raise ClientError(
                    "the server closed the connection during the handshake"
                )

    def _refused(self, event: RejectConnection, body: bytes) -> None:
        try:
            phrase = " " + HTTPStatus(event.status_code).phrase
        except ValueError:
            phrase = ""
        message = (
            "the server refused the WebSocket handshake:"
            f" HTTP {event.status_code}{phrase}"
        )
        text = body.decode("utf-8", "replace").strip()
        if text:
            message += "\n" + text
        raise ClientError(message)

    # ------------------------------------------------------------ I/O

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientError(f"cannot send: {exc.strerror or exc}") from None

    def _recv(self, deadline: float | None = None) -> bytes:
        assert self.sock is not None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClientError("timed out waiting for the server")
            self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            raise ClientError("timed out waiting for the server") from None
        except OSError:
            return b""  # Reset by the peer: the same as an end of stream.
        finally:
            self.sock.settimeout(None)
        return data

    # ------------------------------------------------------------ sending

    @property
    def open(self) -> bool:
        return self.ws.state is ConnectionState.OPEN

    def send_text(self, text: str) -> None:
        if self.open:
            self._send(self.ws.send(TextMessage(data=text)))

    def command(self, line: str) -> None:
        """A line typed by the user: a command, or a message to send."""
        if line.startswith("//"):
            self.send_text(line[1:])
            return
        if not line.startswith("/"):
            self.send_text(line)
            return
        name, _, rest = line.partition(" ")
        if name == "/ping":
            if self.open:
                self._send(self.ws.send(Ping(payload=rest.encode("utf-8"))))
        elif name == "/close":
            code_text, _, reason = rest.strip().partition(" ")
            try:
                code = int(code_text) if code_text else CloseReason.NORMAL_CLOSURE
            except ValueError:
                code = -1
            if not any(code in codes for codes in SENDABLE_CODES):
                print(
                    f"/close: the code must be 1000-1003, 1007-1014 or"
                    f" 3000-4999, got {code_text!r}",
                    file=sys.stderr,
                )
            elif len(reason.encode("utf-8")) > 123:
                print("/close: the reason is longer than 123 bytes", file=sys.stderr)
            else:
                self.close(code, reason)
        elif name == "/help":
            self.print(COMMANDS)
        else:
            print(f"unknown command {name}; /help lists them", file=sys.stderr)

    def close(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake (once)."""
        if not self.open:
            return
        self.we_closed = True
        self._send(self.ws.send(CloseConnection(code=code, reason=reason)))
        self._close_deadline = time.monotonic() + self.timeout

    # ------------------------------------------------------------ receiving

    def receive(self) -> None:
        """Read once from the socket and handle what wsproto makes of it."""
        data = self._recv()
        if isinstance(self.sock, ssl.SSLSocket):
            while self.sock.pending():  # Decrypted bytes select cannot see.
                data += self.sock.recv(RECV_SIZE)
        self.ws.receive_data(data or None)
        self._handle_events()
        if not data and self.result is None:
            self.print(
                describe_close(
                    CloseReason.ABNORMAL_CLOSURE,
                    "the connection was lost without a close frame",
                )
            )
            self.result = 1

    def _handle_events(self) -> None:
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.print("< " + "".join(self._text))
                    self._text.clear()
            elif isinstance(event, BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    data = b"".join(self._bytes)
                    self._bytes.clear()
                    shown = data[:64].hex(" ") + (" ..." if len(data) > 64 else "")
                    self.print(f"< binary ({len(data)} bytes): {shown}")
            elif isinstance(event, Ping):
                self._send(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                payload = event.payload.decode("utf-8", "replace")
                self.print(f"< pong: {payload}" if payload else "< pong")
            elif isinstance(event, CloseConnection):
                self._closed(event)

    def _closed(self, event: CloseConnection) -> None:
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            self._send(self.ws.send(event.response()))  # Answer the server.
        self.print(describe_close(event.code, event.reason or ""))
        if self.we_closed or event.code in (
            CloseReason.NORMAL_CLOSURE,
            CloseReason.GOING_AWAY,
        ):
            self.result = 0
        else:
            self.result = 1

    def check_close_deadline(self) -> None:
        if self._close_deadline is not None and time.monotonic() > self._close_deadline:
            self.print(
                describe_close(
                    CloseReason.ABNORMAL_CLOSURE,
                    "the server did not answer our close frame",
                )
            )
            self.result = 1

    def shutdown(self) -> None:
        """Close TCP once the server has (RFC 6455 7.1.1), or after a while."""
        if self.sock is None:
            return
        deadline = time.monotonic() + min(self.timeout, 2.0)
        try:
            while self._recv(deadline):
                pass
        except ClientError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- the loop


def _read_stdin(lines: queue.Queue[str | None], wake: socket.socket) -> None:
    """Hand every line of stdin to the main thread; None at the end."""
    try:
        for line in sys.stdin:
            lines.put(line.rstrip("\r\n"))
            wake.send(b"\0")
        lines.put(None)
        wake.send(b"\0")
    except OSError:  # The connection is over and the wake-up socket closed.
        pass


def run(args: argparse.Namespace, out: TextIO) -> int:
    client = Client(args.url, out, args.timeout)
    headers: list[tuple[str, str]] = list(args.headers)
    if args.origin:
        headers.append(("Origin", args.origin))
    client.connect(headers)
    assert client.sock is not None
    interactive = not args.execute and sys.stdin.isatty()
    client.print(
        "Connected (type a message and press Enter; /help for commands)"
        if interactive
        else "Connected"
    )

    wake_r, wake_w = socket.socketpair()
    selector = selectors.DefaultSelector()
    selector.register(client.sock, selectors.EVENT_READ, "socket")
    selector.register(wake_r, selectors.EVENT_READ, "stdin")
    lines: queue.Queue[str | None] = queue.Queue()
    #: When to close by ourselves: --wait after the last message was sent.
    close_at: float | None = None
    if args.execute:
        for message in args.execute:
            client.send_text(message)
        close_at = time.monotonic() + args.wait
    else:
        threading.Thread(target=_read_stdin, args=(lines, wake_w), daemon=True).start()

    try:
        while client.result is None:
            try:
                timeout = None
                if close_at is not None and client.open:
                    timeout = max(0.0, close_at - time.monotonic())
                elif not client.open:
                    timeout = 0.1  # Check the close deadline now and then.
                for key, _ in selector.select(timeout):
                    if key.data == "socket":
                        client.receive()
                    else:
                        wake_r.recv(4096)
                        while not lines.empty():
                            line = lines.get()
                            if line is None:
                                close_at = time.monotonic() + args.wait
                            else:
                                client.command(line)
                if close_at is not None and time.monotonic() >= close_at:
                    client.close()
                client.check_close_deadline()
            except KeyboardInterrupt:
                if not client.open:
                    return 1  # A second Ctrl-C: stop waiting for the server.
                client.close()
    finally:
        client.shutdown()
        selector.close()
        wake_r.close()
        wake_w.close()
    assert client.result is not None
    return client.result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, sys.stdout)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
