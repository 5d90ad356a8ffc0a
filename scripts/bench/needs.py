"""What a run needs before it starts, checked, never installed.

The benchmark installs nothing. Everything it needs comes from one command,
run once from the repository's root::

    pip install -e . --group bench && npm ci --prefix scripts/bench

(the ``bench`` dependency group of pyproject.toml, pip 25.1 or newer: the
Python peers and matplotlib; ``ws``
and ``uuid`` at the versions pinned in ``scripts/bench/package-lock.json``).
When something is missing, the run stops before measuring anything, says
what is missing and which command brings it, and exits with status 2.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .context import say
from .servers import BENCH, PYTHON_PACKAGES, ROOT, ServerSpec

SETUP = "pip install -e . --group bench && npm ci --prefix scripts/bench"
NODE_PACKAGES = ("ws", "uuid")
NODE_MAJOR = 18


class Missing(Exception):
    """Something the run needs is not there; the message says what."""


def node_version() -> str:
    """``v20.1.0``; Missing without Node.js 18 or newer."""
    node = shutil.which("node")
    if node is None:
        raise Missing("Node.js (node, 18 or newer) is not on PATH")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MAJOR:
        raise Missing(f"Node.js {NODE_MAJOR} or newer is needed, found {version}")
    return version


def node_packages(bench: Path = BENCH) -> None:
    """Missing unless node_modules holds what package-lock.json pins."""
    lock = json.loads((bench / "package-lock.json").read_text())
    wrong = []
    for name in NODE_PACKAGES:
        pinned = lock["packages"][f"node_modules/{name}"]["version"]
        try:
            meta = json.loads(
                (bench / "node_modules" / name / "package.json").read_text()
            )
            installed = meta.get("version")
        except (OSError, ValueError):
            installed = None
        if installed != pinned:
            wrong.append(f"{name} {pinned} (found {installed or 'none'})")
    if wrong:
        where = bench.relative_to(ROOT) if bench.is_relative_to(ROOT) else bench
        raise Missing(f"Node packages in {where}/node_modules: " + ", ".join(wrong))


def python_modules(modules: set[str]) -> None:
    """Missing unless every module can be imported by this Python."""
    absent = sorted(m for m in modules if importlib.util.find_spec(m) is None)
    if absent:
        names = ", ".join(PYTHON_PACKAGES.get(m, m) for m in absent)
        raise Missing(f"Python packages for {sys.executable}: {names}")


def variant_imports(spec: ServerSpec) -> None:
    """Missing unless the variant's Python imports wspractice from its root.

    Run the way the server will be (same working directory, environment and
    interpreter), so that a variant can never measure another checkout.
    """
    assert spec.variant is not None
    probe = "import wspractice, wsproto; print(wspractice.__file__)"
    done = subprocess.run(
        [spec.command[0], "-c", probe],
        cwd=spec.cwd,
        env={**os.environ, **spec.env},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        error = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise Missing(f"variant {spec.name}: cannot import wspractice: {error}")
    found = Path(done.stdout.strip()).resolve()
    if not found.is_relative_to(spec.variant.root):
        raise Missing(
            f"variant {spec.name}: imports {found}, not {spec.variant.root}/wspractice"
        )


def check(specs: list[ServerSpec], plot: bool) -> str:
    """Check everything the chosen servers and the plot need; the Node.js
    version. If anything is missing: say what, and the command that brings
    it, then exit with status 2."""
    problems: list[str] = []
    fixes: list[str] = []

    def attempt(step: Callable[[], object], fix: str) -> None:
        try:
            step()
        except Missing as exc:
            problems.append(str(exc))
            if fix not in fixes:
                fixes.append(fix)

    pip = f"{shlex.quote(sys.executable)} -m pip install -e . --group bench"
    attempt(node_version, "")
    attempt(node_packages, "npm ci --prefix scripts/bench")
    attempt(lambda: python_modules(modules(specs, plot)), pip)
    for spec in specs:
        if spec.variant is not None:
            attempt(functools.partial(variant_imports, spec), pip)
    if problems:
        say("benchmark: cannot run; missing:")
        for problem in problems:
            say(f"  - {problem}")
        if "" in fixes:
            say(f"Install Node.js {NODE_MAJOR} or newer (with npm) first.")
        commands = [f for f in fixes if f]
        if commands:
            say("Then run:" if "" in fixes else "Run:")
            say("    " + " && ".join([f"cd {shlex.quote(str(ROOT))}", *commands]))
        say(f"(The whole set-up, once: {SETUP}; docs/benchmarks.md.)")
        raise SystemExit(2)
    return node_version()


def modules(specs: list[ServerSpec], plot: bool) -> set[str]:
    needed = {module for spec in specs for module in spec.needs}
    if plot:
        needed.add("matplotlib")
    return needed


def raise_open_files(needed: int) -> None:
    """Raise RLIMIT_NOFILE for this process and the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return
        except (ValueError, OSError):
            say(
                f"warning: the open-files limit is {hard} and {needed} are needed;"
                " raise it (ulimit -n) or fewer idle connections will be accepted"
            )
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
