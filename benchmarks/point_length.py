"""Can the gateway predict a point's length before it is decoded? Measured on recorded answers.

Every ``pice bench`` record under ``benchmarks/results/`` keeps each progressive answer's text,
rendered ``"{n}. **{title}**: {body}"`` per point (``progressive/merge.py``). The body's token
count (the Qwen2.5 tokenizer, read from a GGUF with ``vocab_only``) is the point's length: the
sum over an answer matches its recorded ``edge_completion`` within a few tokens. Answers whose
points the cloud expanded (``sot-cloud``) are left out.

Signals tried, each what the gateway could see when it places the point:

- **budget**: the point's ``max_tokens`` is one number for every point of a request (the
  request's limit split evenly, ``progressive/spec.py``), so it cannot rank a request's points;
  it caps them, which matters only if points reach it (``longest`` below: they rarely do);
- **title features**: words and characters of the title, the point's index, the question's
  length, a log-linear least-squares fit;
- **embeddings**: the router's sentence encoder (all-MiniLM-L6-v2, already in the gateway) of
  the title, the question, and both, ridge regression on log length;
- **hint** (``--hint-gguf``): the cloud model asked, after the fact, to rate each point of a
  recorded outline short / medium / long (what a sketch prompt asking for a length hint would
  get; distinct outlines, one prompt each, greedy).

Every fit is scored on questions it never saw (5 folds by question; the same question appears
in several records, so a split by point would leak): held-out R² of log length against the
training mean, the residual's standard deviation in log space (the simulator's noise), and the
median relative error. "Same point, another run" pairs the lengths of one (question, index,
title) across records: how far sampling alone moves a length, the most any predictor could
explain.

    python benchmarks/point_length.py --gguf ~/.cache/pice/models/qwen2.5-0.5b-instruct-q8_0.gguf \\
        --out benchmarks/results/sim_sched/point_length.json
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

RESULTS = Path(__file__).parent / "results"
QUESTIONS = Path(__file__).parent / "questions.jsonl"
POINT_LINE = re.compile(r"^(\d+)\. \*\*(.*?)\*\*: ?(.*)$")
FOLDS = 5


@dataclass(frozen=True)
class Point:
    run: str
    answer: int  # index of the answer in all records
    question_id: str
    category: str
    question: str
    points: int  # k of its outline
    index: int
    title: str
    tokens: int


def load_points(gguf: Path) -> list[Point]:
    from llama_cpp import Llama

    vocab = Llama(str(gguf), vocab_only=True, verbose=False)
    questions = {q["id"]: q for q in map(json.loads, QUESTIONS.read_text().splitlines())}
    out: list[Point] = []
    answer = 0
    for path in sorted(RESULTS.glob("**/results.json")):
        record = json.loads(path.read_text())
        run = str(path.parent.relative_to(RESULTS))
        for request in record["requests"]:
            reply = request["answer"]
            if not reply or not reply.get("points") or not reply["tokens"]["edge_completion"]:
                continue
            answer += 1
            for line in reply["text"].split("\n"):
                match = POINT_LINE.match(line)
                if match is None:
                    continue
                body = match.group(3)
                tokens = len(vocab.tokenize(body.encode(), add_bos=False, special=False))
                question = questions[request["question_id"]]
                out.append(
                    Point(
                        run,
                        answer,
                        request["question_id"],
                        question["category"],
                        question["question"],
                        len(reply["points"]),
                        int(match.group(1)) - 1,
                        match.group(2),
                        max(1, tokens),
                    )
                )
    return out


Matrix = npt.NDArray[np.float64]


def grouped_cv(
    x: Matrix, y: Matrix, groups: list[str], *, ridge: float = 0.0, seed: int = 0
) -> dict[str, float]:
    """Held-out R², residual σ (log) and median |relative error| over folds by question."""
    ids = sorted(set(groups))
    random.Random(seed).shuffle(ids)
    g = np.array(groups)
    sse = sse0 = 0.0
    residuals: list[float] = []
    baseline: list[float] = []
    for fold in range(FOLDS):
        test = np.isin(g, ids[fold::FOLDS])
        train = ~test
        mean = float(y[train].mean())
        if x.shape[1]:
            centre = x[train].mean(axis=0)
            a = x[train] - centre
            w = np.linalg.solve(
                a.T @ a + ridge * np.eye(a.shape[1]) + 1e-9, a.T @ (y[train] - mean)
            )
            predicted = (x[test] - centre) @ w + mean
        else:
            predicted = np.full(int(test.sum()), mean)
        sse += float(np.sum((y[test] - predicted) ** 2))
        sse0 += float(np.sum((y[test] - mean) ** 2))
        residuals += list(y[test] - predicted)
        baseline += list(y[test] - mean)
    res = np.array(residuals)
    return {
        "heldout_r2": round(1.0 - sse / sse0, 3),
        "sigma_log": round(float(res.std()), 3),
        "sigma_log_mean_only": round(float(np.std(baseline)), 3),
        "median_rel_error": round(float(np.median(np.abs(np.exp(-res) - 1.0))), 3),
        "median_rel_error_mean_only": round(
            float(np.median(np.abs(np.exp(-np.array(baseline)) - 1.0))), 3
        ),
    }


def features(points: list[Point], names: list[str]) -> Matrix:
    def one(p: Point) -> list[float]:
        f = {
            "title_words": float(len(p.title.split())),
            "title_chars": float(len(p.title)),
            "index": float(p.index),
            "log_question_words": math.log(len(p.question.split())),
        }
        return [f[n] for n in names]

    return np.array([one(p) for p in points], dtype=np.float64).reshape(len(points), len(names))


def embeddings(points: list[Point], text: str) -> Matrix:
    from pice_gateway.router.assets import provision_encoder
    from pice_gateway.router.encoder import SentenceEncoder

    encoder = SentenceEncoder(provision_encoder(pull=False))
    cache: dict[str, Matrix] = {}

    def embed(s: str) -> Matrix:
        if s not in cache:
            cache[s] = encoder.embed(s).astype(np.float64)
        return cache[s]

    def source(p: Point) -> str:
        return {
            "title": p.title,
            "question": p.question,
            "question+title": f"{p.question} {p.title}",
        }[text]

    return np.array([embed(source(p)) for p in points])


HINT_PROMPT = (
    "Question: {question}\n\nOutline of the answer:\n{outline}\n\nEach point will be explained "
    "in its own paragraph. Rate how much explanation each point needs: S (one short sentence), "
    "M (two or three sentences) or L (a long paragraph). Reply with one line per point in the "
    "form '<point number>. <S, M or L>'."
)
# A 1.5B model asked for a number of words copies the prompt's example or its placeholder
# (tried); a three-level rating it answers. The levels as words, for a log-linear fit.
HINT_WORDS = {"S": 15.0, "M": 35.0, "L": 70.0}


def hints(points: list[Point], gguf: Path, limit: int) -> dict[int, dict[int, float]]:
    """Per answer (first ``limit`` distinct outlines), the model's rating per point, as words."""
    from llama_cpp import Llama

    model = Llama(str(gguf), n_ctx=1024, n_threads=1, verbose=False)
    outlines: dict[tuple[str, tuple[str, ...]], int] = {}
    by_answer: dict[int, list[Point]] = collections.defaultdict(list)
    for p in points:
        by_answer[p.answer].append(p)
    for answer, ps in by_answer.items():
        key = (ps[0].question_id, tuple(p.title for p in ps))
        outlines.setdefault(key, answer)
    chosen = list(outlines.items())
    random.Random(0).shuffle(chosen)
    rated: dict[tuple[str, tuple[str, ...]], dict[int, float]] = {}
    for key, answer in chosen[:limit]:
        titles = key[1]
        question = by_answer[answer][0].question
        outline = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(titles))
        reply = model.create_chat_completion(
            messages=[
                {"role": "user", "content": HINT_PROMPT.format(question=question, outline=outline)}
            ],
            temperature=0.0,
            max_tokens=24 * len(titles) + 8,
        )
        text = str(reply["choices"][0]["message"]["content"])  # type: ignore[index]
        words: dict[int, float] = {}
        for m in re.finditer(r"^\s*(\d+)\.(.*)$", text, re.MULTILINE):
            levels = re.findall(r"\b([SML])\b", m.group(2))
            if levels:
                words[int(m.group(1)) - 1] = HINT_WORDS[levels[-1]]
        rated[key] = words
        sys.stderr.write(f"hint {len(rated)}: {words}\n")
    # Every answer with a rated outline (records repeat outlines) gets its rating.
    return {
        answer: rated[key]
        for answer, ps in by_answer.items()
        if (key := (ps[0].question_id, tuple(p.title for p in ps))) in rated
    }


