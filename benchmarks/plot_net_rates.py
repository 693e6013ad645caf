"""Net win rates of several judgments side by side, as a table and a plot with their intervals.

Each argument is ``LABEL=FILE`` (a ``benchmarks/rejudge.py`` output; its one pair, or the pair
named by ``--pair``): the expected-grade net win rate of the chosen group with its bootstrap
95% interval and W/L/T, printed as a table and drawn as points with error bars.

``--pool LABEL`` adds a row for all the judgments together: every judged pair of every file
counts once, and the interval resamples *questions* (a question drawn brings its pairs from
every run), so repeated runs of one question set narrow it only as far as the runs disagree.

    python benchmarks/plot_net_rates.py "frame off=R/plain_vs_cloud.json" \\
        "frame on=R/framed_vs_cloud.json" --out R/net_rates.png
    python benchmarks/plot_net_rates.py "run 1=R1/j.json" "run 2=R2/j.json" --pool "both runs" \\
        --group suitable --out R/pooled.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pice_bench.figures import figure
from pice_bench.stats import bootstrap_interval
from pice_bench.winrate import Outcome, WinRate, pooled_net

# Which judged records a group holds (rejudge.py's groups, by the question's label).
_GROUPS = {"all": None, "suitable": True, "not suitable": False}


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


def _pair(spec: str, pair: str | None) -> tuple[str, dict[str, Any]]:
    label, sep, path = spec.partition("=")
    if not sep:
        raise SystemExit(f"expected LABEL=FILE, got {spec!r}")
    pairs = json.loads(Path(path).read_text())["pairs"]
    return label, pairs[pair or next(iter(pairs))]


def read(spec: str, pair: str | None, group: str) -> NetRate:
    label, judged = _pair(spec, pair)
    row = judged["groups"][group]
    e = row["expected"]
    return NetRate(label, row["n"], e["wins"], e["losses"], e["ties"], e["net"], *e["ci95"])


def pooled(label: str, specs: list[str], pair: str | None, group: str) -> NetRate:
    """Every judged pair of the group in every file, one net win rate; its interval from
    resampling questions, each with all of its runs' outcomes."""
    if group not in _GROUPS:
        raise SystemExit(f"--pool knows the groups {sorted(_GROUPS)}, not {group!r}")
    by_question: dict[str, list[Outcome]] = defaultdict(list)
    for spec in specs:
        for record in _pair(spec, pair)[1]["records"]:
            if _GROUPS[group] in (None, record["suits_points"]):
                by_question[record["question_id"]].append(Outcome(record["outcome"]))
    clusters = list(by_question.values())
    total = WinRate.of(o for c in clusters for o in c)
    if not total.n:
        raise SystemExit(f"no judged pair in group {group!r}")
    low, high = bootstrap_interval(clusters, pooled_net)
    return NetRate(label, total.n, total.wins, total.losses, total.ties, total.net, low, high)


def plot(rates: list[NetRate], title: str, out: Path) -> None:
    with figure(out, size=(10, 0.7 * len(rates) + 1.6)) as (_, ax):
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("judgments", nargs="+", help="LABEL=FILE, a rejudge.py output")
    parser.add_argument("--pair", default=None, help="CANDIDATE:BASELINE (default: the first)")
    parser.add_argument("--group", default="suitable", help="suitable, not suitable, all")
    parser.add_argument("--title", default="PICE against cloud-only, judged pairwise")
    parser.add_argument("--pool", metavar="LABEL", help="add a row: all judgments pooled")
    parser.add_argument("--out", type=Path, required=True, help="the plot (PNG)")
    args = parser.parse_args()
    rates = [read(spec, args.pair, args.group) for spec in args.judgments]
    if args.pool:
        rates.append(pooled(args.pool, args.judgments, args.pair, args.group))
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
