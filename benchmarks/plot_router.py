"""Two routers' agreement with each labelled set, drawn against always-direct and the target.

Reads a ``benchmarks/router_paired.py`` output (router "a" and "b" on every set, and the share
labelled direct) and, with ``--seeds``, a ``benchmarks/router_seeds.py`` output (router "b"'s
recipe fitted again at other seeds and data): per set, always-direct's agreement as a bar, each
router's as a point with its Wilson 95% interval (binomial, over the set's questions), the
range over the refits as a band, and the issue's 90% target as a line. Prints the table drawn.

    python benchmarks/plot_router.py benchmarks/results/router_v2_v3_paired.json \\
        --seeds benchmarks/results/router_v3_seeds.json --names router-v2,router-v3 \\
        --label "vicuna=Vicuna-80, human (not clean)" --out docs/img/router_agreement.png

A set's short name (what ``--label`` and the seeds file use) is the folder of a SoT
``router.csv`` (``vicuna``), otherwise the file's stem up to its first ``_`` (``bench``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pice_bench.figures import figure

TARGET = 0.9


@dataclass(frozen=True)
class SetRow:
    short: str
    label: str
    n: int
    always_direct: float
    a: float
    b: float
    refits: tuple[float, float] | None  # min, max of b's recipe over refits


def short_name(path: str) -> str:
    p = Path(path)
    return p.parent.name if p.name == "router.csv" else p.stem.split("_")[0]


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` of ``n`` (never outside [0, 1])."""
    if n <= 0:
        raise ValueError("an interval needs at least one question")
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def refit_ranges(seeds: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per set, the lowest and highest agreement over every fit the seeds file holds."""
    fits = [seeds["shipped_964"], *seeds.get("runs_964", []), *seeds.get("runs_967", [])]
    names = {k for fit in fits for k, v in fit.items() if isinstance(v, int | float)}
    return {
        k: (min(f[k] for f in fits if k in f), max(f[k] for f in fits if k in f)) for k in names
    }


def read(
    paired: dict[str, Any], seeds: dict[str, Any] | None, labels: dict[str, str]
) -> list[SetRow]:
    ranges = refit_ranges(seeds) if seeds else {}
    rows = []
    for path, row in paired.items():
        if not isinstance(row, dict):
            continue  # "a"/"b": which routers were compared
        short = short_name(path)
        rows.append(
            SetRow(
                short,
                labels.get(short, short),
                int(row["n"]),
                float(row["always_direct"]),
                float(row["a"]),
                float(row["b"]),
                ranges.get(short),
            )
        )
    if not rows:
        raise SystemExit("the paired file holds no labelled set")
    return rows


def plot(rows: list[SetRow], names: tuple[str, str], out: Path) -> None:
    with figure(out, size=(10, 0.9 * len(rows) + 1.8)) as (_, ax):
        ys = list(range(len(rows)))[::-1]
        for y, r in zip(ys, rows, strict=True):
            first = y == ys[0]
            ax.barh(
                y,
                r.always_direct,
                height=0.6,
                color="0.88",
                label="always direct" if first else None,
            )
            if r.refits:
                ax.plot(
                    r.refits,
                    [y - 0.22] * 2,
                    color="C1",
                    linewidth=5,
                    alpha=0.35,
                    label=f"{names[1]}, range over refits" if first else None,
                )
            sides = ((0.12, r.a, names[0], "C0"), (-0.12, r.b, names[1], "C1"))
            for offset, value, name, colour in sides:
                low, high = wilson(value, r.n)
                ax.errorbar(
                    value,
                    y + offset,
                    xerr=[[value - low], [high - value]],
                    fmt="o",
                    color=colour,
                    capsize=3,
                    label=name if first else None,
                )
        ax.axvline(TARGET, color="C3", linestyle="--", linewidth=1, label="target 90%")
        ax.set_yticks(ys, [f"{r.label} (n={r.n})" for r in rows])
        ax.set_xlim(0.3, 1.01)
        ax.set_xlabel("agreement with the set's labels (Wilson 95% interval)")
        ax.set_title("Router: outline or direct, against labelled sets", fontsize=10, loc="left")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.4, -0.1), ncol=5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paired", type=Path, help="a router_paired.py output")
    parser.add_argument("--seeds", type=Path, help="a router_seeds.py output (router b's refits)")
    parser.add_argument("--names", default="a,b", help="the two routers' names, a then b")
    parser.add_argument("--label", action="append", default=[], help="SHORT=TEXT for a set")
    parser.add_argument("--out", type=Path, required=True, help="the plot (PNG)")
    args = parser.parse_args()
    labels = dict(spec.partition("=")[::2] for spec in args.label)
    a_name, _, b_name = args.names.partition(",")
    seeds = json.loads(args.seeds.read_text()) if args.seeds else None
    rows = read(json.loads(args.paired.read_text()), seeds, labels)
    w = sys.stdout.write
    w(f"| set | n | always direct | {a_name} | {b_name} [Wilson 95%] | {b_name} refits |\n")
    w("|---|---|---|---|---|---|\n")
    for r in rows:
        low, high = wilson(r.b, r.n)
        spread = f"{r.refits[0]:.1%}–{r.refits[1]:.1%}" if r.refits else "–"
        w(
            f"| {r.label} | {r.n} | {r.always_direct:.1%} | {r.a:.1%} | "
            f"{r.b:.1%} [{low:.1%}, {high:.1%}] | {spread} |\n"
        )
    plot(rows, (a_name, b_name or "b"), args.out)
    w(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
