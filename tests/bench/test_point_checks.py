"""``benchmarks/point_checks.py``: the judge-free checks of two runs' points, side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def point_checks() -> ModuleType:
    return load_benchmark("point_checks")


def run(path: Path, mode: str, finish: str, latency: float) -> Path:
    """A results.json with one answer of two points to generic-01, the second point ending
    as ``finish`` says."""
    text = (
        "Manage your time well:\n\n"
        "1. **Plan the week**: Write the week's tasks down on Sunday and give each a day.\n"
        "2. **Limit meetings**: Keep meetings short and decline those without an agenda."
    )
    points = [
        {"title": "Plan the week", "finish_reason": "stop"},
        {"title": "Limit meetings", "finish_reason": finish},
    ]
    answer = {"text": text, "latency_s": latency, "ttft_s": 1.0, "error": None,
              "extension": {"points": points, "sketch": {"opening": True}}}  # fmt: skip
    record = {"phase": "latency", "mode": mode, "question_id": "generic-01", "answer": answer}
    path.write_text(json.dumps({"requests": [record]}))
    return path


def test_two_modes_are_compared_question_by_question(
    point_checks: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = run(tmp_path / "a.json", "pice-progressive", "length", 10.0)
    b = run(tmp_path / "b.json", "pice-ensemble", "stop", 14.0)
    out = tmp_path / "checks.json"
    argv = ["point_checks.py", str(a), str(b), "--mode-b", "pice-ensemble", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert point_checks.main() == 0
    report = json.loads(out.read_text())
    assert (report["mode"], report["mode_b"], report["questions"]) == (
        "pice-progressive",
        "pice-ensemble",
        ["generic-01"],
    )
    assert report["points"] == {"a": 2, "b": 2}
    cap = report["checks"]["hit_token_cap"]
    assert (cap["a"], cap["b"]) == (0.5, 0.0)
    assert report["latency"]["b_over_a"] == pytest.approx(1.4)
    # Without --mode-b, run B is read for run A's mode: it has no such answer.
    monkeypatch.setattr(sys, "argv", argv[:3])
    assert point_checks.main() == 1


def test_a_sentence_two_points_share_is_an_echo(point_checks: ModuleType) -> None:
    # The fault seen in a preference round's Fermi answer: one sentence in several points.
    same = "The average number of people in the city is approximately 1 million."
    bodies = [
        f"{same} Start from there.",
        f"Most adults drink coffee. {same.upper()}",  # case and punctuation do not matter
        "Multiply the drinkers by the cups each drinks.",
        "Short. Short. Short.",  # repeated, but under five words: not counted
        "Short. Short. Short.",
    ]
    assert point_checks.echoes(bodies) == [True, True, False, False, False]
    assert point_checks.echoes([same]) == [False]
