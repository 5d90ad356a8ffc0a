"""The command line: options for the soak, and after ``--`` for the server."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

from serverproc import ServerError

from wspractice.cli import build_parser as server_parser

from . import __doc__ as PACKAGE_DOC
from .hostile import HostileMix
from .report import print_report
from .run import soak
from .server import SoakServer
from .watch import log

#: Unless given after ``--``: shorter timeouts than the server's defaults, so
#: that hostile connections cycle through them within the run, and a small
#: per-address limit, which only the crowds reach (every other client has a
#: source address of its own).
SERVER_DEFAULTS = [
    "--log-level",
    "warning",
    "--handshake-timeout",
    "2",
    "--send-timeout",
    "2",
    "--close-timeout",
    "1",
    "--ping-interval",
    "5",
    "--ping-timeout",
    "5",
    "--max-connections-per-address",
    "16",
]


class HelpFormatter(
    argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """The package's docstring as it is, and every option's default."""


def kinds(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soak.py",
        description=(PACKAGE_DOC or "").split("\n\nThe package:")[0],
        epilog="Arguments after -- go to the server (python -m wspractice --help);"
        " without them it runs with: " + " ".join(SERVER_DEFAULTS),
        formatter_class=HelpFormatter,
    )
    add = parser.add_argument
    add(
        "--duration",
        type=float,
        default=60,
        help="seconds of hostile clients (settling and shutdown come after)",
    )
    add("--walkers", type=int, default=10, help="well-behaved measured clients")
    add("--rate", type=float, default=20, help="updates a second per walker")
    add(
        "--connect-rate",
        type=float,
        default=50,
        help="new hostile connections a second",
    )
    add(
        "--max-inflight",
        type=int,
        default=300,
        help="most hostile connections open at once",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="seed of the hostile mix (None: a random one, printed in the report)",
    )
    add("--progress", type=float, default=5, help="seconds between progress lines")
    add(
        "--kinds",
        type=kinds,
        default=[],
        help="only these kinds of hostile client, comma-separated, from: "
        + ", ".join(HostileMix.KINDS)
        + " ([] means all, in a fixed mix)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    server_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, server_args = argv[:split], argv[split + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = set(args.kinds) - set(HostileMix.KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    full_server_args = SERVER_DEFAULTS + server_args
    options = server_parser().parse_args(full_server_args)
    with tempfile.TemporaryDirectory(prefix="wspractice-soak-") as logs:
        server = SoakServer(full_server_args, Path(logs) / "server.log")
        try:
            server.start(timeout=30)
        except ServerError as exc:
            log(f"the server did not start: {exc}")
            return 2
        log(f"server pid {server.pid} on port {server.port}")
        try:
            return print_report(asyncio.run(soak(args, server, options)))
        finally:
            server.stop(timeout=5)
