"""``python -m wspractice``: the command line.

The only place that configures logging and signals. :func:`main` takes its
arguments as a list, so tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import resource
import signal
import ssl
import sys
import threading
import urllib.parse
from types import FrameType

from . import __version__
from .config import (
    DEFAULT_MAX_MESSAGE_SIZE,
    REDIS_PREFIX,
    Options,
    check_allowed_host,
    check_redis_url,
)
from .forwarded import FORWARDED_HEADERS, TrustedProxies
from .server import Server

logger = logging.getLogger("wspractice")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"

#: The logger of http.server's request lines (``--no-access-log``).
ACCESS_LOGGER = "wspractice.access"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


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
        epilog="Stop it with Ctrl-C or SIGTERM: open WebSockets are closed with"
        " 1001. A second signal stops it at once.",
        formatter_class=HelpFormatter,
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
        help="private key (PEM), if not in --certfile; needs --certfile",
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
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="level of wspractice's own loggers; debug also logs every state"
        " update (default: info, or what --log-config sets)",
    )
    out.add_argument(
        "--log-config",
        metavar="FILE",
        help="configure logging from FILE instead: a .json file is a"
        " logging.config.dictConfig() dictionary, any other file the INI format"
        " of logging.config.fileConfig(); loggers it does not name keep working",
    )
    out.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"log every plain HTTP request and handshake response (the"
        f" {ACCESS_LOGGER} logger)",
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


class StopNow(BaseException):
    """A second Ctrl-C or SIGTERM: stop without waiting for anything.

    Not an :class:`Exception`, so that no ``except Exception`` on the way (in
    :mod:`logging`, say) can swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Stopper:
    """The handler of Ctrl-C and SIGTERM.

    The first signal stops the server gracefully: it asks ``serve_forever``
    to return (:meth:`Server.shutdown`, from a thread of its own, since the
    handler runs in the main thread that serves), and :func:`main` then closes
    every WebSocket. Nothing is raised in the main thread: an exception there
    could land inside socketserver's ``process_request``, whose bare
    ``except`` would close the socket of a connection just handed to its
    thread. A second signal, while it waits for clients to answer, means "stop
    now": :class:`StopNow` unwinds whatever the main thread was doing, and
    :meth:`stop_now` ends the process at once and quietly, killed by that
    signal, as uvicorn's second Ctrl-C does. The handler itself writes
    nothing: a signal can arrive in the middle of a write to stderr, which
    must not be entered again.
    """

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stopping = False
        self.forced = False
        #: Set once the server is closed: later signals are ignored.
        self.finished = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.finished or self.forced:
            return
        if not self.stopping:
            self.stopping = True
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return
        self.forced = True
        raise StopNow(signum)

    def stop_now(self, signum: int) -> None:
        logger.warning(
            "%s again: stopping now, without waiting for connections to close",
            signal.Signals(signum).name,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # Not reached: the signal has ended the process.


def configure_logging(args: argparse.Namespace) -> str | None:
    """Set up logging from the options; what is wrong with --log-config, if any."""
    problem = None
    if args.log_config is not None:
        problem = load_log_config(args.log_config)
    if args.log_config is None or problem is not None:
        logging.basicConfig(
            level=(args.log_level or "info").upper(),
            format=LOG_FORMAT,
            stream=sys.stderr,
        )
    elif args.log_level is not None:
        logging.getLogger("wspractice").setLevel(args.log_level.upper())
    if args.trace:  # Trace lines are INFO, whatever --log-level says.
        logging.getLogger("wspractice.trace").setLevel(logging.INFO)
    if not args.access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.CRITICAL + 1)
    return problem


def load_log_config(path: str) -> str | None:
    """Apply a logging configuration file the way uvicorn's --log-config does.

    A ``.json`` file holds a :func:`logging.config.dictConfig` dictionary; any
    other file is read by :func:`logging.config.fileConfig`. Unlike either
    function's default, loggers that the file does not name stay enabled
    (unless a JSON file says ``"disable_existing_loggers": true``).
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        return f"cannot read --log-config {path}: {exc.strerror}"
    try:
        if path.lower().endswith(".json"):
            config = json.loads(text)
            if not isinstance(config, dict):
                return f"--log-config {path}: the JSON must be an object"
            config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        elif path.lower().endswith((".yaml", ".yml")):
            return f"--log-config {path}: YAML is not supported; use JSON or INI"
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as exc:  # Each format fails in its own way.
        return f"--log-config {path}: {type(exc).__name__}: {exc}"
    return None


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Rules between options, as usage errors (exit status 2)."""
    if args.keyfile is not None and args.certfile is None:
        parser.error(
            "--keyfile needs --certfile: a private key alone cannot serve"
            " wss://; give the certificate chain with --certfile"
        )


def unreadable_file(args: argparse.Namespace) -> str | None:
    """The first of --certfile and --keyfile that cannot be read, and why."""
    for flag, path in (("--certfile", args.certfile), ("--keyfile", args.keyfile)):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return f"cannot read {flag} {path}: {exc.strerror}"
    return None


def page_url(ws_url: str) -> str:
    """The demo page's ``http://`` (or ``https://``) URL on the same server."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return urllib.parse.urlunsplit((scheme, parts.netloc, "/", "", ""))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    if args.workers > 1 and args.redis is None:
        parser.error(
            f"--workers {args.workers} needs --redis URL: each worker is a"
            " separate process with its own users, and only Redis makes them"
            " one room (without it, users on different workers would not see"
            " each other)"
        )
    problem = configure_logging(args)
    if problem is not None:
        logger.error("%s", problem)
        return 1
    options = options_from_args(args)
    prepare_process(options)
    problem = unreadable_file(args)
    if problem is not None:
        logger.error("%s", problem)
        return 1
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
    stopper = Stopper(server)
    try:
        try:
            # Also SIGINT: a server started in the background by a script
            # inherits an ignored SIGINT, and Ctrl-C or `kill -INT` must
            # still stop it.
            signal.signal(signal.SIGTERM, stopper)
            signal.signal(signal.SIGINT, stopper)
            url = server.url()
            print(
                f"WebSocket server is running on port {server.port}: {url}"
                f" - demo page: {page_url(url)}",
                flush=True,
            )
            server.serve_forever()
            logger.info("shutting down")
        finally:
            server.close_connections()
            server.server_close()
        logger.info("stopped")
        stopper.finished = True
    except StopNow as stop:
        stopper.stop_now(stop.signum)
    return 0
