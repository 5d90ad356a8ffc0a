"""The servers a run compares: wspractice variants, the peers, running targets.

A **variant** is wspractice from some checkout, with its own command-line
arguments and environment variables, under a name of its own. Several
variants can run side by side, each shown as its own row in every table: a
checkout of another commit (``root=``), the same code with other options
(``args=``), or with a mechanism switched off by an environment variable
(``env=``). One ``--variant`` option describes one variant, in shell syntax::

    --variant NAME
    --variant 'NAME root=DIR args="--broadcast-interval 5" env=KEY=VALUE env=K2=V2'

``root`` is the checkout whose ``wspractice/`` runs (``python -m wspractice``
with the checkout as its working directory, so that it and nothing else is
imported); ``args`` are split like a shell would; ``env`` may be repeated, and
a value may hold commas (``env=WSPRACTICE_ABLATE=gate,pacing``).

The **peers** speak the same protocol with other libraries (see
``scripts/bench/peers/``); a **target** is a server that is already running
(``--target NAME=ws://HOST:PORT``), driven but neither started nor measured
from /proc.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "scripts" / "bench"
PEERS = BENCH / "peers"

#: Python modules a peer or the plot needs -> the package that brings it
#: (all in pyproject.toml's ``bench`` dependency group).
PYTHON_PACKAGES = {
    "websockets": "websockets",
    "simple_websocket": "simple-websocket",
    "werkzeug": "werkzeug",
    "websocket_server": "websocket-server",
    "matplotlib": "matplotlib",
}

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")


class BadOption(ValueError):
    """A --variant, --target or --servers value that cannot be used."""


@dataclass(frozen=True)
class Variant:
    """wspractice from ``root``, run with ``args`` and ``env``."""

    name: str
    root: Path
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """The variant in the --variant syntax, for results.json and help."""
        parts = [self.name, f"root={shlex.quote(str(self.root))}"]
        if self.args:
            parts.append("args=" + shlex.quote(shlex.join(self.args)))
        parts += [f"env={shlex.quote(k + '=' + v)}" for k, v in self.env]
        return " ".join(parts)


def parse_variant(text: str, default_root: Path, base_args: list[str]) -> Variant:
    """One --variant value: ``NAME [root=DIR] [args=ARGS] [env=KEY=VALUE]...``.

    ``base_args`` (from --wspractice-args) come before the variant's own.
    """
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise BadOption(f"--variant {text!r}: {exc}") from None
    if not words or "=" in words[0]:
        raise BadOption(f"--variant {text!r}: start with the variant's name")
    name, root, args, env = words[0], default_root, list(base_args), []
    check_name(name, "--variant")
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise BadOption(f"--variant {name}: {word!r} is not KEY=VALUE")
        if key == "root":
            root = Path(value).expanduser()
        elif key == "args":
            args += shlex.split(value)
        elif key == "env":
            var, sep, setting = value.partition("=")
            if not sep or not var:
                raise BadOption(
                    f"--variant {name}: env wants NAME=VALUE, got {value!r}"
                )
            env.append((var, setting))
        else:
            raise BadOption(
                f"--variant {name}: unknown key {key!r} (root, args or env)"
            )
    root = root.resolve()
    if not (root / "wspractice" / "__init__.py").is_file():
        raise BadOption(f"--variant {name}: {root} has no wspractice/ package")
    return Variant(name, root, tuple(args), tuple(env))


def check_name(name: str, option: str) -> None:
    if not NAME.match(name):
        raise BadOption(
            f"{option}: {name!r} is not a name (letters, digits, . _ + -,"
            " starting with a letter or digit)"
        )


@dataclass
class ServerSpec:
    """How to start one server: a command that prints its port."""

    name: str
    command: list[str]
    about: str
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    #: Python modules the server needs (keys of PYTHON_PACKAGES).
    needs: tuple[str, ...] = ()
    #: A wspractice variant (None for a peer or a target).
    variant: Variant | None = None
    #: A server that is already running: never started or stopped here.
    url: str | None = None


def variant_spec(variant: Variant) -> ServerSpec:
    command = [sys.executable, "-m", "wspractice", "--port", "0"]
    command += ["--log-level", "warning", *variant.args]
    about = f"python -m wspractice from {variant.root}"
    if variant.args:
        about += " " + shlex.join(variant.args)
    if variant.env:
        about += " with " + " ".join(f"{k}={v}" for k, v in variant.env)
    return ServerSpec(
        variant.name,
        command,
        about,
        cwd=variant.root,  # Imported before PYTHONPATH and any installed copy.
        env=dict(variant.env),
        variant=variant,
    )


def peer_specs() -> list[ServerSpec]:
    python = sys.executable
    return [
        ServerSpec(
            "tutorial",
            ["node", str(PEERS / "tutorial.js"), "--port", "0"],
            "the Node tutorial: http.createServer + ws + uuid",
        ),
        ServerSpec(
            "websockets",
            [python, str(PEERS / "websockets_sync.py"), "--port", "0"],
            "websockets.sync.server.serve, a thread per connection",
            needs=("websockets",),
        ),
        ServerSpec(
            "simple-websocket",
            [python, str(PEERS / "simple_websocket_peer.py"), "--port", "0"],
            "simple-websocket behind werkzeug's threaded WSGI server",
            needs=("simple_websocket", "werkzeug"),
        ),
        ServerSpec(
            "websocket-server",
            [python, str(PEERS / "websocket_server_peer.py"), "--port", "0"],
            "the websocket-server package (websocket_server.WebsocketServer)",
            needs=("websocket_server",),
        ),
    ]


PEER_NAMES = [spec.name for spec in peer_specs()]


def target_spec(text: str) -> ServerSpec:
    """One --target value: ``NAME=ws://HOST:PORT``."""
    name, _, url = text.partition("=")
    if not name or not re.match(r"ws://[^/:]+:\d+/?\Z", url):
        raise BadOption(f"--target wants NAME=ws://HOST:PORT, got {text!r}")
    check_name(name, "--target")
    return ServerSpec(name, [], f"already running at {url}", url=url.rstrip("/"))


def all_specs(variants: list[Variant], targets: list[str]) -> dict[str, ServerSpec]:
    """Every server a run may use, by name: variants first, then the peers
    and the targets. Names must differ."""
    specs: dict[str, ServerSpec] = {}
    for spec in (
        [variant_spec(v) for v in variants]
        + peer_specs()
        + [target_spec(t) for t in targets]
    ):
        if spec.name in specs:
            raise BadOption(f"two servers are called {spec.name!r}")
        specs[spec.name] = spec
    return specs


def chosen_servers(
    wanted: list[str] | None, specs: dict[str, ServerSpec], variants: list[Variant]
) -> list[str]:
    """The servers to run, in order. By default every variant and every
    peer; in ``--servers``, ``wspractice`` stands for every variant unless
    one is called so."""
    names = [v.name for v in variants]
    if wanted is None:
        return names + PEER_NAMES
    chosen: list[str] = []
    for name in wanted:
        expanded = names if name == "wspractice" and name not in specs else [name]
        for one in expanded:
            if one not in specs:
                raise BadOption(
                    f"--servers: unknown server {one!r}; known: {', '.join(specs)}"
                )
            if one not in chosen:
                chosen.append(one)
    if not chosen:
        raise BadOption("--servers: no server chosen")
    return chosen
