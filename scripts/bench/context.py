"""The state of one benchmark run: its settings, servers, records and output."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .records import JSON, Record
from .servers import ServerSpec

R = TypeVar("R", bound=Record)


def say(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Context:
    """What every scenario reads and adds to.

    ``args`` holds the settings (the parsed command line, or the settings
    saved in an earlier results.json); ``servers`` the names to run, in
    table order; ``reference`` the server every ratio divides by.
    """

    args: argparse.Namespace
    servers: list[str]
    reference: str
    out: Path
    specs: dict[str, ServerSpec] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    meta: JSON = field(default_factory=dict)
    step: int = 0

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def save(self) -> None:
        """Write results.json (after every run, so a partial run is kept)."""
        data = {"meta": self.meta, "records": [r.to_json() for r in self.records]}
        path = self.out / "results.json"
        path.write_text(json.dumps(data, indent=1, default=str) + "\n")

    def keep(self, record: R) -> R:
        """Add a finished record to the results, and save them at once."""
        self.records.append(record)
        self.save()
        return record

    def skip(self, record: Record) -> None:
        """A planned run that is not run: counted, kept, not saved yet."""
        self.records.append(record)
        self.step += 1

    def progress(self, text: str) -> None:
        self.step += 1
        say(f"[{self.step}/{self.meta.get('planned_runs', '?')}] {text}")

    def pick(self, scenario: str, **params: object) -> list[Record]:
        """The records of ``scenario`` whose params have these values."""
        return [
            r
            for r in self.records
            if r.scenario == scenario
            and all(r.params.get(k) == v for k, v in params.items())
        ]

    def in_order(self, scenario: str) -> list[Record]:
        """The records of ``scenario``, in the order of their servers: a
        table's rows."""
        return sorted(self.pick(scenario), key=lambda r: self.order(r.server))

    def order(self, server: str) -> int:
        """Where a server's rows go in a table."""
        return self.servers.index(server) if server in self.servers else 1 << 20
