"""How sure the shipped router is where it disagrees with a set's labels, and what any cut buys.

A threshold can only fix errors whose score sits near it. Per labelled file: the errors at the
shipped cut by their score (confident: >= 0.9 or < 0.1), and the agreement at a range of cuts,
so a reader sees whether calibration or the embedding is the limit. No question text is
printed or written (sets you do not publish stay unread):

    python benchmarks/router_confidence.py sot/data/wizardlm/router.csv sot/data/lima/router.csv \\
        --out benchmarks/results/router_confidence.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pice_gateway.router.assets import provision_encoder
from pice_gateway.router.encoder import SentenceEncoder
from pice_gateway.router.model import BUNDLED_WEIGHTS, RouterWeights
from pice_gateway.router.training import load_examples

CUTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def summarise(scored: list[tuple[float, bool]], cut: float) -> dict[str, Any]:
    """``scored``: (score, labelled outline) per question."""
    n = len(scored)
    wrong_outline = [s for s, outline in scored if not outline and s >= cut]
    wrong_direct = [s for s, outline in scored if outline and s < cut]
    return {
        "n": n,
        "agreement": round(sum((s >= cut) == outline for s, outline in scored) / n, 4),
        "direct_to_outline": len(wrong_outline),
        "direct_to_outline_score_ge_0.9": sum(s >= 0.9 for s in wrong_outline),
        "outline_to_direct": len(wrong_direct),
        "outline_to_direct_score_lt_0.1": sum(s < 0.1 for s in wrong_direct),
        "scores_between_0.1_and_0.9": sum(0.1 <= s < 0.9 for s, _ in scored),
        "agreement_by_cut": {
            str(c): round(sum((s >= c) == outline for s, outline in scored) / n, 4) for c in CUTS
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+", help="labelled JSONL or SoT router.csv")
    parser.add_argument("--weights", type=Path, default=BUNDLED_WEIGHTS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    weights = RouterWeights.load(args.weights)
    encoder = SentenceEncoder(provision_encoder(None))
    report: dict[str, Any] = {"weights": weights.version, "threshold": weights.threshold}
    out = sys.stdout
    out.write(
        f"{weights.version}, cut {weights.threshold}\n"
        "| data | n | agreement | direct→outline (score ≥ 0.9) | outline→direct (score < 0.1) "
        "| scores in [0.1, 0.9) | best agreement at any cut |\n|---|---|---|---|---|---|---|\n"
    )
    for path in args.data:
        examples = load_examples(path)
        scored = [
            (weights.score(encoder.embed(e.question)), e.label == "outline") for e in examples
        ]
        row = summarise(scored, weights.threshold)
        best = max(row["agreement_by_cut"].items(), key=lambda kv: kv[1])
        out.write(
            f"| {path.parent.name}/{path.name} | {row['n']} | {row['agreement']:.3f} | "
            f"{row['direct_to_outline']} ({row['direct_to_outline_score_ge_0.9']}) | "
            f"{row['outline_to_direct']} ({row['outline_to_direct_score_lt_0.1']}) | "
            f"{row['scores_between_0.1_and_0.9']} | {best[1]:.3f} at {best[0]} |\n"
        )
        report[str(path)] = row
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
