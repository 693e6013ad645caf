"""``benchmarks/rejudge.py``: which answers of a run are judged again."""

from __future__ import annotations

from typing import Any

from tests.support.scripts import load_benchmark


def _request(qid: str, phase: str, text: str, error: str | None = None) -> dict[str, Any]:
    answer = {"text": text, "error": error}
    return {"question_id": qid, "mode": "pice-progressive", "phase": phase, "answer": answer}


def test_answers_of_takes_one_phase_and_skips_failed_answers() -> None:
    rejudge = load_benchmark("rejudge")
    results = {
        "requests": [
            _request("q1", "latency", "one at a time"),
            _request("q1", "load", "under load"),
            _request("q2", "load", "", error="timeout"),
            _request("q3", "load", "under load, q3"),
        ]
    }
    latency = rejudge.answers_of(results)
    assert {key: r["answer"]["text"] for key, r in latency.items()} == {
        ("q1", "pice-progressive"): "one at a time"
    }
    load = rejudge.answers_of(results, "load")
    assert {key[0]: r["answer"]["text"] for key, r in load.items()} == {
        "q1": "under load",
        "q3": "under load, q3",
    }
