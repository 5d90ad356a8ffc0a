"""The plots: p99 broadcast latency against users, one line per server; and,
when wspractice-delta ran, full maps against changes only."""

from __future__ import annotations

import statistics
from typing import Any
from pathlib import Path

from .context import Context
from .table import get, number

FILENAME = "p99_latency_vs_users.png"


def plot(ctx: Context, footer: str) -> Path | None:
    """Draw ``FILENAME`` in ``ctx.out``; None if no presence run has a p99.

    matplotlib is imported here, so that only a run that plots needs it.
    """
    rows = [
        r
        for r in ctx.pick("presence", protocol=None)
        if number(r, "latency.p99_ms") is not None
    ]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    repeated = False
    for name in sorted({r.server for r in rows}, key=ctx.order):
        points = sorted(
            (
                int(r.params["users"]),
                number(r, "latency.p99_ms") or 0.0,
                bool(get(r, "updates_lost")),
            )
            for r in rows
            if r.server == name
        )
        # Several runs of a size (repeated --users, or --from-results of
        # several runs): the line goes through their median, a bar spans them.
        xs = sorted({x for x, _, _ in points})
        runs = {x: sorted(y for px, y, _ in points if px == x) for x in xs}
        ys = [statistics.median(runs[x]) for x in xs]
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if any(len(runs[x]) > 1 for x in xs):
            repeated = True
            _range_bars(ax, xs, ys, runs, line.get_color())
        _circle_lossy(ax, points, line.get_color())
    users = sorted({int(r.params["users"]) for r in rows})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(users, [str(u) for u in users])
    ax.minorticks_off()
    ax.set_xlabel(f"users, each sending its state {ctx.args.rate:g} times a second")
    ax.set_ylabel("p99 broadcast latency, ms (log scale)")
    ax.set_title("Presence broadcast: p99 latency against users")
    ax.grid(True, which="major", alpha=0.3)
    title = "circled: some updates lost"
    if repeated:
        title = "median of the runs, bar: their range; " + title
    ax.legend(title=title, fontsize=9, title_fontsize=8)
    fig.text(0.01, 0.01, footer, fontsize=7, alpha=0.7)
    fig.tight_layout()
    path = ctx.out / FILENAME
    fig.savefig(path)
    plt.close(fig)
    return path


def _range_bars(
    ax: Any,
    xs: list[int],
    middle: list[float],
    runs: dict[int, list[float]],
    color: str,
) -> None:
    """A bar at each x from its lowest run to its highest, around the median."""
    ax.errorbar(
        xs,
        middle,
        yerr=[
            [m - runs[x][0] for x, m in zip(xs, middle)],
            [runs[x][-1] - m for x, m in zip(xs, middle)],
        ],
        fmt="none",
        ecolor=color,
        capsize=4,
        alpha=0.6,
    )


def _circle_lossy(ax: Any, points: list[tuple[int, float, bool]], color: str) -> None:
    """Circle each run that lost updates."""
    lossy = [(x, y) for x, y, lost in points if lost]
    if lossy:
        ax.scatter(
            [x for x, _ in lossy],
            [y for _, y in lossy],
            s=140,
            facecolors="none",
            edgecolors=color,
            linewidths=1.5,
        )


DELTA_FILENAME = "p99_full_vs_delta.png"

#: A line of the full-versus-delta plot: (label, scenario, match, kind).
Series = tuple[str, str, dict[str, object], str]

BIG_ROOM: list[Series] = [
    ("full maps", "bigroom", {"mode": "full"}, "full"),
    ("delta", "bigroom", {"mode": "delta"}, "delta"),
    ("mixed room: delta movers", "bigroom", {"mode": "mixed"}, "delta"),
    ("mixed room: full-map movers", "bigroom", {"mode": "mixed"}, "full"),
]
EVERYONE: list[Series] = [
    ("full maps", "presence", {"protocol": None}, ""),
    ("delta", "presence", {"protocol": "delta"}, ""),
]


def _points(ctx: Context, name: str, series: Series) -> list[tuple[int, float, bool]]:
    """(users, p99, lost something) for one server and one line, a point per
    run (repeated sizes give several)."""
    _, scenario, match, kind = series
    prefix = f"room.{kind}." if kind else ""
    found = []
    for r in ctx.pick(scenario, **match):
        p99 = number(r, prefix + "latency.p99_ms")
        if r.server != name or p99 is None or not r.usable:
            continue
        if kind:
            lost = (get(r, prefix + "updates_lost") or 0) + (
                get(r, prefix + "others_lost") or 0
            )
        else:
            lost = get(r, "updates_lost") or 0
        found.append((int(r.params["users"]), p99, bool(lost)))
    return sorted(found)


def plot_delta(ctx: Context, footer: str) -> Path | None:
    """Draw ``DELTA_FILENAME``: p99 against room size, full maps against
    wspractice-delta; the big room (movers' own updates) on the left, every
    user moving (the presence scenario) on the right. None without a delta run.
    """
    has_delta = any(
        r.params.get("protocol") == "delta"
        or r.params.get("mode") in ("delta", "mixed")
        for r in ctx.records
        if r.usable
    )
    if not has_delta:
        return None
    panels = []
    if ctx.pick("bigroom"):
        movers = ctx.pick("bigroom")[0].params.get("movers")
        panels.append(
            (
                f"Big room: {movers} movers at {ctx.args.rate:g} Hz, the rest idle",
                "connections",
                BIG_ROOM,
            )
        )
    if ctx.pick("presence", protocol="delta"):
        panels.append(
            (
                f"Every user moves at {ctx.args.rate:g} Hz",
                "users",
                EVERYONE,
            )
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(6.5 * len(panels), 5), dpi=110, squeeze=False
    )
    servers = sorted({r.server for r in ctx.records}, key=ctx.order)
    for ax, (title, xlabel, lines) in zip(axes[0], panels):
        sizes: set[int] = set()
        for name in servers:
            for series in lines:
                points = _points(ctx, name, series)
                if not points:
                    continue
                xs = sorted({x for x, _, _ in points})
                sizes.update(xs)
                runs = {x: sorted(y for px, y, _ in points if px == x) for x in xs}
                middle = [statistics.median(runs[x]) for x in xs]
                label = series[0] if len(servers) == 1 else f"{name}: {series[0]}"
                (line,) = ax.plot(
                    xs,
                    middle,
                    marker="o",
                    linestyle="--" if "full" in series[0] else "-",
                    label=label,
                )
                if any(len(ys) > 1 for ys in runs.values()):
                    _range_bars(ax, xs, middle, runs, line.get_color())
                _circle_lossy(ax, points, line.get_color())
        if lines is BIG_ROOM:
            ax.axhline(50, color="grey", linewidth=0.8, linestyle=":")
            ax.annotate(
                "goal for delta movers: p99 ≤ 50 ms",
                (max(sizes or {1}), 50),
                textcoords="offset points",
                xytext=(0, -10),
                ha="right",
                fontsize=7,
                color="grey",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        if sizes:
            ticks = sorted(sizes)
            ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("p99 latency of a mover's own update, ms (log scale)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(
            title="median of the runs, bar: their range; circled: a run lost updates",
            fontsize=8,
            title_fontsize=7,
        )
    fig.suptitle("Full maps against changes only (wspractice-delta)")
    fig.text(0.01, 0.01, footer, fontsize=7, alpha=0.7)
    fig.tight_layout()
    path = ctx.out / DELTA_FILENAME
    fig.savefig(path)
    plt.close(fig)
    return path
