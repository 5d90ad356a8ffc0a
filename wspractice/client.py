"""``python -m wspractice.client URL``: a small wscat-like WebSocket client.

It connects, prints ``Connected``, sends each line typed (or piped in) as a
text message and prints every message it receives as ``< message``. Lines
that start with ``/`` are commands: ``/ping [DATA]``, ``/close [CODE
[REASON]]`` and ``/help``; ``//text`` sends ``/text``. For scripts,
``-x MESSAGE`` (repeatable) sends messages without reading stdin, and
``--wait SECONDS`` says how long to keep printing before closing. With
``--echo`` it is a test peer instead: every message goes back to the server
as it came (text as text, binary as binary) until the server closes.

Like the server, it runs wsproto over a plain socket, in the three steps of
wsproto's example: read bytes, feed them to wsproto, handle its events. One
thread owns the socket and the wsproto object; another only reads stdin and
hands lines over through a queue, so no lock is needed.

It keeps to RFC 6455 as a client:

* frames that arrive in the same read as the ``101`` response are handled
  at once, not when the next bytes come;
* when the server breaks the protocol, wsproto reports it as a
  ``CloseConnection`` while the connection is still open (its
  ``ParseFailed``). The client then fails the connection itself (section
  7.1.7): it sends a close frame with wsproto's code (1002, or 1007 for
  invalid UTF-8), parses nothing more, waits up to ``--close-timeout`` for
  the server to close TCP, and then closes it;
* a close frame from the server is answered with the same code, and the
  client waits for the server to close TCP first (section 7.1.1), again for
  at most ``--close-timeout``;
* a server that never answers our close frame is dropped after
  ``--close-timeout``.

Exit status: 0 after a clean close that we started or that the server
started with 1000, 1001 or no code; 1 when the connection could not be made, the
handshake was refused, or the connection ended any other way (the server
broke the protocol, a message was too big, no answer to our close); 2 for
bad arguments.
"""

from __future__ import annotations

import argparse
import queue
import selectors
import socket
import ssl
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
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
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from . import __version__

RECV_SIZE = 64 * 1024

#: The characters of an HTTP token (RFC 7230 section 3.2.6).
TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)

#: The largest message the client takes by default, counted across
#: fragments (after inflation with permessage-deflate).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

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


