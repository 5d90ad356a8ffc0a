"""The plot: p99 broadcast latency against users, one line per server."""

from __future__ import annotations

from pathlib import Path

from .context import Context
from .table import get, number

FILENAME = "p99_latency_vs_users.png"


def plot(ctx: Context, footer: str) -> Path | None:
    """Draw ``FILENAME`` in ``ctx.out``; None if no presence run has a p99.

    matplotlib is imported here, so that only a run that plots needs it.
    """
    rows = [r for r in ctx.pick("presence") if number(r, "latency.p99_ms") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
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
        xs = [x for x, _, _ in points]
        ys = [y for _, y, _ in points]
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        lossy = [(x, y) for x, y, lost in points if lost]
        if lossy:
            ax.scatter(
                [x for x, _ in lossy],
                [y for _, y in lossy],
                s=140,
                facecolors="none",
                edgecolors=line.get_color(),
                linewidths=1.5,
            )
    users = sorted({int(r.params["users"]) for r in rows})
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(users, [str(u) for u in users])
    ax.minorticks_off()
    ax.set_xlabel(f"users, each sending its state {ctx.args.rate:g} times a second")
    ax.set_ylabel("p99 broadcast latency, ms (log scale)")
    ax.set_title("Presence broadcast: p99 latency against users")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="circled: some updates lost", fontsize=9, title_fontsize=8)
    fig.text(0.01, 0.01, footer, fontsize=7, alpha=0.7)
    fig.tight_layout()
    path = ctx.out / FILENAME
    fig.savefig(path)
    plt.close(fig)
    return path