def outline_key(points: list[Point], answer: int) -> tuple[str, tuple[str, ...]]:
    """An answer's question and titles: records repeat outlines (the sketch is greedy)."""
    mine = [p for p in points if p.answer == answer]
    return mine[0].question_id, tuple(p.title for p in mine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, required=True, help="a Qwen2.5 GGUF (tokenizer)")
    parser.add_argument("--hint-gguf", type=Path, default=None, help="cloud model for the hint")
    parser.add_argument("--hint-limit", type=int, default=60, help="distinct outlines asked")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    points = load_points(args.gguf)
    y = np.log([float(p.tokens) for p in points])
    groups = [p.question_id for p in points]
    lengths = [p.tokens for p in points]
    result: dict[str, Any] = {
        "points": len(points),
        "answers": len({p.answer for p in points}),
        "questions": len(set(groups)),
        "records": sorted({p.run for p in points}),
        "tokens_mean": round(float(np.mean(lengths)), 2),
        "tokens_sd": round(float(np.std(lengths)), 2),
        "sigma_log_all": round(float(y.std()), 3),
        # Per record: the longest point and how many reached it (a cap binds when many do).
        "longest": {
            run: [max(ps), ps.count(max(ps))]
            for run in sorted({p.run for p in points})
            for ps in [[p.tokens for p in points if p.run == run]]
        },
    }
    question_mean = {q: float(y[np.array(groups) == q].mean()) for q in set(groups)}
    result["between_question_share"] = round(
        float(np.var([question_mean[q] for q in groups]) / y.var()), 3
    )
    same: dict[tuple[str, int, str], list[int]] = collections.defaultdict(list)
    for p in points:
        same[(p.question_id, p.index, p.title)].append(p.tokens)
    pairs = np.log([(v[0], v[1]) for v in same.values() if len(v) >= 2])
    result["same_point_other_run"] = {
        "pairs": len(pairs),
        "r_log": round(float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]), 3),
        "sigma_log_one_run": round(float(np.std(pairs[:, 0] - pairs[:, 1]) / math.sqrt(2)), 3),
    }
    fits: dict[str, dict[str, float]] = {"mean only": grouped_cv(features(points, []), y, groups)}
    for names in (
        ["title_words"],
        ["title_chars"],
        ["index"],
        ["log_question_words"],
        ["title_words", "title_chars", "index", "log_question_words"],
    ):
        fits[" + ".join(names)] = grouped_cv(features(points, names), y, groups)
    for text in ("title", "question", "question+title"):
        x = embeddings(points, text)
        for ridge in (1.0, 10.0):
            fits[f"embedding({text}), ridge {ridge:g}"] = grouped_cv(x, y, groups, ridge=ridge)
    result["fits"] = fits
    if args.hint_gguf is not None:
        asked = hints(points, args.hint_gguf, args.hint_limit)
        pairs_h = [
            (math.log(asked[p.answer][p.index]), math.log(p.tokens))
            for p in points
            if p.answer in asked and asked[p.answer].get(p.index, 0.0) > 0.0
        ]
        hint = np.array(pairs_h)
        result["hint"] = {
            "outlines": len({outline_key(points, a) for a in asked}),
            "answers_rated": len(asked),
            "points": len(hint),
            "r_log": round(float(np.corrcoef(hint[:, 0], hint[:, 1])[0, 1]), 3),
            "answers": {str(k): v for k, v in asked.items()},
        }
        # The hint as the one feature of a log-linear fit, held out by question as above.
        hinted = [p for p in points if p.answer in asked and asked[p.answer].get(p.index, 0) > 0]
        xh = np.log([[asked[p.answer][p.index]] for p in hinted])
        yh = np.log([float(p.tokens) for p in hinted])
        result["hint"]["fit"] = grouped_cv(xh, yh, [p.question_id for p in hinted])
    out = sys.stdout
    out.write(json.dumps({k: v for k, v in result.items() if k != "hint"}, indent=1) + "\n")
    if "hint" in result:
        out.write(json.dumps({k: v for k, v in result["hint"].items() if k != "answers"}) + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
