"""The report: every scenario's table on stdout and in results.md, the plot.

``--from-results`` comes here too: it rebuilds the context of an earlier run
from its results.json (this version's or an earlier one's) and writes the
same report again.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .context import Context, say
from .machine import commit_label
from .plot import plot, plot_delta
from .records import JSON, record_from_json
from .scenarios import SCENARIOS
from .servers import ROOT
from .summary import headline


def variants_of(meta: JSON) -> dict[str, JSON]:
    """The run's wspractice variants by name (an earlier results.json
    without variants had one, called wspractice)."""
    variants: dict[str, JSON] = meta.get("variants") or {}
    if not variants and "wspractice" in meta.get("servers", {}):
        commit = str(meta.get("wspractice_commit", "unknown"))
        variants = {"wspractice": {"commit": {"head": commit}}}
    return variants


def commits_line(meta: JSON) -> str:
    """``wspractice 1234567`` or ``wspractice new 1234567, base 408e545``."""
    variants = variants_of(meta)
    labels = {name: commit_label(v.get("commit") or {}) for name, v in variants.items()}
    if list(labels) == ["wspractice"]:
        return f"wspractice {labels['wspractice']}"
    return "wspractice " + ", ".join(f"{n} {c}" for n, c in labels.items())


def preamble(ctx: Context) -> list[str]:
    meta = ctx.meta
    machine = meta.get("machine", {})
    lines = [
        f"{commits_line(meta)} on {machine.get('cpu')} × {machine.get('cores')},"
        f" {meta.get('date')}; {meta.get('command')}",
        "",
        f"÷ ref: the figure divided by the reference server's, {ctx.reference}"
        " (in the same table and at the same size). CPU in cores (1.0 = one core"
        " busy); gen: the load generator (w: worker processes).",
    ]
    merged = meta.get("merged") or []
    if merged:
        lines += ["", "Runs reported together (their rows in this order):"]
        lines += [f"- {m.get('date')}: {m.get('command')}" for m in merged]
    variants = variants_of(meta).values()
    if len(variants) > 1 or any(
        v.get("args") or v.get("env") or v.get("root", str(ROOT)) != str(ROOT)
        for v in variants
    ):
        lines += ["", "Servers:"]
        for name in ctx.servers:
            about = meta.get("servers", {}).get(name, "")
            lines.append(f"- {name}: {about}")
    return lines


def write_report(ctx: Context) -> None:
    """Print the tables; write results.md and the plot next to results.json."""
    report = preamble(ctx)
    sections = [t for name in ctx.args.scenarios for t in SCENARIOS[name].tables(ctx)]
    summary = headline(ctx, list(variants_of(ctx.meta)))
    if summary:
        sections.append(summary)
    for title, text in sections:
        report += ["", f"### {title}", "", text]
    print("\n".join(report))
    (ctx.out / "results.md").write_text("\n".join(report) + "\n")
    images = []
    if not getattr(ctx.args, "no_plot", False):
        images = [plot(ctx, footer(ctx.meta)), plot_delta(ctx, footer(ctx.meta))]
    say(
        f"==> done in {ctx.meta.get('seconds', 0):g} s: {ctx.out / 'results.json'},"
        f" {ctx.out / 'results.md'}"
        + "".join(f", {image}" for image in images if image)
    )


def footer(meta: JSON) -> str:
    machine = meta.get("machine", {})
    return (
        f"{machine.get('cpu')}, {machine.get('cores')} cores,"
        f" {str(meta.get('date'))[:10]}, {commits_line(meta)}"
    )


def report_again(
    paths: Path | list[Path], output: Path | None, no_plot: bool = False
) -> int:
    """--from-results: the tables and the plot of earlier runs, again.

    Several results.json are reported as one run: their records together,
    in the order given, with the first one's settings and servers (and the
    others' commands and dates in ``meta["merged"]``). Repeated runs of one
    size then show as rows of their own, each delta run beside the full-map
    run it ran with, and the plot draws their median and range.
    """
    paths = [paths] if isinstance(paths, Path) else paths
    runs = [json.loads(path.read_text()) for path in paths]
    meta = dict(runs[0]["meta"])
    if len(runs) > 1:
        meta["merged"] = [
            {
                "file": str(path),
                "date": r["meta"].get("date"),
                "command": r["meta"].get("command"),
            }
            for path, r in zip(paths, runs)
        ]
    args = argparse.Namespace(**meta["settings"])
    args.no_plot = no_plot
    servers = list(meta["servers"])
    for r in runs[1:]:
        servers += [name for name in r["meta"]["servers"] if name not in servers]
    reference = meta.get("reference") or (
        "wspractice" if "wspractice" in servers else servers[0]
    )
    out = output or paths[0].parent
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, servers, reference, out, meta=meta)
    ctx.records = [record_from_json(rec) for r in runs for rec in r["records"]]
    if len(runs) > 1:
        ctx.save()  # The merged records, as one results.json.
    write_report(ctx)
    return 0
