"""benchmarks/sketch_engines.py: one sketcher's greedy sketches from two engines, compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.test_sketch_eval import CLOSING, OPENING, Q, framed
from tests.support.scripts import load_benchmark

sketch_engines = load_benchmark("sketch_engines")

GOOD = framed(OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray", CLOSING)
NO_CLOSING = framed(OPENING, "1. Water deeply", "2. Shade from sun", "3. Humidity tray")
PROSE = framed(OPENING, "Water it well and keep it out of the sun.")


def raw_file(path: Path, sketches: dict[str, dict[str, dict[str, str]]]) -> Path:
    """A sketch_eval raw file: per question id, each model's samples (greedy first)."""
    rows = [
        {
            "question_id": qid,
            "order": sorted(models),
            "models": {
                label: {"greedy_seconds": 1.0, "samples": [greedy, PROSE]}  # a tempered one
                for label, greedy in models.items()
            },
        }
        for qid, models in sketches.items()
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_identical_texts_and_each_measure_are_compared_per_model(tmp_path: Path) -> None:
    questions = {"q1": Q, "q2": Q, "q3": Q}
    first = raw_file(
        tmp_path / "a.jsonl",
        {q: {"tuned": GOOD, "stock": PROSE} for q in ("q1", "q2", "q3")},
    )
    second = raw_file(
        tmp_path / "b.jsonl",
        {
            "q1": {"tuned": GOOD, "stock": PROSE},
            "q2": {"tuned": NO_CLOSING, "stock": PROSE},
            # q3 missing on the second engine: compared over the questions both have
        },
    )
    got = sketch_engines.compare(
        questions, sketch_engines.read_raw(first), sketch_engines.read_raw(second), frame=True
    )
    assert got["questions"] == 2
    tuned, stock = got["models"]["tuned"], got["models"]["stock"]
    assert tuned["identical_greedy_share"] == 0.5
    assert stock["identical_greedy_share"] == 1.0
    assert tuned["closing_share"]["first"] == 1.0
    assert tuned["closing_share"]["second"] == 0.5
    assert tuned["closing_share"]["difference"] == -0.5
    assert tuned["pass_share"]["difference"] == -0.5, "no closing: the frame's filter rejects it"
    assert tuned["points"]["difference"] == 0.0
    assert stock["prose_share"]["first"] == stock["prose_share"]["second"] == 1.0


def test_the_command_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": Q, "label": "outline", "id": "q1"}) + "\n")
    a = raw_file(tmp_path / "a.jsonl", {"q1": {"tuned": GOOD}})
    b = raw_file(tmp_path / "b.jsonl", {"q1": {"tuned": NO_CLOSING}})
    out = tmp_path / "engines.json"
    argv = [str(questions), str(a), str(b), "--names", "llama.cpp,vllm", "--frame"]
    assert sketch_engines.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| tuned | closing_share | 1 | 0 | -1 [-1, -1] |" in printed
    assert json.loads(out.read_text())["engines"] == ["llama.cpp", "vllm"]
