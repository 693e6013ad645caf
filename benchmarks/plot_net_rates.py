"""Net win rates of several judgments side by side, as a table and a plot with their intervals.

Each argument is ``LABEL=FILE`` (a ``benchmarks/rejudge.py`` output; its one pair, or the pair
named by ``--pair``): the expected-grade net win rate of the chosen group with its bootstrap
95% interval and W/L/T, printed as a table and drawn as points with error bars.

    python benchmarks/plot_net_rates.py "frame off=R/plain_vs_cloud.json" \\
        "frame on=R/framed_vs_cloud.json" --out R/net_rates.png
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@dataclass(frozen=True)
class NetRate:
    label: str
    n: int
    wins: int
    losses: int
    ties: int
    net: float
    low: float
    high: float


def read(spec: str, pair: str | None, group: str) -> NetRate:
    label, sep, path = spec.partition("=")
    if not sep:
        raise SystemExit(f"expected LABEL=FILE, got {spec!r}")
    pairs = json.loads(Path(path).read_text())["pairs"]
    name = pair or next(iter(pairs))
    row = pairs[name]["groups"][group]
    e = row["expected"]
    return NetRate(label, row["n"], e["wins"], e["losses"], e["ties"], e["net"], *e["ci95"])


def plot(rates: list[NetRate], title: str, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 0.7 * len(rates) + 1.6))
    ys = list(range(len(rates)))[::-1]
    for y, r in zip(ys, rates, strict=True):
        ax.errorbar(r.net, y, xerr=[[r.net - r.low], [r.high - r.net]], fmt="o", capsize=4)
        ax.annotate(f"{r.wins}/{r.losses}/{r.ties}", (r.net, y), xytext=(0, 8),
                    textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks(ys, [f"{r.label} (n={r.n})" for r in rates])
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(-0.6, len(rates) - 0.4)
    ax.set_xlabel("net win rate (expected grades), bootstrap 95% interval; W/L/T above")
    ax.set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("judgments", nargs="+", help="LABEL=FILE, a rejudge.py output")
    parser.add_argument("--pair", default=None, help="CANDIDATE:BASELINE (default: the first)")
    parser.add_argument("--group", default="suitable", help="suitable, not suitable, all")
    parser.add_argument("--title", default="PICE against cloud-only, judged pairwise")
    parser.add_argument("--out", type=Path, required=True, help="the plot (PNG)")
    args = parser.parse_args()
    rates = [read(spec, args.pair, args.group) for spec in args.judgments]
    w = sys.stdout.write
    w("| judgment | n | W/L/T | net [95% CI] |\n|---|---|---|---|\n")
    for r in rates:
        w(f"| {r.label} | {r.n} | {r.wins}/{r.losses}/{r.ties} | "
          f"{r.net:+.2f} [{r.low:+.2f}, {r.high:+.2f}] |\n")  # fmt: skip
    plot(rates, args.title, args.out)
    w(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
