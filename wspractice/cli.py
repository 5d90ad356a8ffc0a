"""``python -m wspractice``: the command line.

The only place that configures logging and signals. :func:`main` takes its
arguments as a list, so tests call it directly.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import signal
import ssl
import sys
import threading
from types import FrameType

from . import __version__
from .config import DEFAULT_MAX_MESSAGE_SIZE, REDIS_PREFIX, Options, check_redis_url
from .server import Server

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


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
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


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def milliseconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(
            f"must be between 0 and 60000 milliseconds, got {text}"
        )
    return value


def redis_url(text: str) -> str:
    try:
        check_redis_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def redis_prefix(text: str) -> str:
    if not REDIS_PREFIX.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"must be 1 to 64 letters, digits or _.:-, got {text!r}"
        )
    return text


def presence_seconds(text: str) -> float:
    value = float(text)
    if not 0.5 <= value <= 3600:
        raise argparse.ArgumentTypeError(
            f"must be between 0.5 and 3600 seconds, got {text}"
        )
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
    net.add_argument(
        "--certfile",
        metavar="PEM",
        help="certificate chain (PEM): serve wss:// and https:// instead of ws://",
    )
    net.add_argument(
        "--keyfile",
        metavar="PEM",
        help="private key (PEM), if not in --certfile",
    )
    net.add_argument(
        "--max-connections",
        type=positive_int,
        metavar="N",
        default=defaults.max_connections,
        help="refuse new WebSockets with 503 beyond N open ones",
    )
    net.add_argument(
        "--handshake-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=defaults.handshake_timeout,
        help="drop a client that has not sent a whole request (TLS handshake,"
        " request line and headers) within this time",
    )
    net.add_argument(
        "--max-header-size",
        type=positive_int,
        metavar="BYTES",
        default=defaults.max_header_size,
        help="largest request line plus headers; larger requests get 431",
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
        "--ping-interval",
        type=seconds,
        metavar="SECONDS",
        default=defaults.ping_interval,
        help="ping a client after this long without hearing from it (0: never)",
    )
    proto.add_argument(
        "--ping-timeout",
        type=positive_seconds,
        metavar="SECONDS",
        default=defaults.ping_timeout,
        help="close with 1011 when a ping gets no pong within this time",
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
        "--broadcast-interval",
        type=milliseconds,
        metavar="MS",
        default=defaults.broadcast_interval,
        help="send at most one snapshot per MS milliseconds, carrying every"
        " change made in between; 0 sends one snapshot per message, as the Node"
        " tutorial does",
    )
    app.add_argument(
        "--broadcast-bandwidth",
        type=non_negative_float,
        metavar="MBPS",
        default=defaults.broadcast_bandwidth,
        help="coalesced snapshots send at most MBPS megabytes a second, all"
        " connections together, so that big rooms joining at once still take"
        " in their users' messages (0: no cap)",
    )
    app.add_argument(
        "--max-bad-messages",
        type=non_negative_int,
        metavar="N",
        default=defaults.max_bad_messages,
        help="close with 1008 after N bad messages in a row (0: never)",
    )
    app.add_argument(
        "--rate-limit",
        type=non_negative_float,
        metavar="MSGS",
        default=defaults.rate_limit,
        help="messages a second a client may send on average; messages over"
        " the limit are dropped and persistent excess closes with 1008"
        " (0: no limit)",
    )
    app.add_argument(
        "--rate-burst",
        type=positive_int,
        metavar="N",
        default=defaults.rate_burst,
        help="messages a client may send at once before --rate-limit applies",
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
    room = parser.add_argument_group(
        "one room, several processes (docs/scaling.md)",
        "Every process started with the same --redis and --redis-prefix serves"
        " one room. Needs the redis package: pip install 'wspractice[redis]'.",
    )
    room.add_argument(
        "--redis",
        type=redis_url,
        metavar="URL",
        help="share the room through this Redis: redis://[:PASSWORD@]HOST[:PORT][/DB]"
        " or rediss:// for TLS (the password is never logged)",
    )
    room.add_argument(
        "--redis-prefix",
        type=redis_prefix,
        metavar="PREFIX",
        default=defaults.redis_prefix,
        help="start of every Redis key and channel name: one room per prefix",
    )
    room.add_argument(
        "--presence-timeout",
        type=presence_seconds,
        metavar="SECONDS",
        default=defaults.presence_timeout,
        help="users of a process that vanished (killed, machine lost) leave"
        " everyone's view within this time; a process that stops normally"
        " removes its users at once",
    )
    room.add_argument(
        "--redis-interval",
        type=milliseconds,
        metavar="MS",
        default=defaults.redis_interval,
        help="publish this process's changes at most every MS milliseconds,"
        " merged (0: once per broadcast round)",
    )
    room.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        default=1,
        help="run N server processes on the port (SO_REUSEPORT), sharing the"
        " room through --redis; a worker that dies is restarted",
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


#: Speed mechanisms to turn off, for the benchmark's ablation (comma-separated;
#: see wspractice/fanout.py). Not a command-line option: it is not for users.
ABLATE_VARIABLE = "WSPRACTICE_ABLATE"


def options_from_args(args: argparse.Namespace) -> Options:
    ablate = os.environ.get(ABLATE_VARIABLE, "")
    return Options(
        host=args.host,
        port=args.port,
        max_message_size=args.max_message_size,
        compression=args.compression,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        close_timeout=args.close_timeout,
        send_timeout=args.send_timeout,
        broadcast_interval=args.broadcast_interval,
        broadcast_bandwidth=args.broadcast_bandwidth,
        max_bad_messages=args.max_bad_messages,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        max_connections=args.max_connections,
        handshake_timeout=args.handshake_timeout,
        max_header_size=args.max_header_size,
        allowed_origins=tuple(args.allowed_origins),
        certfile=args.certfile,
        keyfile=args.keyfile,
        trace=args.trace,
        redis=args.redis,
        redis_prefix=args.redis_prefix,
        presence_timeout=args.presence_timeout,
        redis_interval=args.redis_interval,
        ablate=tuple(name.strip() for name in ablate.split(",") if name.strip()),
    )


#: Each connection has a thread; its stack is reserved, not used, but a
#: smaller reservation keeps thousands of threads within any address-space
#: limit. 1 MiB leaves room for deeply nested JSON.
THREAD_STACK_SIZE = 1024 * 1024


def prepare_process(options: Options) -> None:
    """Process-wide settings for serving many connections."""
    threading.stack_size(THREAD_STACK_SIZE)
    # One file descriptor per connection: raise the soft limit to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < options.max_connections + 64:
        logger.warning(
            "only %d file descriptors are allowed (ulimit -n): fewer than"
            " --max-connections %d; raise the limit to serve them all",
            soft,
            options.max_connections,
        )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers > 1 and args.redis is None:
        parser.error(
            f"--workers {args.workers} needs --redis URL: each worker is a"
            " separate process with its own users, and only Redis makes them"
            " one room (without it, users on different workers would not see"
            " each other)"
        )
    logging.basicConfig(
        level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr
    )
    options = options_from_args(args)
    prepare_process(options)
    if options.trace:  # Trace lines are INFO, whatever --log-level says.
        logging.getLogger("wspractice.trace").setLevel(logging.INFO)
    if args.workers > 1:
        from .workers import run_workers

        return run_workers(options, args.workers)
    try:
        server = Server(options)
    except RuntimeError as exc:  # --redis without the redis package
        logger.error("%s", exc)
        return 1
    except ssl.SSLError as exc:
        logger.error("cannot use the certificate or key: %s", exc)
        return 1
    except FileNotFoundError as exc:
        logger.error("cannot read %s: %s", exc.filename, exc.strerror)
        return 1
    except OSError as exc:
        logger.error("cannot listen on %s port %s: %s", options.host, options.port, exc)
        return 1
    # Also SIGINT: a server started in the background by a script inherits
    # an ignored SIGINT, and Ctrl-C or `kill -INT` must still stop it.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    print(
        f"WebSocket server is running on port {server.port}: {server.url()}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("shutting down")
    finally:
        server.close_connections()
        server.server_close()
    logger.info("stopped")
    return 0
