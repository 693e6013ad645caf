"""``benchmarks/loop_scan.py``: the recorded answers a passage-loop cut stops, each read once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.scripts import load_benchmark

LOOP = (
    "We are not just looking for treasure, we are looking for a way to make a difference in "
    "the world. We are ready to work together to achieve our goal.\n"
)
PROSE = "Plan the week on Sunday. Keep a list of tasks and do the hardest one first each day."


def write_run(root: Path, answers: list[tuple[str, str]]) -> None:
    root.mkdir(parents=True)
    requests = [
        {"mode": "cloud-only", "question_id": qid, "answer": {"text": text, "finish_reason": end}}
        for qid, (text, end) in zip(["q1", "q2", "q3"], answers, strict=False)
    ]
    (root / "results.json").write_text(json.dumps({"requests": requests}))


def test_it_lists_the_looping_answers_once_with_the_words_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = load_benchmark("loop_scan")
    looping = "Ahoy!\n" + LOOP * 12
    write_run(tmp_path / "a", [(looping, "length"), (PROSE, "stop")])
    write_run(tmp_path / "b", [(looping, "length")])  # the same text in a second run
    out = tmp_path / "scan.json"
    assert scan.main([str(tmp_path), "--out", str(out)]) == 0
    found = json.loads(out.read_text())
    assert found["answers"] == 2
    (cut,) = found["cuts"]
    words = len(LOOP.split())
    assert (cut["question"], cut["words"], cut["finish_reason"]) == ("q1", 1 + words * 12, "length")
    assert cut["kept"] == 1 + words * 2, "the opening and two copies of the paragraph"
    assert (
        "2 distinct answers, 1 cut, 0 of those not at their token budget" in capsys.readouterr().out
    )
