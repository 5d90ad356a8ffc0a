"""Markdown tables of records: numbers, columns, and ratios to the reference.

Each scenario module builds its table from columns: a header and a function
that writes one row's cell. ``col`` reads a figure by its path in a record
(``"latency.p99_ms"``); ``ratio_col`` divides it by the reference server's
figure in the same table and group (the same user count, say).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .records import Record


class Row(Protocol):
    """What a table row is: a record, or a scenario's pairing of records."""

    @property
    def server(self) -> str: ...

    @property
    def usable(self) -> bool: ...


#: A table column: its header and how to write one row's cell.
Column = tuple[str, Callable[[Any], str]]

MIB = 1 / 1024


def fmt(value: object, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, or a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 10 ** (digits - 1):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, padded so that it also reads well in a terminal."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths))
    return "\n".join([line(headers), f"|{rule}|"] + [line(r) for r in rows])


def get(row: object, path: str) -> Any:
    """``row.a["b"]`` for the path ``a.b``; None where it is missing.
    Attributes of records and keys of the generator's JSON objects alike."""
    value: Any = row
    for key in path.split("."):
        if isinstance(value, dict):
            value = value.get(key)
        elif dataclasses.is_dataclass(value):
            value = getattr(value, key, None)
        else:
            return None
    return value


def number(row: object, path: str) -> float | None:
    value = get(row, path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def col(header: str, path: str, scale: float = 1.0, digits: int = 3) -> Column:
    def cell(row: object) -> str:
        value = get(row, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if scale != 1.0:
                value = value * scale
        return fmt(value, digits)

    return header, cell


def ratio_col(
    header: str,
    path: str,
    rows: Sequence[Row],
    reference: str,
    group: str | None = None,
) -> Column:
    """Each row's figure divided by the reference server's (in the same
    ``group``: rows whose figure at that path is equal)."""
    bases = {
        get(r, group) if group else None: number(r, path)
        for r in rows
        if r.server == reference and r.usable
    }

    def cell(row: Row) -> str:
        value = ratio(number(row, path), bases.get(get(row, group) if group else None))
        return "—" if value is None else f"{value:.2f}×"

    return header, cell


def status_cell(r: Record) -> str:
    if r.status == "ok":
        return "ok"
    note = "; ".join(r.notes[:2])
    return f"{r.status}: {note}" if note else r.status


def gen_cpu(path: str = "generator") -> Column:
    """The generator's CPU in cores, with its number of worker processes."""

    def cell(row: object) -> str:
        g = get(row, path) or {}
        if g.get("cpu_cores") is None:
            return "—"
        workers = g.get("workers")
        return fmt(g["cpu_cores"], 2) + (f" ({workers}w)" if workers else "")

    return "gen CPU", cell


def gen_lag(path: str = "generator") -> Column:
    """The p99 of the generator's event-loop delay."""
    return col("gen lag p99 ms", f"{path}.loop_delay_p99_ms")


SERVER: Column = ("server", lambda r: str(r.server))
#: The machine's 1-minute load average at the end of the window.
LOAD = col("load 1m", "window_load")


def _waited(r: object) -> str:
    """Cores' worth of time the server and the generator waited for a CPU."""
    server, generator = get(r, "server_cpu_wait"), get(r, "generator_cpu_wait")
    return f"{fmt(server, 2)}, {fmt(generator, 2)}"


WAITED: Column = ("waited for CPU: server, gen", _waited)
SERVER_CPU = col("server CPU", "server_cpu_cores", digits=2)
STATUS: Column = ("status", status_cell)


def render(rows: Sequence[object], columns: list[Column]) -> str:
    return table([h for h, _ in columns], [[f(r) for _, f in columns] for r in rows])