def parse_subprotocol(text: str) -> str:
    # RFC 6455 section 4.1: each subprotocol is a token (RFC 7230).
    if not text or any(c not in TOKEN_CHARS for c in text):
        raise argparse.ArgumentTypeError(
            f"a subprotocol is a token (letters, digits and !#$%&'*+-.^_`|~),"
            f" got {text!r}"
        )
    return text


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


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _paragraphs(*texts: str) -> str:
    """Text for --help, wrapped (RawDescriptionHelpFormatter keeps COMMANDS)."""
    return "\n\n".join(
        textwrap.fill(text, 79, break_on_hyphens=False) for text in texts
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wspractice.client",
        description=_paragraphs(
            "Connect to a WebSocket server, send each line you type as a text"
            " message and print what the server sends (as '< message'). Try:"
            " python -m wspractice.client 'ws://127.0.0.1:8000/?username=Alex'"
            ' and type {"x": 1, "y": 2}.'
        ),
        epilog=COMMANDS
        + "\n\n"
        + _paragraphs(
            "Ctrl-D (end of input) or Ctrl-C closes the connection with 1000.",
            "wss:// checks the server's certificate against the system's CA"
            " store (or the file named by the SSL_CERT_FILE environment"
            " variable); for a private or self-signed certificate give its CA"
            " with --ca, or skip the check with --insecure.",
            "Exit status: 0 after a clean close, 1 if the connection failed, was"
            " refused or ended abnormally (also when the server broke the"
            " protocol and the client closed with 1002 or 1007), 2 for bad"
            " arguments.",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url", type=parse_url, metavar="URL", help="ws://HOST:PORT/PATH?QUERY"
    )
    parser.add_argument(
        "--version", action="version", version=f"wspractice {__version__}"
    )
    mode = parser.add_argument_group("what to send")
    mode.add_argument(
        "-x",
        "--execute",
        action="append",
        default=[],
        metavar="MESSAGE",
        help="send MESSAGE after connecting (repeatable), then wait --wait"
        " seconds and close, without reading stdin; sent as is, never a command",
    )
    mode.add_argument(
        "-w",
        "--wait",
        type=non_negative_seconds,
        default=1.0,
        metavar="SECONDS",
        help="after the -x messages or the end of stdin, keep printing what"
        " arrives for this long before closing (default: 1)",
    )
    mode.add_argument(
        "--echo",
        action="store_true",
        help="a test peer: send every message back as it came (text as text,"
        " binary as binary), answer pings, and stay until the server closes;"
        " stdin is not read",
    )
    mode.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="do not print the messages and pongs received; only the"
        " Connected and Disconnected lines and errors",
    )
    handshake = parser.add_argument_group("the handshake")
    handshake.add_argument(
        "-H",
        "--header",
        action="append",
        type=parse_header,
        default=[],
        dest="headers",
        metavar="'NAME: VALUE'",
        help="add a header to the handshake request (repeatable)",
    )
    handshake.add_argument(
        "-o",
        "--origin",
        help="send this Origin header, as a browser page from that origin would",
    )
    handshake.add_argument(
        "--compression",
        action="store_true",
        help="offer permessage-deflate (RFC 7692); 'Connected' says whether the"
        " server took it",
    )
    handshake.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        type=parse_subprotocol,
        default=[],
        dest="subprotocols",
        metavar="NAME",
        help="offer this subprotocol in Sec-WebSocket-Protocol (repeatable, in"
        " order of preference), e.g. wspractice-delta for changes-only updates;"
        " 'Connected' names the one the server selected",
    )
    tls = parser.add_argument_group("wss://")
    tls.add_argument(
        "--ca",
        metavar="FILE",
        help="trust the CA certificates in this PEM file (and only those) to"
        " check the server's certificate, e.g. a private or self-signed one",
    )
    tls.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not check the server's certificate or host name at all"
        " (encrypted, but anyone in the middle can read it)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--timeout",
        type=non_negative_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait to connect and for the handshake (default: 10)",
    )
    limits.add_argument(
        "--close-timeout",
        type=non_negative_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the server to answer our close frame, and"
        " then to close the TCP connection, as it should first (default: 5)",
    )
    limits.add_argument(
        "--max-message-size",
        type=positive_int,
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metavar="BYTES",
        help="largest message to take, counted across fragments; a bigger one"
        f" is closed with 1009 (default: {DEFAULT_MAX_MESSAGE_SIZE})",
    )
    return parser


