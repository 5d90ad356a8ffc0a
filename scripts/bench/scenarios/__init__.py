"""The scenarios, one module each, in the order they run.

Every scenario module has the same face (``Scenario``): its ``NAME``;
``runs(args, servers)``, how many measurements it plans for that many
servers; ``run(ctx)``, which measures every server in ``ctx.servers`` and
keeps a record per measurement; and ``tables(ctx)``, its Markdown tables
(title, text) from ``ctx.records``, with each figure's ratio to
``ctx.reference``.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from ..context import Context
from . import bigroom, echo, handshake, idle, join, presence, shared, stall


class Scenario(Protocol):
    NAME: str

    def runs(self, args: argparse.Namespace, servers: int) -> int: ...

    def run(self, ctx: Context) -> None: ...

    def tables(self, ctx: Context) -> list[tuple[str, str]]: ...


SCENARIOS: dict[str, Scenario] = {
    module.NAME: module
    for module in (handshake, echo, presence, join, stall, idle, shared, bigroom)
}

#: Scenarios that run only when named in --scenarios: ``shared``, which needs
#: redis-server and measures layouts of wspractice rather than servers side
#: by side, and ``bigroom``, thousands of connections per server and mode.
OPTIONAL = (shared.NAME, bigroom.NAME)
#: What runs without --scenarios.
DEFAULT_SCENARIOS = [name for name in SCENARIOS if name not in OPTIONAL]


def planned_runs(args: argparse.Namespace, servers: int) -> int:
    return sum(SCENARIOS[name].runs(args, servers) for name in args.scenarios)
