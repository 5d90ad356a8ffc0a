"""The command line: options, then one run of the chosen scenarios."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __doc__ as PACKAGE_DOC
from . import needs
from .context import Context, say
from .machine import git_commit, machine_info, versions
from .pinning import parse_pin
from .records import JSON
from .report import report_again, write_report
from .scenarios import DEFAULT_SCENARIOS, OPTIONAL, SCENARIOS, planned_runs
from .servers import (
    PEER_NAMES,
    ROOT,
    BadOption,
    ServerSpec,
    Variant,
    all_specs,
    chosen_servers,
    parse_variant,
)

#: --quick: tiny sizes and short runs. Options given explicitly still win.
QUICK: dict[str, object] = {
    "users": [20],
    "duration": 0.6,
    "warmup": 0.2,
    "grace": 1.0,
    "short_duration": 0.4,
    "short_warmup": 0.1,
    "handshake_concurrency": 10,
    "join_users": 50,
    "connect_concurrency": 10,
    "stall_users": 21,  # 20 others: the presence run serves as the baseline
    "stall_duration": 0.6,
    "idle_connections": 50,
    "idle_settle": 0.2,
    "settle": 0.1,
    "room_sizes": [30],
    "room_movers": 4,
    "room_grace": 2.0,
    "verify_wait": 5.0,
    "settle_wait": 5.0,
    "shared_users": [10],
    "shared_capacity": [20],
    "shared_repeat": 1,
}

VARIANT_HELP = """\
a wspractice variant to run, repeatable: 'NAME [root=DIR] [args=ARGS]
[env=KEY=VALUE]...' in shell syntax, e.g. --variant new --variant 'base
root=/tmp/wsp-base' or --variant 'off env=WSPRACTICE_ABLATE=gate,pacing'.
root: the checkout whose wspractice/ runs (default --wspractice-root);
args: more options for it, after --wspractice-args; env: an environment
variable for it (repeat env= for more). Without --variant, one variant
called wspractice runs"""


def csv_list(choices: Sequence[str] | None = None) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        for item in items:
            if choices is not None and item not in choices:
                raise argparse.ArgumentTypeError(
                    f"{item!r} is not one of {', '.join(choices)}"
                )
        return items

    return parse


def int_list(text: str) -> list[int]:
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"want positive numbers, got {text}")
    return values


#: The numeric options: (group, option, type, default, metavar, help). Each
#: help ends with the default.
NUMBERS: list[tuple[str, str, type, object, str, str]] = [
    ("load", "--rate", float, 20.0, "HZ", "updates per second per user"),
    ("load", "--duration", float, 10.0, "SECONDS", "seconds measured per run"),
    ("load", "--warmup", float, 2.0, "SECONDS", "seconds of load before measuring"),
    (
        "load",
        "--grace",
        float,
        5.0,
        "SECONDS",
        "seconds to wait for late snapshots before counting an update lost",
    ),
    (
        "load",
        "--workers",
        int,
        0,
        "N",
        "load generator processes (0: one, or two from 300 users on a machine"
        " with more than two cores)",
    ),
    ("load", "--connect-concurrency", int, 100, "N", "connections opened at once"),
    (
        "load",
        "--shared-repeat",
        int,
        3,
        "N",
        "shared scenario: runs of each measurement, the layouts taking turns",
    ),
    (
        "load",
        "--connect-deadline",
        float,
        60.0,
        "SECONDS",
        "start no new connection after this long; those left count as failed",
    ),
    (
        "other",
        "--short-duration",
        float,
        5.0,
        "SECONDS",
        "seconds measured for handshake and echo",
    ),
    (
        "other",
        "--short-warmup",
        float,
        1.0,
        "SECONDS",
        "seconds before measuring handshake and echo",
    ),
    (
        "other",
        "--handshake-concurrency",
        int,
        20,
        "N",
        "loops opening and closing WebSockets at once",
    ),
    ("other", "--echo-clients", int, 10, "N", "echo clients"),
    ("other", "--echo-size", int, 64, "BYTES", "echo message size in bytes"),
    ("other", "--join-users", int, 1000, "N", "users in the join scenario"),
    (
        "other",
        "--stall-users",
        int,
        20,
        "N",
        "users in the stall scenario, the stalled one included",
    ),
    (
        "other",
        "--stall-duration",
        float,
        20.0,
        "SECONDS",
        "seconds measured in the stall scenario",
    ),
    ("other", "--idle-connections", int, 5000, "N", "connections in the idle scenario"),
    (
        "other",
        "--idle-settle",
        float,
        2.0,
        "SECONDS",
        "wait this long after the idle connections are open before reading the"
        " server's RSS",
    ),
    (
        "room",
        "--room-movers",
        int,
        20,
        "N",
        "users who move in each big room; the others stay idle",
    ),
    (
        "room",
        "--room-grace",
        float,
        30.0,
        "SECONDS",
        "big room: how long to wait for late updates before counting them"
        " lost (full-map clients of a big room may take long)",
    ),
    (
        "room",
        "--watch",
        int,
        20,
        "N",
        "big room: other movers whose updates each mover watches",
    ),
    (
        "room",
        "--settle-wait",
        float,
        120.0,
        "SECONDS",
        "wspractice-delta and big room runs: before the run, how long every"
        " client may take to hold the whole room (the joins' first messages"
        " delivered)",
    ),
    (
        "room",
        "--verify-wait",
        float,
        30.0,
        "SECONDS",
        "wspractice-delta and big room runs: how long every client may take,"
        " after the run, to catch up with the server's map",
    ),
    (
        "run",
        "--max-server-rss",
        int,
        4096,
        "MIB",
        "kill a server whose memory grows past this",
    ),
    (
        "run",
        "--startup-timeout",
        float,
        30.0,
        "SECONDS",
        "how long a server may take to print its port",
    ),
    (
        "run",
        "--generator-nice",
        int,
        -10,
        "N",
        "niceness increment for the load generator (negative: a higher priority"
        " than the server's threads, so that it is not starved; needs root,"
        " otherwise it runs at the default)",
    ),
    (
        "run",
        "--generator-realtime",
        int,
        0,
        "PRIORITY",
        "run the load generator as a real-time process (SCHED_RR at this"
        " priority, 1-99; needs root): it then runs whenever it is ready, as"
        " clients on other machines would, however many threads the server"
        " has ready; 0: off, only --generator-nice",
    ),
    (
        "run",
        "--settle",
        float,
        0.3,
        "SECONDS",
        "pause between a server's startup line and the first load",
    ),
]


def pin_option(text: str) -> str:
    try:
        server, generator = parse_pin(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    available = os.sched_getaffinity(0)
    for cpus in (server, generator):
        if not cpus or not cpus <= available:
            raise argparse.ArgumentTypeError(
                f"{text}: CPUs must be among {sorted(available)}, on both sides"
            )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/benchmark.py",
        description=(PACKAGE_DOC or "").split("\n\nResults")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Results go to --output: results.json, results.md (the tables)"
        " and p99_latency_vs_users.png. docs/benchmarks.md defines every figure.",
    )
    what = parser.add_argument_group("what to run")
    groups = {
        "load": parser.add_argument_group("presence load"),
        "other": parser.add_argument_group("other scenarios"),
        "room": parser.add_argument_group(
            "big room (--scenarios bigroom) and wspractice-delta"
        ),
        "run": parser.add_argument_group("servers and output"),
    }
    what.add_argument(
        "--servers",
        type=csv_list(),
        default=None,
        metavar="LIST",
        help="comma-separated servers: wspractice (every variant), a variant's"
        f" name, {', '.join(PEER_NAMES)}, any --target (default: every variant"
        " and every peer)",
    )
    what.add_argument(
        "--scenarios",
        type=csv_list(list(SCENARIOS)),
        default=list(DEFAULT_SCENARIOS),
        metavar="LIST",
        help="comma-separated scenarios: "
        + ", ".join(SCENARIOS)
        + f" (default: all but {', '.join(OPTIONAL)})",
    )
    what.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: tiny sizes and short runs (under a minute);"
        " options given explicitly still win",
    )
    what.add_argument(
        "--variant", action="append", default=[], metavar="SPEC", help=VARIANT_HELP
    )
    what.add_argument(
        "--reference",
        metavar="NAME",
        default=None,
        help="the server every ratio divides by (default: the first variant)",
    )
    what.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="also drive a server that is already running (no CPU or memory"
        " figures for it)",
    )
    groups["load"].add_argument(
        "--users",
        type=int_list,
        default=[25, 50, 100, 300, 500, 1000],
        metavar="LIST",
        help="user counts for the presence scenario (25,50,100,300,500,1000)",
    )
    groups["load"].add_argument(
        "--protocols",
        type=csv_list(["full", "delta"]),
        default=["full"],
        metavar="LIST",
        help="presence: the clients' formats, each a run per size and server:"
        " full (the tutorial's whole map) and delta (every client on the"
        " wspractice-delta subprotocol; wspractice only) (full)",
    )
    groups["load"].add_argument(
        "--shared-users",
        type=int_list,
        default=[25, 100],
        metavar="LIST",
        help="shared scenario: user counts for the Redis hop (25,100)",
    )
    groups["load"].add_argument(
        "--shared-capacity",
        type=int_list,
        default=[50, 100, 150, 200, 300, 400, 500],
        metavar="LIST",
        help="shared scenario: user counts tried for capacity, in turn, until"
        " p99 > 50 ms or an update is lost (50,100,150,200,300,400,500)",
    )
    groups["load"].add_argument(
        "--keep-going",
        action="store_true",
        help="run bigger user counts even for a server that collapsed on a smaller one",
    )
    groups["other"].add_argument(
        "--idle-path",
        metavar="PATH",
        default="/echo",
        help="path of the idle connections; a presence path such as / adds a"
        " username per connection (/echo: no join broadcasts)",
    )
    groups["room"].add_argument(
        "--room-sizes",
        type=int_list,
        default=[500, 2000, 5000],
        metavar="LIST",
        help="connections in each big room (500,2000,5000)",
    )
    groups["room"].add_argument(
        "--room-modes",
        type=csv_list(["full", "delta", "mixed"]),
        default=["full", "delta", "mixed"],
        metavar="LIST",
        help="big room: every client on full maps, every client on"
        " wspractice-delta, or half of each (full,delta,mixed)",
    )
    for group, flag, kind, default, metavar, text in NUMBERS:
        groups[group].add_argument(
            flag,
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{text} ({default})",
        )
    run = groups["run"]
    run.add_argument(
        "--wspractice-root",
        default=str(ROOT),
        metavar="DIR",
        help="the checkout whose wspractice/ runs, for every variant without"
        " root= (default: this one)",
    )
    run.add_argument(
        "--wspractice-args",
        default="",
        metavar="ARGS",
        help='options for every variant, e.g. "--broadcast-interval 5"',
    )
    run.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="where results go (default: artifacts/bench-YYYYmmdd-HHMMSS)",
    )
    run.add_argument(
        "--from-results",
        type=Path,
        action="append",
        default=None,
        metavar="JSON",
        help="run nothing: print the tables of an earlier results.json and"
        " write its results.md and plot again (to --output, or beside it);"
        " repeat it to report several runs' records together, the settings"
        " being the first's",
    )
    run.add_argument(
        "--pin",
        type=pin_option,
        default=None,
        metavar="SERVER/GENERATOR",
        help="keep the server on some CPUs and the load generator on others,"
        " e.g. 0/1 (CPU lists as taskset takes them: 0,2-3), so that neither"
        " takes the CPU from the other (default: anywhere)",
    )
    run.add_argument(
        "--no-plot",
        action="store_true",
        help="draw no plot (then matplotlib is not needed)",
    )
    return parser


def apply_quick(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """--quick changes the defaults, not what the user typed."""
    given = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    for key, value in QUICK.items():
        if "--" + key.replace("_", "-") not in given:
            setattr(args, key, value)


def variants(args: argparse.Namespace) -> list[Variant]:
    """The --variant options, or the one default variant ``wspractice``."""
    root = Path(args.wspractice_root)
    base = shlex.split(args.wspractice_args)
    texts = args.variant or ["wspractice"]
    found = [parse_variant(text, root, base) for text in texts]
    names = [v.name for v in found]
    for name in names:
        if names.count(name) > 1:
            raise BadOption(f"--variant: two variants are called {name!r}")
    return found


def reference(wanted: str | None, servers: list[str], found: list[Variant]) -> str:
    if wanted is not None:
        if wanted not in servers:
            raise BadOption(f"--reference {wanted!r} is not among the servers run")
        return wanted
    return next((v.name for v in found if v.name in servers), servers[0])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.from_results is not None:
        if len(args.from_results) > 1 and args.output is None:
            parser.error("several --from-results need an --output of their own")
        return report_again(args.from_results, args.output, args.no_plot)
    if args.quick:
        apply_quick(args, argv)
    try:
        found = variants(args)
        specs = all_specs(found, args.target)
        args.servers = chosen_servers(args.servers, specs, found)
        ref = reference(args.reference, args.servers, found)
    except BadOption as exc:
        parser.error(str(exc))
    chosen = [specs[name] for name in args.servers]
    plot = bool({"presence", "bigroom"} & set(args.scenarios)) and not args.no_plot
    node = needs.check(chosen, plot)
    biggest = max(args.idle_connections, args.join_users, max(args.users))
    if "bigroom" in args.scenarios:
        biggest = max(biggest, max(args.room_sizes) + 1)
    needs.raise_open_files(2 * biggest + 1024)

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.output or ROOT / "artifacts" / f"bench-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, args.servers, ref, out, specs)
    ctx.logs.mkdir(exist_ok=True)
    ctx.meta = describe_run(args, argv, chosen, ref, node)
    say(
        f"==> benchmarking {', '.join(args.servers)} ({ctx.meta['planned_runs']}"
        f" runs; ratios to {ref}); results in {out}"
    )
    started = time.monotonic()
    try:
        for name in args.scenarios:
            SCENARIOS[name].run(ctx)
    except KeyboardInterrupt:
        say("interrupted: writing what was measured so far")
    ctx.meta["seconds"] = round(time.monotonic() - started, 1)
    ctx.save()
    write_report(ctx)
    return 0


def describe_run(
    args: argparse.Namespace,
    argv: list[str],
    chosen: list[ServerSpec],
    ref: str,
    node: str,
) -> JSON:
    """results.json's ``meta``: what ran, where, with what."""
    variants: JSON = {}
    for spec in chosen:
        if spec.variant is not None:
            v = spec.variant
            variants[spec.name] = {
                "spec": v.describe(),
                "root": str(v.root),
                "args": list(v.args),
                "env": dict(v.env),
                "commit": git_commit(v.root),
            }
    commits = [v["commit"]["head"] for v in variants.values()]
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python scripts/benchmark.py " + shlex.join(argv),
        "wspractice_commit": commits[0] if commits else None,
        "variants": variants,
        "reference": ref,
        "machine": machine_info(),
        "versions": versions(node),
        "environment": {
            k: v for k, v in os.environ.items() if k.startswith("WSPRACTICE_")
        },
        # The driver's niceness, which the servers inherit.
        "niceness": os.getpriority(os.PRIO_PROCESS, 0),
        "servers": {spec.name: spec.about for spec in chosen},
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "planned_runs": planned_runs(args, len(chosen)),
    }
