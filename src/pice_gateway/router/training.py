"""Train and measure the router (``pice router train`` / ``pice router eval``).

Data: JSONL lines ``{"question", "label": "outline"|"direct", "category"}``. The shipped sets
(``data/train.jsonl``, ``data/dev.jsonl``) were written for this project, by a rule documented
in ``data/README.md``; no public benchmark question is in them, so a benchmark can be used
to evaluate. A ``.csv`` file is read as the Skeleton-of-Thought authors publish their human
labels (``data/<set>/router.csv`` in their repository: ``label;request``, 1 = suits SoT), so
``pice router eval`` measures agreement with those labels from a clone of that repository.

Training: scikit-learn's ``LogisticRegression`` on the encoder's embeddings of ``train``, its
``C`` chosen by 5-fold cross-validation on ``train`` alone; the decision threshold is 0.5, the
head's own cut, and ``dev`` measures it. The encoder is fine-tuned on these same training
questions (``pice tune router-encoder``), so they sit far from the boundary and the head's
scores are near 0 or 1 on most questions: the most accurate cut on 160 development questions
then follows one or two of them (router-v3: 0.087, one question better on ``dev`` than 0.5,
and worse on every other labelled set). ``tune_threshold`` restores that search (the rule of
router-v1 and -v2, whose encoder had not seen the training set). Deterministic: the same data
and encoder give the same weights.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pice.errors import InvalidRequestError
from pice.openai_protocol import ChatMessage
from pice_gateway.router.assets import encoder_id
from pice_gateway.router.model import ExitHead, Route, RouterWeights, route_text

DATA_DIR = Path(__file__).with_name("data")
LABELS: tuple[Route, Route] = ("direct", "outline")
Embed = Callable[[str], npt.NDArray[np.float32]]
# An encoder's embeddings after each of its stages (``SentenceEncoder.embed_stages``).
Stages = Callable[[str], Iterator[npt.NDArray[np.float32]]]


@dataclass(frozen=True)
class Example:
    question: str
    label: Route
    category: str = ""


def load_examples(path: Path) -> list[Example]:
    if path.suffix == ".csv":
        return load_sot_labels(path)
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        data = json.loads(line)
        label = data.get("label")
        if label not in LABELS:
            raise InvalidRequestError(f"{path}:{number}: label must be outline or direct")
        examples.append(Example(str(data["question"]), label, str(data.get("category", ""))))
    return examples


def load_sot_labels(path: Path) -> list[Example]:
    """Skeleton-of-Thought's router labels: ``label;request`` rows, 1 = outline, 0 = direct
    (requests may span lines, quoted). The category is the set's folder name (``vicuna``)."""
    examples = []
    rows = csv.DictReader(io.StringIO(path.read_text(), newline=""), delimiter=";")
    if rows.fieldnames != ["label", "request"]:
        raise InvalidRequestError(f"{path}: expected the columns label;request")
    for number, row in enumerate(rows, start=1):
        if row["label"] not in ("0", "1"):
            raise InvalidRequestError(f"{path}: row {number}: label must be 0 or 1")
        label: Route = "outline" if row["label"] == "1" else "direct"
        examples.append(Example(row["request"], label, path.parent.name))
    return examples


def data_sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def embed_all(
    examples: Sequence[Example], embed: Embed
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    x = np.stack([embed(e.question) for e in examples])
    y = np.asarray([e.label == "outline" for e in examples], dtype=np.int64)
    return x, y


def embed_stages_all(
    examples: Sequence[Example], stages: Stages
) -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.int64]]:
    """One matrix per stage (questions x width), and the labels."""
    per_question = [list(stages(e.question)) for e in examples]
    counts = {len(s) for s in per_question}
    if len(counts) > 1:
        raise ValueError(f"the encoder gave {sorted(counts)} stages for different questions")
    xs = [np.stack(column) for column in zip(*per_question, strict=True)]
    y = np.asarray([e.label == "outline" for e in examples], dtype=np.int64)
    return xs, y


