"""``python -m wspractice``: the command line.

The only place that configures logging and signals. :func:`main` takes its
arguments as a list, so tests call it directly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from . import __version__
from .config import DEFAULT_MAX_MESSAGE_SIZE, Options
from .server import WebSocketServer

logger = logging.getLogger("wspractice")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {text}")
    return value


def seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="wspractice",
        description=(
            "A live-presence WebSocket server: every user connected to"
            " ws://HOST:PORT/?username=NAME sends its state as a JSON object"
            " and receives everyone's state. ws://HOST:PORT/echo echoes"
            " every message."
        ),
        epilog="Stop it with Ctrl-C or SIGTERM: open WebSockets are closed with 1001.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"wspractice {__version__}"
    )
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host",
        default=defaults.host,
        help="address to listen on; 0.0.0.0 or :: listens on every interface",
    )
    net.add_argument(
        "--port",
        type=port_number,
        default=defaults.port,
        help="port to listen on; 0 picks a free port (the startup line says which)",
    )
    proto = parser.add_argument_group("protocol")
    proto.add_argument(
        "--max-message-size",
        type=positive_int,
        metavar="BYTES",
        default=DEFAULT_MAX_MESSAGE_SIZE,
        help="largest message either endpoint accepts, counted across"
        " fragments; a bigger one is closed with 1009",
    )
    proto.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=defaults.compression,
        help="negotiate permessage-deflate (RFC 7692) with clients that offer it",
    )
    proto.add_argument(
        "--close-timeout",
        type=seconds,
        metavar="SECONDS",
        default=defaults.close_timeout,
        help="how long to wait for a client to answer our close frame",
    )
    proto.add_argument(
        "--send-timeout",
        type=seconds,
        metavar="SECONDS",
        default=defaults.send_timeout,
        help="drop a client that takes no data for this long",
    )
    app = parser.add_argument_group("presence app")
    app.add_argument(
        "--max-bad-messages",
        type=non_negative_int,
        metavar="N",
        default=defaults.max_bad_messages,
        help="close with 1008 after N bad messages in a row (0: never)",
    )
    app.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        dest="allowed_origins",
        default=[],
        help="also accept WebSockets from this Origin, e.g. https://example.com"
        " (repeatable; '*' allows every origin). Always allowed: no Origin,"
        " the same origin, and loopback origins on any port",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="debug also logs every state update",
    )
    out.add_argument(
        "--trace",
        action="store_true",
        help="log the raw handshake, how Sec-WebSocket-Accept is computed, and"
        " every frame both ways (opcode, FIN, RSV, mask, length, a preview)",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        host=args.host,
        port=args.port,
        max_message_size=args.max_message_size,
        compression=args.compression,
        close_timeout=args.close_timeout,
        send_timeout=args.send_timeout,
        max_bad_messages=args.max_bad_messages,
        allowed_origins=tuple(args.allowed_origins),
        trace=args.trace,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr
    )
    options = options_from_args(args)
    if options.trace:  # Trace lines are INFO, whatever --log-level says.
        logging.getLogger("wspractice.trace").setLevel(logging.INFO)
    try:
        server = WebSocketServer(options)
    except OSError as exc:
        logger.error("cannot listen on %s port %s: %s", options.host, options.port, exc)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"WebSocket server is running on port {server.port}: {server.url()}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("shutting down")
    finally:
        server.close_sessions()
        server.server_close()
    logger.info("stopped")
    return 0
