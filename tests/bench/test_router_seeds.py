"""``benchmarks/router_seeds.py`` at toy size: the router's whole recipe, once per seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pice_gateway.router.training import DATA_DIR
from tests.bench.test_router_paired import clear_cases
from tests.support.scripts import load_benchmark
from tests.tune.test_pipeline_real import tune_venv

pytestmark = pytest.mark.model  # the real encoder weights, trained in the tuning environment


def test_each_seed_runs_the_recipe_and_is_scored_on_every_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    venv = tune_venv()
    toy = tmp_path / "train.jsonl"
    toy.write_text("\n".join((DATA_DIR / "train.jsonl").read_text().splitlines()[:40]) + "\n")
    clear = clear_cases(tmp_path / "clear.jsonl")
    out = tmp_path / "seeds.json"
    argv = ["router_seeds.py", str(clear), "--seeds", "0,1", "--train", str(toy),
            "--venv", str(venv), "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert load_benchmark("router_seeds").main() == 0
    runs = json.loads(out.read_text())["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert all(0.0 <= r[str(clear)] <= 1.0 for r in runs)
    table = capsys.readouterr().out
    assert "| 0 | " in table
    assert "| 1 | " in table