def tls_context(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> ssl.SSLContext | None:
    """The TLS settings for a wss:// URL; a usage error for bad ones."""
    if not args.url.secure:
        if args.ca or args.insecure:
            parser.error("--ca and --insecure are for wss:// URLs only")
        return None
    if args.ca and args.insecure:
        parser.error("--ca and --insecure do not go together")
    if args.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if args.ca:
        try:
            return ssl.create_default_context(cafile=args.ca)
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                parser.error(f"--ca {args.ca}: no PEM certificate in it ({exc})")
            parser.error(f"--ca {args.ca}: {exc.strerror or exc}")
    return ssl.create_default_context()


# ---------------------------------------------------------------- the client


def describe_close(code: int, reason: str) -> str:
    return f'Disconnected (code: {code}, reason: "{reason}")'


@dataclass(frozen=True)
class Settings:
    """How the client behaves once connected (from the command line)."""

    timeout: float = 10.0
    close_timeout: float = 5.0
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    echo: bool = False
    quiet: bool = False
    compression: bool = False
    #: Subprotocols to offer in ``Sec-WebSocket-Protocol``, in order of
    #: preference (e.g. ``wspractice-delta`` for changes-only updates).
    subprotocols: tuple[str, ...] = ()


class Client:
    """One connection: the handshake, then the read-feed-handle loop."""

    def __init__(
        self,
        target: Target,
        out: TextIO,
        settings: Settings | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.target = target
        self.out = out
        self.settings = settings or Settings()
        self.ssl_context = ssl_context
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock: socket.socket | None = None
        #: Whether permessage-deflate was negotiated.
        self.compressed = False
        #: The subprotocol the server selected, if any.
        self.subprotocol: str | None = None
        self._text: list[str] = []
        self._bytes: list[bytes] = []
        self._message_size = 0
        #: True once we sent a close frame because the user asked for it.
        self.we_closed = False
        #: True once we closed because of the server (too big a message):
        #: what arrives after is dropped, and the exit status is 1.
        self._closed_on_error = False
        #: Set when the connection is over: the exit status.
        self.result: int | None = None
        #: Until when we wait for the closing handshake, then for TCP EOF.
        self.close_deadline: float | None = None
        #: True once the server closed TCP.
        self._eof = False
        #: True once a send failed: the connection is gone.
        self._send_failed = False

    def done(self) -> bool:
        """Whether the connection is over (``result`` is set)."""
        return self.result is not None

    def print(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def show(self, line: str) -> None:
        """Print what the server sent, unless --quiet."""
        if not self.settings.quiet:
            self.print(line)

    # ------------------------------------------------------------ connect

    def connect(self, headers: Sequence[tuple[str, str]]) -> None:
        target = self.target
        try:
            sock = socket.create_connection(
                (target.host, target.port), timeout=self.settings.timeout
            )
        except OSError as exc:
            raise ClientError(
                f"cannot connect to {target.host_header}: {exc.strerror or exc}"
            ) from None
        if target.secure:
            context = self.ssl_context or ssl.create_default_context()
            try:
                sock = context.wrap_socket(sock, server_hostname=target.host)
            except ssl.SSLCertVerificationError as exc:
                sock.close()
                raise ClientError(
                    f"cannot connect to {target.host_header}: the server's"
                    f" certificate is not trusted: {exc.verify_message};"
                    " give its CA with --ca FILE, or skip the check with --insecure"
                ) from None
            except OSError as exc:
                sock.close()
                raise ClientError(
                    f"cannot connect to {target.host_header}: {exc.strerror or exc}"
                ) from None
        self.sock = sock
        request = Request(
            host=target.host_header,
            target=target.resource,
            extensions=[PerMessageDeflate()] if self.settings.compression else [],
            subprotocols=list(self.settings.subprotocols),
            extra_headers=[
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in headers
            ],
        )
        self._send(self.ws.send(request))
        accepted = self._handshake()
        self.subprotocol = accepted.subprotocol
        self.compressed = any(
            isinstance(extension, PerMessageDeflate)
            for extension in accepted.extensions
        )

    def _handshake(self) -> AcceptConnection:
        """Read the response to our upgrade request.

        Frames that came in the same read as the 101 stay in wsproto, which
        parses them on the next call to ``events()``: :meth:`handle_events`
        must run at once, before waiting for more bytes.
        """
        deadline = time.monotonic() + self.settings.timeout
        rejected: RejectConnection | None = None
        body = b""
        while True:
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return event
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
        """Send bytes; once connected, a failure ends the connection (1006)."""
        assert self.sock is not None
        if self._eof or self._send_failed:
            return
        try:
            self.sock.sendall(data)
        except OSError as exc:
            if self.ws.state is ConnectionState.CONNECTING:
                raise ClientError(f"cannot send: {exc.strerror or exc}") from None
            # The server is gone (reset, broken pipe): nothing more to say.
            self._send_failed = True
            self.close_deadline = None
            if self.result is None:
                self.print(
                    describe_close(
                        CloseReason.ABNORMAL_CLOSURE,
                        f"cannot send: {exc.strerror or exc}",
                    )
                )
                self.result = 1

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
        """Start the closing handshake (once), as the user asked."""
        if not self.open:
            return
        self.we_closed = True
        self._send_close(code, reason)

    def _send_close(self, code: int, reason: str) -> None:
        """Send a close frame, then wait --close-timeout for the server."""
        self._send(self.ws.send(CloseConnection(code=code, reason=reason)))
        if not self._send_failed:
            self.close_deadline = time.monotonic() + self.settings.close_timeout

    # ------------------------------------------------------------ receiving

    def tls_pending(self) -> bool:
        """Whether decrypted bytes wait in the TLS object (select cannot tell)."""
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def receive(self) -> None:
        """Read once from the socket and handle what wsproto makes of it."""
        data = self._recv()
        while self.tls_pending():
            assert self.sock is not None
            data += self.sock.recv(RECV_SIZE)
        if not data:
            self._eof = True
            self.print(
                describe_close(
                    CloseReason.ABNORMAL_CLOSURE,
                    "the connection was lost without a close frame",
                )
            )
            self.result = 1
            return
        # With permessage-deflate, wsproto inflates what it is fed in one go;
        # slices keep a compressed bomb near the size limit before it is seen.
        step = len(data)
        if self.compressed:
            step = max(1024, self.settings.max_message_size // 1024)
        for start in range(0, len(data), step):
            self.ws.receive_data(data[start : start + step])
            self.handle_events()
            if self.result is not None:
                return

    def handle_events(self) -> None:
        """Handle the events wsproto has parsed, until the connection ends."""
        for event in self.ws.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self._data(event)
            elif isinstance(event, Ping):
                if self.open:
                    self._send(self.ws.send(event.response()))
            elif isinstance(event, Pong):
                payload = event.payload.decode("utf-8", "replace")
                self.show(f"< pong: {payload}" if payload else "< pong")
            elif isinstance(event, CloseConnection):
                if self.ws.state in (
                    ConnectionState.OPEN,
                    ConnectionState.LOCAL_CLOSING,
                ):
                    self._fail(event)  # wsproto's ParseFailed, not a close frame.
                else:
                    self._closed(event)
            if self.result is not None:
                return  # Whatever follows is not parsed.

    def _data(self, event: TextMessage | BytesMessage) -> None:
        if self._closed_on_error:
            return  # Dropped: we have closed the connection.
        data = event.data
        if isinstance(data, str) and not data.isascii():
            self._message_size += len(data.encode("utf-8", "surrogatepass"))
        else:
            self._message_size += len(data)
        limit = self.settings.max_message_size
        if self._message_size > limit:
            self._text.clear()
            self._bytes.clear()
            self._closed_on_error = True
            reason = f"message is larger than {limit} bytes"
            print(f"error: {reason}; closing with 1009", file=sys.stderr)
            if self.open:
                self._send_close(CloseReason.MESSAGE_TOO_BIG, reason)
            return
        if isinstance(event, TextMessage):
            self._text.append(event.data)
        else:
            self._bytes.append(bytes(event.data))
        if not event.message_finished:
            return
        self._message_size = 0
        if isinstance(event, TextMessage):
            text = "".join(self._text)
            self._text.clear()
            self.show("< " + text)
            if self.settings.echo and self.open:
                self._send(self.ws.send(TextMessage(data=text)))
        else:
            message = b"".join(self._bytes)
            self._bytes.clear()
            if not self.settings.quiet:
                shown = message[:64].hex(" ") + (" ..." if len(message) > 64 else "")
                self.print(f"< binary ({len(message)} bytes): {shown}")
            if self.settings.echo and self.open:
                self._send(self.ws.send(BytesMessage(data=message)))

    def _fail(self, event: CloseConnection) -> None:
        """The server broke the protocol: fail the connection (RFC 6455 7.1.7).

        wsproto cannot parse anything after the error, the server's answer
        to our close frame included, so the rest of the stream is only read
        and dropped until the server closes TCP or --close-timeout passes.
        """
        reason = event.reason or ""
        error = f"error: the server broke the protocol: {reason}"
        self.result = 1
        if self.open:
            print(f"{error} (closing with {event.code})", file=sys.stderr)
            self.print(describe_close(event.code, reason))
            self._send_close(event.code, reason)
        else:  # We had sent our close frame already.
            print(error, file=sys.stderr)
            self.print(describe_close(CloseReason.ABNORMAL_CLOSURE, reason))

    def _closed(self, event: CloseConnection) -> None:
        """A close frame from the server: its own, or its answer to ours."""
        self.print(describe_close(event.code, event.reason or ""))
        if self._closed_on_error:
            self.result = 1
        elif self.we_closed or event.code in (
            CloseReason.NORMAL_CLOSURE,
            CloseReason.GOING_AWAY,
            CloseReason.NO_STATUS_RCVD,  # A close frame without a code.
        ):
            self.result = 0
        else:
            self.result = 1
        if self.ws.state is ConnectionState.REMOTE_CLOSING:
            # Answer with the same code; then the server closes TCP first
            # (RFC 6455 7.1.1), within --close-timeout.
            self._send_close(event.code, event.reason or "")

    def check_close_deadline(self) -> None:
        """Give up on a server that does not answer our close frame."""
        if (
            self.result is None
            and self.close_deadline is not None
            and time.monotonic() >= self.close_deadline
        ):
            self.print(
                describe_close(
                    CloseReason.ABNORMAL_CLOSURE,
                    "the server did not answer our close frame",
                )
            )
            self.result = 1

    def shutdown(self) -> None:
        """Close TCP once the server has (RFC 6455 7.1.1), or at the deadline.

        Whatever arrives meanwhile is dropped: the closing handshake is over,
        or wsproto could not parse it anyway.
        """
        if self.sock is None:
            return
        if self.close_deadline is not None and not (self._eof or self._send_failed):
            try:
                while self._recv(self.close_deadline):
                    pass
            except ClientError:
                pass  # The deadline passed.
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


def run(
    args: argparse.Namespace, out: TextIO, ssl_context: ssl.SSLContext | None = None
) -> int:
    settings = Settings(
        timeout=args.timeout,
        close_timeout=args.close_timeout,
        max_message_size=args.max_message_size,
        echo=args.echo,
        quiet=args.quiet,
        compression=args.compression,
        subprotocols=tuple(args.subprotocols),
    )
    client = Client(args.url, out, settings, ssl_context)
    headers: list[tuple[str, str]] = list(args.headers)
    if args.origin:
        headers.append(("Origin", args.origin))
    client.connect(headers)
    assert client.sock is not None
    interactive = not args.execute and not args.echo and sys.stdin.isatty()
    connected = "Connected"
    if client.compressed:
        connected += " with permessage-deflate"
    if client.subprotocol is not None:
        connected += f" (subprotocol: {client.subprotocol})"
    if interactive:
        connected += " (type a message and press Enter; /help for commands)"
    client.print(connected)

    wake_r, wake_w = socket.socketpair()
    selector = selectors.DefaultSelector()
    selector.register(client.sock, selectors.EVENT_READ, "socket")
    selector.register(wake_r, selectors.EVENT_READ, "stdin")
    lines: queue.Queue[str | None] = queue.Queue()
    #: When to close by ourselves: --wait after the last message was sent.
    close_at: float | None = None

    try:
        # Frames that came with the 101 are waiting in wsproto already, and
        # with TLS perhaps more in the TLS object, where select cannot see.
        client.handle_events()
        if client.tls_pending() and not client.done():
            client.receive()
        if args.echo:
            pass  # Only the server's messages, until it closes.
        elif args.execute:
            for message in args.execute:
                client.send_text(message)
            close_at = time.monotonic() + args.wait
        else:
            threading.Thread(
                target=_read_stdin, args=(lines, wake_w), daemon=True
            ).start()
        while not client.done():
            try:
                deadlines = [client.close_deadline]
                if client.open:
                    deadlines.append(close_at)
                due = min((d for d in deadlines if d is not None), default=None)
                timeout = None if due is None else max(0.0, due - time.monotonic())
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
                    if client.done():
                        break
                if close_at is not None and time.monotonic() >= close_at:
                    client.close()
                client.check_close_deadline()
            except KeyboardInterrupt:
                if not client.open:
                    client.close_deadline = None  # A second Ctrl-C: stop waiting.
                    return 1
                client.close()
    finally:
        client.shutdown()
        selector.close()
        wake_r.close()
        wake_w.close()
    assert client.result is not None
    return client.result


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.echo and args.execute:
        parser.error("--echo and -x do not go together: --echo sends only echoes")
    context = tls_context(parser, args)
    try:
        return run(args, sys.stdout, context)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