def best_threshold(scores: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> float:
    """The cut (between two observed scores) with the best accuracy; ties: nearest 0.5."""
    observed = np.unique(scores)
    mids = np.concatenate([[0.0, 0.5], (observed[:-1] + observed[1:]) / 2, [1.0]])
    accuracy = [float(np.mean((scores >= t) == (y == 1))) for t in mids]
    best = max(accuracy)
    ties = [t for t, a in zip(mids, accuracy, strict=True) if a == best]
    nearest = min(ties, key=lambda t: abs(float(t) - 0.5))
    return round(float(nearest), 4)


def prior_threshold(train_share: float, deploy_share: float) -> float:
    """The head's cut moved for another class prior (Saerens, Latinne & Decaestecker, 2002).

    A logistic head trained where a share ``train_share`` of questions is "outline" has that
    prior in its log-odds; where ``deploy_share`` are, the posterior's log-odds move by
    ``logit(deploy_share) - logit(train_share)``. Deciding "outline" when the moved posterior
    is at least 0.5 is deciding it when the head's own score is at least the value returned.
    """
    for share in (train_share, deploy_share):
        if not 0.0 < share < 1.0:
            raise ValueError(f"a class share must be strictly between 0 and 1, not {share}")

    def logit(p: float) -> float:
        return math.log(p / (1.0 - p))

    return round(1.0 / (1.0 + math.exp(logit(deploy_share) - logit(train_share))), 4)


def fit_head(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    sample_weight: npt.NDArray[np.float64] | None = None,
) -> tuple[Any, float, float]:
    """The logistic head, its ``C`` chosen by 5-fold cross-validated accuracy:
    (model, C, that accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    search = GridSearchCV(
        LogisticRegression(max_iter=5000),
        {"C": [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]},
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="accuracy",
    )
    search.fit(x, y, sample_weight=sample_weight)
    return search.best_estimator_, float(search.best_params_["C"]), float(search.best_score_)


def train(
    stages: Stages,
    train_path: Path,
    dev_path: Path,
    *,
    version: str,
    log: Callable[[str], None],
    tune_threshold: bool = False,
    deploy_outline_share: float | None = None,
    exits: Sequence[int] = (),
    exit_confidence: float = 0.95,
) -> RouterWeights:
    """Fit the final head on the encoder's last stage, and an exit head on each earlier one
    (``stages`` must give one stage per block in ``exits``, then the whole encoder's)."""
    train_set, dev_set = load_examples(train_path), load_examples(dev_path)
    log(f"embedding {len(train_set)} training and {len(dev_set)} development questions")
    xs, y = embed_stages_all(train_set, stages)
    xs_dev, y_dev = embed_stages_all(dev_set, stages)
    if len(xs) != len(exits) + 1:
        raise ValueError(f"{len(xs)} encoder stages for exits after blocks {list(exits)}")
    x, x_dev = xs[-1], xs_dev[-1]
    model, c, cv_accuracy = fit_head(x, y)
    log(f"C={c}: cross-validated accuracy {cv_accuracy:.3f}")
    dev_scores = model.predict_proba(x_dev)[:, 1]
    threshold, threshold_from, prior = 0.5, "fixed", {}
    if tune_threshold:
        threshold, threshold_from = best_threshold(dev_scores, y_dev), "dev"
    elif deploy_outline_share is not None:
        prior = {
            "train_outline_share": float(np.mean(y)),
            "deploy_outline_share": deploy_outline_share,
        }
        threshold = prior_threshold(*prior.values())
        threshold_from = "prior: outline share {:.4f} in training, {}".format(*prior.values())
    dev_accuracy = float(np.mean((dev_scores >= threshold) == (y_dev == 1)))
    log(f"threshold {threshold} (dev accuracy {dev_accuracy:.3f})")
    heads, exit_meta = [], []
    for block, x_exit in zip(exits, xs[:-1], strict=True):
        exit_model, exit_c, exit_cv = fit_head(x_exit, y)
        heads.append(
            ExitHead(
                block=block,
                coef=tuple(float(v) for v in exit_model.coef_[0]),
                intercept=float(exit_model.intercept_[0]),
            )
        )
        log(f"exit after block {block}: C={exit_c}, cross-validated accuracy {exit_cv:.3f}")
        exit_meta.append({"block": block, "C": exit_c, "cv_accuracy": round(exit_cv, 4)})
    weights = RouterWeights(
        version=version,
        encoder=encoder_id(),
        coef=tuple(float(c) for c in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        threshold=threshold,
        meta={
            "data_sha256": data_sha256(train_path, dev_path),
            "train_examples": len(train_set),
            "dev_examples": len(dev_set),
            "C": c,
            "cv_accuracy": round(cv_accuracy, 4),
            "dev_accuracy": round(dev_accuracy, 4),
            "threshold_from": threshold_from,
            **prior,
            **({"exits": exit_meta} if exit_meta else {}),
        },
        exits=tuple(heads),
        exit_confidence=exit_confidence,
    )
    if heads:
        # How often the exits decide on the development set (its embeddings, already made),
        # and whether as the final head.
        exited = same = 0
        for index, final in enumerate(dev_scores):
            question_stages = iter([x_stage[index] for x_stage in xs_dev])
            decision = weights.decide_staged(question_stages, threshold)
            if decision.exit_block is not None:
                exited += 1
                same += decision.route == ("outline" if final >= threshold else "direct")
        weights.meta["dev_exit_share"] = round(exited / len(dev_set), 4)
        weights.meta["dev_exit_same_as_final"] = round(same / max(exited, 1), 4)
        log(f"development set: {exited} of {len(dev_set)} exit early, {same} as the final head")
    return weights


@dataclass(frozen=True)
class Evaluation:
    n: int
    accuracy: float
    ci95: tuple[float, float]
    confusion: dict[str, int]
    by_category: dict[str, tuple[int, int]]  # category -> (right, total)
    latency_ms_p50: float
    latency_ms_p95: float
    errors: list[dict[str, Any]]
    # How many questions each exit decided ("final": the whole encoder).
    exits: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "ci95": [round(self.ci95[0], 4), round(self.ci95[1], 4)],
            "confusion": self.confusion,
            "by_category": {k: {"right": r, "total": t} for k, (r, t) in self.by_category.items()},
            "latency_ms_p50": round(self.latency_ms_p50, 3),
            "latency_ms_p95": round(self.latency_ms_p95, 3),
            "exits": self.exits,
            "errors": self.errors,
        }


def bootstrap_ci(
    values: Sequence[float], rounds: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of ``values`` (hits, or paired differences)."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def evaluate(
    examples: Sequence[Example],
    stages: Stages,
    weights: RouterWeights,
    threshold: float | None = None,
) -> Evaluation:
    """Accuracy against the labels, with a bootstrap interval; per-question decision latency
    (embedding + heads, the whole decision the gateway makes, early exits included). Each
    question is read as the gateway reads a user's message (:func:`route_text`: the end of a
    long one). ``stages`` must match the weights' exits (one stage per exit, then the last)."""
    hits: list[bool] = []
    exits: dict[str, int] = {}
    latencies: list[float] = []
    confusion = {f"{t}->{p}": 0 for t in LABELS for p in LABELS}
    by_category: dict[str, list[int]] = {}
    errors = []
    for index, example in enumerate(examples):
        started = time.perf_counter()
        text = route_text([ChatMessage(role="user", content=example.question)])
        decision = weights.decide_staged(stages(text), threshold)
        latencies.append((time.perf_counter() - started) * 1000.0)
        exits[decision.decided_at] = exits.get(decision.decided_at, 0) + 1
        hit = decision.route == example.label
        hits.append(hit)
        confusion[f"{example.label}->{decision.route}"] += 1
        tally = by_category.setdefault(example.category or "-", [0, 0])
        tally[0] += hit
        tally[1] += 1
        if not hit:
            errors.append(
                {
                    "index": index,
                    "question": example.question,
                    "label": example.label,
                    "score": decision.score,
                }
            )
    return Evaluation(
        n=len(hits),
        accuracy=sum(hits) / max(len(hits), 1),
        ci95=bootstrap_ci(hits) if hits else (0.0, 0.0),
        confusion=confusion,
        by_category={k: (v[0], v[1]) for k, v in sorted(by_category.items())},
        latency_ms_p50=statistics.median(latencies) if latencies else 0.0,
        latency_ms_p95=float(np.percentile(latencies, 95)) if latencies else 0.0,
        errors=errors,
        exits=dict(sorted(exits.items())),
    )
