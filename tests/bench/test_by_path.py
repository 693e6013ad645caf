"""``benchmarks/by_path.py``: model ``pice`` against cloud-only, split by the path it took."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def by_path() -> ModuleType:
    return load_benchmark("by_path")


def request(question: str, mode: str, latency: float, **answer: Any) -> dict[str, Any]:
    suits = question.startswith("s")
    body = {"latency_s": latency, "ttft_s": latency / 10, "finish_reason": "stop", **answer}
    return {
        "question_id": question,
        "mode": mode,
        "phase": "latency",
        "suits_points": suits,
        "answer": body,
    }


def pice(
    question: str,
    reason: str,
    latency: float,
    points: list[dict[str, Any]] | None = None,
    **answer: Any,
) -> dict[str, Any]:
    extension = {"reason": reason, "points": points or []}
    return request(question, "pice-auto", latency, extension=extension, **answer)


def test_each_path_gets_its_own_verdicts_latency_ratios_and_router_agreement(
    by_path: ModuleType,
) -> None:
    results = {
        "requests": [
            pice("s1", "outline", 5.0, [{"finish_reason": "stop"}]),  # a run before trimming
            request("s1", "cloud-only", 10.0),
            pice(
                "s2",
                "outline",
                6.0,
                [
                    {"finish_reason": "stop", "trimmed": "loop"},
                    {"finish_reason": "length", "trimmed": "length"},
                ],
                finish_reason="length",
            ),
            request("s2", "cloud-only", 10.0),
            pice("s3", "router", 9.0),  # a suitable question the router sent to the cloud
            request("s3", "cloud-only", 10.0),
            pice("u1", "router", 4.0),
            request("u1", "cloud-only", 4.0, finish_reason="length"),
            request("u1", "cloud-only", 99.0) | {"phase": "load"},  # not a latency request
        ]
    }
    outcomes = {"s1": "win", "s2": "loss", "s3": "tie", "u1": "tie"}
    judged = {
        "pairs": {
            "pice-auto:cloud-only": {
                "records": [
                    {"question_id": q, "outcome": o, "identical": q == "u1"}
                    for q, o in outcomes.items()
                ],
                "failed_calls": 0,
            }
        }
    }
    summary = by_path.summarise(results, judged)
    outline, router = summary["paths"]["outline"], summary["paths"]["router"]
    assert "sketch_prose" not in summary["paths"], "a path no question took is left out"
    assert (outline["n"], outline["wins"], outline["losses"], outline["ties"]) == (2, 1, 1, 0)
    assert outline["net"] == 0.0
    assert outline["latency_ratio_median"] == pytest.approx(0.55)
    assert (outline["lost"], outline["won"]) == (["s2"], ["s1"])
    assert (router["n"], router["identical"], router["suitable"]) == (2, 1, 1)
    assert router["latency_ratio_median"] == pytest.approx((0.9 + 1.0) / 2)
    assert summary["router_agreement"] == [3, 4], "s3 suits points but went to the cloud"
    assert summary["cut"] == {"candidate": ["s2"], "baseline": ["u1"]}
    table = by_path.render(summary)
    assert "| outline | 2 | 1/1/0 | +0.00" in table
    assert "router agreement with the bench's labels: 3/4" in table
    assert summary["points"] == {
        "cut_at_share": ["s2"],
        "trimmed": {"loop": ["s2"], "length": ["s2"]},
    }
    assert "answers with a point trimmed (loop): 1 ['s2']" in table


def test_the_baseline_may_be_the_same_mode_in_another_run(by_path: ModuleType) -> None:
    mode = "pice-progressive"
    ours = {"requests": [request("s1", mode, 6.0, extension={"reason": "outline"})]}
    theirs = {"requests": [request("s1", mode, 4.0, finish_reason="length")]}
    judged = {
        "pairs": {
            f"{mode}:{mode}": {
                "records": [{"question_id": "s1", "outcome": "win", "identical": False}],
                "failed_calls": 0,
            }
        }
    }
    summary = by_path.summarise(
        judged=judged, results=ours, pair_modes=(mode, mode), baseline_results=theirs
    )
    outline = summary["paths"]["outline"]
    assert (outline["wins"], outline["latency_ratio_median"]) == (1, pytest.approx(1.5))
    assert summary["cut"] == {"candidate": [], "baseline": ["s1"]}
    table = by_path.render(summary)
    assert f"ttft p50 {mode} / {mode} s" in table
    assert "router agreement" not in table, "pice-progressive has no router"
