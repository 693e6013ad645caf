"""``benchmarks/router_confidence.py``: how sure the router is where it disagrees with labels."""

from __future__ import annotations

from tests.support.scripts import load_benchmark


def test_errors_are_split_by_how_sure_the_router_was() -> None:
    confidence = load_benchmark("router_confidence")
    # (score, labelled outline): two sure mistakes, one unsure, and three right.
    scored = [(0.95, False), (0.65, False), (0.05, True), (0.2, False), (0.8, True), (0.92, True)]
    row = confidence.summarise(scored, 0.6)
    assert row["n"] == 6
    assert (row["direct_to_outline"], row["direct_to_outline_score_ge_0.9"]) == (2, 1)
    assert (row["outline_to_direct"], row["outline_to_direct_score_lt_0.1"]) == (1, 1)
    assert row["scores_between_0.1_and_0.9"] == 3
    assert row["agreement"] == 0.5
    # A cut above the unsure mistake fixes it, and nothing fixes the sure ones.
    assert row["agreement_by_cut"]["0.7"] == round(4 / 6, 4)
    assert max(row["agreement_by_cut"].values()) == round(4 / 6, 4)
