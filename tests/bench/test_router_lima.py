"""``benchmarks/router_lima.py``: a router head fitted on the project's data plus SoT's labels."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pice_gateway.router.model import RouterWeights
from tests.support.scripts import load_benchmark

pytestmark = pytest.mark.model  # the real encoder

# Ten questions in SoT's label format (1 = suits SoT): five that suit an outline, five not.
ROWS = [
    ("1", "What are some ways to keep a vegetable garden healthy in a dry summer?"),
    ("1", "What are the benefits and drawbacks of working four days a week?"),
    ("1", "How can a small team make its meetings more useful?"),
    ("1", "What should I consider before adopting a dog?"),
    ("1", "What factors decide how fast a city's housing prices rise?"),
    ("0", "What is 48 divided by 6?"),
    ("0", "Write a haiku about autumn rain."),
    ("0", "Translate 'good morning' into Spanish."),
    ("0", "Write a Python function that reverses a string."),
    ("0", "Who wrote Pride and Prejudice?"),
]


def test_the_candidate_is_fitted_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lima = tmp_path / "lima" / "router.csv"
    lima.parent.mkdir()
    lima.write_text("label;request\n" + "".join(f"{label};{q}\n" for label, q in ROWS))
    out = tmp_path / "weights.json"
    monkeypatch.setattr(sys, "argv", ["router_lima.py", str(lima), "--out", str(out)])
    assert load_benchmark("router_lima").main() == 0
    weights = RouterWeights.load(out)
    assert weights.version == "router-lima-candidate"
    assert 0.0 < weights.threshold < 1.0
    assert weights.meta["lima_weight"] == 0.5
    # Ten clear extra questions barely move a head fitted on 480: the development set's
    # accuracy stays near the shipped head's (0.944), and the ten are told apart out of fold.
    assert weights.meta["dev_accuracy"] >= 0.9
    assert weights.meta["lima_out_of_fold_accuracy"] >= 0.8
