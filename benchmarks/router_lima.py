"""What the Skeleton-of-Thought authors' published training labels would buy the router.

The SoT authors label 1030 LIMA questions "suits SoT or not" (their ``data/lima/router.csv``)
to train their router. This script fits a candidate head on the project's training set plus
those labels and writes its weights, for ``pice router eval --weights`` to compare with the
shipped head on other human labels (their Vicuna-80 and WizardLM sets). The recipe was fixed
before either set was scored (docs/benchmarks.md, "The router against human labels"):

- data: ``train.jsonl`` and every LIMA question, the LIMA ones at sample weight 0.5 (of 0.25,
  0.5 and 1, the best LIMA accuracy in a 5-fold comparison on LIMA and the development set);
- ``C`` by 5-fold cross-validation, as ``pice router train`` chooses it;
- threshold: the best accuracy over ``dev.jsonl`` and LIMA's 5-fold out-of-fold scores.

It is not shipped: LIMA's questions are CC BY-NC-SA, and on LIMA itself it gains little.

    python benchmarks/router_lima.py SOT_CLONE/data/lima/router.csv --out /tmp/router-lima.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pice_gateway.router.assets import encoder_id, provision_encoder
from pice_gateway.router.encoder import SentenceEncoder
from pice_gateway.router.model import RouterWeights
from pice_gateway.router.training import (
    DATA_DIR,
    best_threshold,
    embed_all,
    fit_head,
    load_examples,
)

LIMA_WEIGHT = 0.5


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lima", type=Path, help="SoT's data/lima/router.csv")
    parser.add_argument("--out", type=Path, required=True, help="weights JSON to write")
    args = parser.parse_args()

    encoder = SentenceEncoder(provision_encoder(pull=False))
    tx, ty = embed_all(load_examples(DATA_DIR / "train.jsonl"), encoder.embed)
    dx, dy = embed_all(load_examples(DATA_DIR / "dev.jsonl"), encoder.embed)
    lx, ly = embed_all(load_examples(args.lima), encoder.embed)

    def weights(n_lima: int) -> npt.NDArray[np.float64]:
        return np.concatenate([np.ones(len(ty)), np.full(n_lima, LIMA_WEIGHT)])

    model, c, _ = fit_head(np.vstack([tx, lx]), np.concatenate([ty, ly]), weights(len(ly)))
    oof = np.zeros(len(ly))
    for train_idx, test_idx in StratifiedKFold(5, shuffle=True, random_state=2).split(lx, ly):
        part = LogisticRegression(max_iter=5000, C=c).fit(
            np.vstack([tx, lx[train_idx]]),
            np.concatenate([ty, ly[train_idx]]),
            sample_weight=weights(len(train_idx)),
        )
        oof[test_idx] = part.predict_proba(lx[test_idx])[:, 1]
    dev_scores = model.predict_proba(dx)[:, 1]
    threshold = best_threshold(np.concatenate([dev_scores, oof]), np.concatenate([dy, ly]))
    dev_accuracy = float(np.mean((dev_scores >= threshold) == (dy == 1)))
    oof_accuracy = float(np.mean((oof >= threshold) == (ly == 1)))
    RouterWeights(
        version="router-lima-candidate",
        encoder=encoder_id(),
        coef=tuple(float(v) for v in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        threshold=threshold,
        meta={
            "lima_weight": LIMA_WEIGHT,
            "C": c,
            "dev_accuracy": round(dev_accuracy, 4),
            "lima_out_of_fold_accuracy": round(oof_accuracy, 4),
        },
    ).save(args.out)
    sys.stdout.write(
        f"C={c} threshold={threshold} dev accuracy {dev_accuracy:.3f} "
        f"LIMA out-of-fold accuracy {oof_accuracy:.3f} -> {args.out}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
