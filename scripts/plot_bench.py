#!/usr/bin/env python3
"""Plot keywarden-bench concurrency sweeps.

Reads one or more reports written by `keywarden-bench --sweep ... --json FILE`
(typically one per operation mix) and draws a PNG with two panels:
throughput (requests/s) against concurrency, and p99 latency (ms) against
concurrency, one line per file labelled by its mix.

    python3 scripts/plot_bench.py --out docs/bench-concurrency.png gdk.json decrypt.json

Needs matplotlib (install it in a virtualenv: `pip install matplotlib`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load_series(path: Path) -> dict:
    """The label and (concurrency, req/s, p99 ms) points of one report."""
    with path.open() as f:
        report = json.load(f)
    rows = report.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: no 'rows' in this file; is it a keywarden-bench --json report?")
    points = sorted(
        (
            int(row["concurrency"]),
            float(row["requests_per_s"]),
            float(row["latency_us"]["p99"]) / 1000.0,
            int(row.get("errors", 0)),
        )
        for row in rows
    )
    label = report.get("mix") or path.stem
    kind = (report.get("target") or {}).get("kind")
    if kind == "spawn-baseline":
        label = f"baseline (no-op server), {label}"
    return {"label": label, "path": path, "points": points, "report": report}


def subtitle(series: list[dict]) -> str:
    """What the runs had in common: pinning and measurement window."""
    first = series[0]["report"]
    parts = []
    gen = first.get("generator_cpus_allowed")
    srv = first.get("server_cpus_allowed")
    if gen and srv:
        parts.append(f"generator CPUs {gen}, server CPUs {srv} ({first.get('pinning', '?')})")
    stop = first.get("stop") or {}
    if "duration_s" in stop:
        parts.append(f"{stop['duration_s']:g} s per level")
    elif "requests" in stop:
        parts.append(f"{stop['requests']} requests per level")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="keywarden-bench --json files")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--title", default="Keywarden: throughput and p99 latency vs concurrency")
    args = parser.parse_args(argv)

    try:
        series = [load_series(p) for p in args.reports]
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        print(f"plot_bench: {e}", file=sys.stderr)
        return 1

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.8))
    for s in series:
        conc = [p[0] for p in s["points"]]
        rps = [p[1] for p in s["points"]]
        p99 = [p[2] for p in s["points"]]
        (line,) = ax_rps.plot(conc, rps, marker="o", label=s["label"])
        ax_p99.plot(conc, p99, marker="o", color=line.get_color(), label=s["label"])
        # Mark levels that had failed requests: their numbers are suspect.
        for c, r, q, errors in s["points"]:
            if errors:
                ax_rps.annotate(f"{errors} errors", (c, r), fontsize=7, color="red")
                ax_p99.annotate(f"{errors} errors", (c, q), fontsize=7, color="red")

    levels = sorted({p[0] for s in series for p in s["points"]})
    for ax, ylabel in ((ax_rps, "throughput (requests/s)"), (ax_p99, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels)
        ax.set_xticklabels([str(c) for c in levels])
        ax.set_xlabel("concurrency (connections, one request in flight each)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(True, which="major", alpha=0.3)
    ax_rps.set_title("Throughput")
    ax_p99.set_title("p99 latency")
    ax_rps.legend(fontsize=8)
    fig.suptitle(args.title)
    sub = subtitle(series)
    if sub:
        fig.text(0.5, 0.005, sub, ha="center", va="bottom", fontsize=8, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, 1))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
