"""What a run records about where it ran: the machine, versions, commits."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import subprocess
from pathlib import Path

from .records import JSON
from .servers import BENCH


def machine_info() -> JSON:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "open_files_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def node_package_version(name: str, bench: Path = BENCH) -> str | None:
    """The version of ``name`` installed in scripts/bench/node_modules."""
    try:
        data = json.loads((bench / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(data.get("version"))


def versions(node: str) -> JSON:
    return {
        "node": node,
        "ws": node_package_version("ws"),
        "uuid": node_package_version("uuid"),
        "wsproto": package_version("wsproto"),
        "websockets": package_version("websockets"),
        "simple-websocket": package_version("simple-websocket"),
        "werkzeug": package_version("werkzeug"),
        "websocket-server": package_version("websocket-server"),
    }


def git_commit(root: Path) -> JSON:
    """The checkout's commit: ``head`` (short), ``server`` (the last commit
    that changed wspractice/) and ``dirty`` (wspractice/ has changes)."""

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(root), *argv], capture_output=True, text=True
        )
        return done.stdout.strip()

    return {
        "head": git("rev-parse", "--short", "HEAD") or "unknown",
        "server": git("log", "-1", "--format=%h", "--", "wspractice") or "unknown",
        "dirty": bool(git("status", "--porcelain", "--", "wspractice")),
    }


def commit_label(commit: JSON) -> str:
    """``408e545``, ``408e545-dirty``: how a report names a checkout."""
    label = str(commit.get("head", "unknown"))
    return label + "-dirty" if commit.get("dirty") else label
