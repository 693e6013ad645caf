"""benchmarks/sketch_eval.py: which questions it asks, and how it scores two models' sketches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pice_tune.dataset import TuneQuestion
from tests.support.scripts import load_benchmark

sketch_eval = load_benchmark("sketch_eval")

Q = "How can I keep a houseplant alive while travelling for two weeks?"
OPENING = "A plant left alone needs water, shade and moist air:"
CLOSING = "Set up the day before you leave."


def framed(*lines: str) -> dict[str, str]:
    return {"text": "\n".join(lines), "finish_reason": "stop"}


def test_only_outline_questions_far_from_the_training_ones_are_asked(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [
        {"question": "What should I pack for a week of winter camping?", "label": "outline"},
        {"question": "Write a haiku about frost.", "label": "direct"},
        {"question": "How do I prepare for a long hike in hot weather?", "label": "outline"},
        {"question": "Why do leaves change colour in autumn?"},  # no label: kept
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = [TuneQuestion("t", "g", "How do I prepare for a long hike in hot weather?", "train")]
    questions, close = sketch_eval.read_questions(path, train, 0.6)
    assert [q.question for q in questions] == [rows[0]["question"], rows[3]["question"]]
    assert close == 1
    assert len({q.id for q in questions}) == 2


def test_greedy_sketches_are_scored_against_both_models_samples() -> None:
    good = framed(OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray", CLOSING)
    raw = {
        "stock": {
            "greedy_seconds": 4.0,
            "samples": [
                framed(OPENING, "Water it well and keep it out of the sun."),  # prose
                framed(OPENING, "1. Water deeply", "2. Ask a neighbour", "3. Shade", CLOSING),
            ],
        },
        "tuned": {"greedy_seconds": 2.0, "samples": [good, good]},
    }
    got = sketch_eval.measure(Q, raw, frame=True)
    stock, tuned = got["stock"], got["tuned"]
    assert (stock.points, stock.reason, stock.closing) == ((), "not_outline", False)
    assert tuned.reason is None
    assert (tuned.opening, tuned.closing) == (True, True)
    # The pool: both models' tempered samples (6 points); the tuned greedy covers
    # water/shade/tray of it and all three of its titles are in it.
    assert tuned.precision == 1.0
    assert tuned.recall == pytest.approx(5 / 6)
    assert stock.f1 == 0.0
    summary = sketch_eval.summary([stock, tuned])
    assert (summary["prose_share"], summary["closing_share"], summary["pass_share"]) == (
        0.5,
        0.5,
        0.5,
    )
    paired = sketch_eval.paired([(stock, tuned)])
    assert paired["prose_share"]["mean"] == -1.0
    assert paired["greedy_seconds_ratio"]["value"] == 0.5


def test_each_model_is_asked_as_the_data_step_asks_and_its_greedy_sketch_timed() -> None:
    from pice_tune.distill import SketchSampling
    from tests.tune.test_sketcher import SKETCHES, ScriptedTeacher, teacher

    script = ScriptedTeacher(honour_n=False)
    question = TuneQuestion("h1", "generic", Q, "dev")
    got = sketch_eval.timed_samples(teacher(script), question, SketchSampling(samples=3))
    # Greedy alone, then a server that ignores n is asked again (the data step's rule).
    assert [r["temperature"] for r in script.requests] == [0.0, 0.7, 0.7]
    assert [s["text"] for s in got["samples"]] == [text for text, _ in SKETCHES[:3]]
    assert got["greedy_seconds"] == got["samples"][0]["seconds"] >= 0
