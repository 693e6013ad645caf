"""``benchmarks/judge_candidates.py``: which candidates the judge is asked about, how its
verdicts are recorded (the score's best is ``a`` in both orders) and read against the score."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from pice_bench.judge import Judge
from pice_tune.dataset import TuneQuestion
from pice_tune.preference import PairRule, load_verdicts
from tests.support.scripts import load_benchmark

QUESTION = TuneQuestion("q1", "generic", "How do I keep a fern alive on holiday?", "train")
GOOD = "Soak the pot the evening before you leave, so the soil holds water for days."
ALSO_GOOD = "Give the soil a long soak before you go, so it stays damp for the trip."
ODD = "Consider buying a cactus instead, since it needs far less water than a fern."
RESTATED = "If you keep a fern alive on holiday, water it deeply."


@pytest.fixture(scope="module")
def judge_candidates() -> ModuleType:
    return load_benchmark("judge_candidates")


def cand(text: str, logprob: float = -0.5) -> dict[str, Any]:
    return {"text": text, "logprob_mean": logprob, "finish_reason": "stop"}


def cache() -> dict[str, dict[str, Any]]:
    return {
        "q1": {
            "question_id": "q1",
            "titles": ["Water deeply", "Less sun"],
            "candidates": [
                [cand(GOOD), cand(ALSO_GOOD), cand(ODD, -3.0)],  # open: the judge decides
                [cand(RESTATED, -0.01), cand(GOOD)],  # a filter decides
            ],
        },
        "q9": {"question_id": "q9", "titles": ["X"], "candidates": [[cand(GOOD)]]},  # not asked
    }


def test_only_points_the_filters_leave_open_are_put_to_the_judge(
    judge_candidates: ModuleType,
) -> None:
    [target] = judge_candidates.targets({"q1": QUESTION}, cache(), PairRule())
    assert (target.question.id, target.index, target.title) == ("q1", 0, "Water deeply")
    assert target.pair.b == 2  # the score's worst
    assert target.text_b == ODD
    assert target.pair.score_a > target.pair.score_b


def _preferring(text: str) -> httpx.MockTransport:
    """A judge that grades whichever answer contains ``text`` 9 and the other 3."""

    def handler(request: httpx.Request) -> httpx.Response:
        user = json.loads(request.content)["messages"][-1]["content"]
        first = re.search(r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End", user, re.S)
        assert first is not None
        a, b = (9, 3) if text in first.group(1) else (3, 9)
        reply = f"Score A: {a}\nScore B: {b}"
        return httpx.Response(200, json={"choices": [{"message": {"content": reply}}]})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(("prefer_best", "outcome"), [(True, "win"), (False, "loss")])
def test_a_verdict_is_the_score_best_over_the_other_in_both_orders(
    judge_candidates: ModuleType, tmp_path: Path, prefer_best: bool, outcome: str
) -> None:
    targets = judge_candidates.targets({"q1": QUESTION}, cache(), PairRule())
    out = tmp_path / "verdicts.jsonl"
    preferred = targets[0].text_a if prefer_best else targets[0].text_b

    async def run() -> None:
        async with httpx.AsyncClient(transport=_preferring(preferred)) as client:
            judge = Judge(client, "http://judge/v1", "m", expected=False)
            await judge_candidates.judge_all(judge, targets, out, 2)

    asyncio.run(run())
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["question_id"], row["index"], row["b"]) == ("q1", 0, 2)
    assert row["outcome"] == outcome
    assert row["failed"] == 0
    assert judge_candidates.judged_keys(out) == {("q1", 0)}
    # The data step reads the file back: the same verdict.
    assert load_verdicts(out)[("q1", 0)].outcome == outcome


def test_the_summary_reads_the_judge_against_the_score_by_gap(
    judge_candidates: ModuleType, tmp_path: Path
) -> None:
    def row(qid: str, index: int, gap: float, outcome: str, **extra: Any) -> dict[str, Any]:
        return {"question_id": qid, "index": index, "score_a": 0.5 + gap, "score_b": 0.5,
                "outcome": outcome, "failed": 0, "words_a": 20, "words_b": 10} | extra  # fmt: skip

    rows = [
        row("q1", 0, 0.3, "win"),
        row("q1", 1, 0.3, "loss"),
        row("q2", 0, 0.2, "win"),
        row("q2", 1, 0.01, "tie"),
        row("q3", 0, 0.01, "loss"),
        row("q3", 1, 0.5, "win", failed=1),  # a failed call: counted, not read
        row("q3", 2, 0.02, "win"),
        row("q3", 2, 0.02, "loss"),  # judged again: the later verdict counts
    ]
    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = judge_candidates.summarise(path)
    assert summary["failed_points"] == 1
    everything = summary["all"]
    assert (everything["points"], everything["questions"]) == (6, 3)
    assert (everything["judge_prefers_score_best"], everything["judge_prefers_score_worst"]) == (
        2,
        3,
    )
    assert everything["ties"] == 1
    assert everything["agreement_of_decided"] == pytest.approx(2 / 5)
    low, high = everything["agreement_ci95"]
    assert 0.0 <= low <= 2 / 5 <= high <= 1.0
    wide = summary["score gap >= 0.1 (a score pair)"]
    assert (wide["points"], wide["judge_prefers_score_best"]) == (3, 2)
    assert wide["agreement_of_decided"] == pytest.approx(2 / 3)
    # The judge kept the 20-word text twice (wins) and the 10-word one three times (losses).
    assert everything["median_words_preferred"] == 10
    assert everything["median_words_rejected"] == 20
