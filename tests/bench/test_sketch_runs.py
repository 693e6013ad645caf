"""benchmarks/sketch_runs.py: two bench runs compared on what the sketch decided."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.scripts import load_benchmark

sketch_runs = load_benchmark("sketch_runs")


def answer(reason: str, latency: float, points: int, closing: bool) -> dict[str, Any]:
    return {
        "text": "word " * 10,
        "latency_s": latency,
        "ttft_s": latency / 4,
        "tokens": {"cloud_completion": 50 + points},
        "points": [f"p{i}" for i in range(points)],
        "extension": {
            "reason": reason,
            "sketch": {"frame": True, "closing": closing},
            "timings": {"sketch_ms": latency * 100},
        },
        "error": None,
    }


def run(tmp_path: Path, name: str, rows: dict[str, dict[str, Any]]) -> Path:
    requests = [
        {"mode": "pice-progressive", "phase": "latency", "question_id": q, "answer": a}
        for q, a in rows.items()
    ]
    # Another mode and a failed answer are left out.
    requests.append(
        {
            "mode": "cloud-only",
            "phase": "latency",
            "question_id": "q1",
            "answer": answer("outline", 99.0, 9, True),
        }
    )
    requests.append(
        {
            "mode": "pice-progressive",
            "phase": "latency",
            "question_id": "q9",
            "answer": {**answer("outline", 1.0, 3, True), "error": "timeout"},
        }
    )
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"requests": requests}))
    return path


def test_prose_fallbacks_closings_and_times_are_compared_by_question(tmp_path: Path) -> None:
    a = run(
        tmp_path,
        "a",
        {"q1": answer("sketch_prose", 20.0, 0, False), "q2": answer("outline", 10.0, 8, False)},
    )
    b = run(
        tmp_path,
        "b",
        {"q1": answer("outline", 10.0, 5, True), "q2": answer("outline", 10.0, 5, True)},
    )
    got = sketch_runs.compare(
        sketch_runs.answers(a, "pice-progressive"), sketch_runs.answers(b, "pice-progressive")
    )
    assert got["questions"] == 2
    assert got["measures"]["outlined"] == {"a": 0.5, "b": 1.0, "diff": 0.5, "ci95": [0.0, 1.0]}
    assert got["measures"]["closing"]["diff"] == 1.0
    assert got["measures"]["points"]["diff"] == 1.0  # (5 - 0 + 5 - 8) / 2
    assert got["times"]["latency_s"]["ratio"] == round(10.0 / 15.0, 3)
    assert got["both_outlined"] == 1
    assert got["points_when_both_outlined"] == {"a": 8.0, "b": 5.0}
