"""``benchmarks/router_seeds.py`` at toy size: the router's whole recipe, once per seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pice_gateway.router.training import DATA_DIR
from tests.bench.test_router_paired import clear_cases
from tests.support.scripts import load_benchmark
from tests.tune.test_pipeline_real import tune_venv


@pytest.mark.model  # the real encoder weights, trained in the tuning environment
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


@pytest.mark.parametrize("csv_second", [True, False])
def test_training_files_are_joined_into_one_jsonl_the_router_reads(
    tmp_path: Path, csv_second: bool
) -> None:
    seeds = load_benchmark("router_seeds")
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"question": "Why is the sky blue?", "label": "outline"}) + "\n")
    sot = tmp_path / "lima" / "router.csv"
    sot.parent.mkdir()
    sot.write_text('label;request\n1;"Tips for\nsleeping well?"\n0;Write a haiku.\n')
    alone = seeds.joined([own], tmp_path / "out.jsonl")
    assert alone == own  # one JSONL is used as it is
    paths = [own, sot] if csv_second else [sot]
    out = seeds.joined(paths, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [
        ("Tips for\nsleeping well?", "outline", "lima"),
        ("Write a haiku.", "direct", "lima"),
    ]
    if csv_second:
        expected.insert(0, ("Why is the sky blue?", "outline", ""))
    assert [(r["question"], r["label"], r["category"]) for r in rows] == expected


@pytest.mark.model
def test_layers_runs_the_recipe_on_the_first_blocks_and_keep_keeps_the_factors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = tune_venv()
    toy = tmp_path / "train.jsonl"
    toy.write_text("\n".join((DATA_DIR / "train.jsonl").read_text().splitlines()[:24]) + "\n")
    clear = clear_cases(tmp_path / "clear.jsonl")
    out, keep = tmp_path / "seeds.json", tmp_path / "kept"
    argv = ["router_seeds.py", str(clear), "--seeds", "0", "--train", str(toy), "--layers", "2",
            "--keep", str(keep), "--venv", str(venv), "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert load_benchmark("router_seeds").main() == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert run["layers"] == 2
    factors = np.load(keep / "lora-0.npz")
    blocks = {name.split(".")[2] for name in factors.files if name.endswith(".lora_a")}
    assert blocks == {"0", "1"}  # a LoRA on the two kept blocks only
    assert json.loads((keep / "lora-0.json").read_text())["layers"] == 2
    head = json.loads((keep / "head-0.json").read_text())
    assert len(head["coef"]) == 384  # the head fitted on that encoder, kept beside its factors
