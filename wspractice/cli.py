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
from .config import DEFAULT_MAX_MESSAGE_SIZE, Options, check_allowed_host
from .forwarded import FORWARDED_HEADERS, TrustedProxies
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


def allowed_host(text: str) -> str:
    try:
        check_allowed_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None
    return text


def proxy_addresses(text: str) -> list[str]:
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    try:
        TrustedProxies.parse(entries)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return entries


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
        "--max-connections-per-address",
        type=non_negative_int,
        metavar="N",
        default=defaults.max_connections_per_address,
        help="refuse new WebSockets from one client address with 429 beyond N"
        " open ones (0: no limit); behind a proxy every client has the"
        " proxy's address, so raise it or set 0 there",
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
        help="largest request head: a longer request line gets 414, a request"
        " line and headers longer together get 431",
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
        "--max-state-size",
        type=positive_int,
        metavar="BYTES",
        default=defaults.max_state_size,
        help="largest state a user may set, in bytes of compact JSON; a larger"
        " one gets an error reply and the old state stays",
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
        help="log each upgrade request's line and headers as http.server parsed"
        " them, the 101 response as sent, how Sec-WebSocket-Accept is computed,"
        " and every frame both ways (opcode, FIN, RSV, mask, length, a preview)",
    )
    names = parser.add_argument_group(
        "host names and proxies (docs/deployment.md)",
        "Requests for the demo page and WebSocket upgrades must name the server"
        " in Host: an IP address, localhost, the machine's own name when it"
        " listens beyond loopback, or an --allowed-host name. Others get 403,"
        " which stops DNS rebinding.",
    )
    names.add_argument(
        "--allowed-host",
        action="append",
        type=allowed_host,
        metavar="NAME",
        dest="allowed_hosts",
        default=[],
        help="also answer to this name in Host, e.g. the public name behind a"
        " proxy (repeatable; .example.com: the domain and its subdomains;"
        " '*': any name)",
    )
    names.add_argument(
        "--forwarded-allow-ips",
        action="append",
        type=proxy_addresses,
        metavar="IPS",
        dest="forwarded_allow_ips",
        default=[],
        help="comma-separated addresses or networks of reverse proxies (e.g."
        " 127.0.0.1,10.0.0.0/8; '*': any peer) whose --forwarded-header gives"
        " the client's address for logs and per-address limits; none by"
        " default",
    )
    names.add_argument(
        "--forwarded-header",
        choices=FORWARDED_HEADERS,
        default=Options().forwarded_header,
        help="the header those proxies set: X-Forwarded-For (nginx, HAProxy,"
        " most load balancers) or RFC 7239's Forwarded; only this one is read",
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
        max_connections_per_address=args.max_connections_per_address,
        max_state_size=args.max_state_size,
        handshake_timeout=args.handshake_timeout,
        max_header_size=args.max_header_size,
        allowed_origins=tuple(args.allowed_origins),
        allowed_hosts=tuple(args.allowed_hosts),
        forwarded_allow_ips=tuple(ip for ips in args.forwarded_allow_ips for ip in ips),
        forwarded_header=args.forwarded_header,
        certfile=args.certfile,
        keyfile=args.keyfile,
        trace=args.trace,
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
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr
    )
    options = options_from_args(args)
    prepare_process(options)
    if options.trace:  # Trace lines are INFO, whatever --log-level says.
        logging.getLogger("wspractice.trace").setLevel(logging.INFO)
    try:
        server = Server(options)
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
