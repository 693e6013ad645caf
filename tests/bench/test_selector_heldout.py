"""``benchmarks/selector_heldout.py``: the outlines it reads, the three picks of a point, and
which points are put to the judge (only where two picks show different bodies)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pice_gateway.progressive.ensemble import Candidate, score_candidates, winner
from pice_tune.dataset import TuneQuestion
from tests.support.scripts import load_benchmark

QUESTION = TuneQuestion("bench:q1", "generic", "How do I keep a fern alive on holiday?", "dev")
GOOD = "Soak the pot the evening before you leave, so the soil holds water for days."
ALSO_GOOD = "Give the soil a long soak before you go, so it stays damp for the trip."
ODD = "Consider buying a cactus instead, since it needs far less water than a fern."
ASIDE = "Ask a neighbour to check on things while you are away."


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_benchmark("selector_heldout")


def cand(text: str, logprob: float, finish: str = "stop") -> dict[str, Any]:
    return {"text": text, "logprob_mean": logprob, "finish_reason": finish}


def test_the_confidence_pick_is_the_most_confident_body_without_a_visible_fault(
    script: ModuleType,
) -> None:
    def pick(*candidates: dict[str, Any]) -> int:
        cands = [
            Candidate(i, c["text"], c["logprob_mean"], c["finish_reason"])
            for i, c in enumerate(candidates)
        ]
        scored = score_candidates(cands, title="Water deeply", question=QUESTION.question)
        return int(script.confidence_pick(scored))

    assert pick(cand(GOOD, -1.0), cand(ALSO_GOOD, -0.2), cand(ODD, -0.5)) == 1
    # Cut off at the token cap: the penalty outweighs a higher confidence.
    assert pick(cand(GOOD, -1.0), cand(ALSO_GOOD, -0.5, "length")) == 0
    # An empty body is not eligible, however confident.
    assert pick(cand(GOOD, -1.0), cand("", -0.01)) == 0
    # A tie goes to the lower index, as the shipped winner's.
    assert pick(cand(GOOD, -0.5), cand(ALSO_GOOD, -0.5)) == 0


def test_the_shipped_pick_is_the_gateways_winner(script: ModuleType) -> None:
    outline = script.Outline(QUESTION, ("Water deeply", "Less sun"))
    candidates = [cand(GOOD, -0.3), cand(ALSO_GOOD, -0.9), cand(ODD, -0.2)]
    chosen = script.picks(outline, 0, candidates)
    scored = score_candidates(
        [
            Candidate(i, c["text"], c["logprob_mean"], c["finish_reason"])
            for i, c in enumerate(candidates)
        ],
        title="Water deeply",
        question=QUESTION.question,
    )
    assert chosen["shipped"] == winner(scored)
    assert chosen["greedy"] == 0
    assert chosen["confidence"] == 2
    assert chosen["scores"] == [s.score for s in scored]


def test_only_points_whose_picks_show_different_bodies_are_judged(script: ModuleType) -> None:
    outline = script.Outline(QUESTION, ("Water deeply", "Less sun"))
    cache = {
        "bench:q1": {
            "question_id": "bench:q1",
            "titles": list(outline.titles),
            "candidates": [
                # The most confident is off the point: shipped and confidence differ.
                [cand(GOOD, -0.6), cand(ALSO_GOOD, -0.7), cand(ASIDE, -0.1)],
                # Two copies of one body: whichever is picked, the texts are the same.
                [cand(GOOD, -0.5), cand(GOOD + " ", -0.4)],
            ],
        }
    }
    found = script.targets([outline], cache, "shipped", "confidence")
    [target] = found
    assert target.key == ("bench:q1", 0)
    assert target.pair.b == 2
    assert target.text_b == ASIDE
    assert target.text_a == GOOD
    assert script.targets([outline], cache, "confidence", "confidence") == []


def test_outlines_are_read_from_a_bench_run_and_from_sketches(
    script: ModuleType, tmp_path: Path
) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        json.dumps({"id": "generic-01", "question": "How do I sleep better?"}) + "\n"
        + json.dumps({"id": "math-01", "question": "What is 2 + 2?"}) + "\n"
    )  # fmt: skip
    answer = {"served_mode": "progressive:outline", "points": ["Dark room", "No screens"]}
    requests = [
        {"phase": "latency", "question_id": "generic-01", "category": "generic", "answer": answer},
        {"phase": "load", "question_id": "generic-01", "category": "generic", "answer": answer},
        {"phase": "latency", "question_id": "math-01", "category": "math",
         "answer": {"served_mode": "progressive:fallback", "points": []}},
    ]  # fmt: skip
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"requests": requests}))
    [bench] = script.bench_outlines(results, questions)
    assert bench.question.id == "bench:generic-01"
    assert bench.question.question == "How do I sleep better?"
    assert bench.titles == ("Dark room", "No screens")

    held = tmp_path / "heldout.jsonl"
    held.write_text(
        json.dumps({"question": "How should I prepare for a night-shift job?", "label": "outline"})
        + "\n"
        + json.dumps({"question": "What is the capital of Peru?", "label": "direct"})
        + "\n"
    )
    listed = "\n".join(f"{n}. Step number {n}" for n in range(1, 11))
    text = f"Prepare in stages:\n{listed}\nThese steps ease the switch."
    raw = tmp_path / "sketches.raw.jsonl"
    raw.write_text(
        json.dumps(
            {
                "question_id": "heldout-000",
                "models": {"stock": {"samples": [{"text": text, "finish_reason": "stop"}]}},
            }
        )
        + "\n"
    )
    [sketched] = script.sketch_outlines(raw, held, "stock")
    assert sketched.question.id == "sketch:heldout-000"
    assert sketched.titles == tuple(f"Step number {n}" for n in range(1, 9))  # the gateway's cap


def test_verdicts_split_by_the_bodies_lengths(script: ModuleType) -> None:
    def row(words_a: int, words_b: int, outcome: str) -> dict[str, Any]:
        return {"question_id": "q", "words_a": words_a, "words_b": words_b, "outcome": outcome}

    bands = script.by_length(
        [row(30, 20, "win"), row(20, 19, "loss"), row(25, 20, "tie"), row(10, 20, "loss")]
    )
    assert [len(bands[b]) for b in ("a longer", "like length", "a shorter")] == [1, 2, 1]
    assert bands["a shorter"][0]["words_b"] == 20
