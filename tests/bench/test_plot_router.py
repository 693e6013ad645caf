"""``benchmarks/plot_router.py``: two routers' agreement per set, read, tabled and plotted."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def plot_router() -> ModuleType:
    return load_benchmark("plot_router")


def paired() -> dict[str, object]:
    row = {"n": 80, "always_direct": 0.5, "a": 0.75, "b": 0.9, "b_minus_a": 0.15}
    return {
        "a": "v2.json",
        "b": "v3.json",
        "sot/data/vicuna/router.csv": row,
        "benchmarks/router/bench_questions.jsonl": {**row, "n": 66, "b": 0.8},
    }


def test_sets_are_named_by_their_folder_or_stem(plot_router: ModuleType) -> None:
    assert plot_router.short_name("sot/data/wizardlm/router.csv") == "wizardlm"
    assert plot_router.short_name("benchmarks/router/bench_questions.jsonl") == "bench"
    assert plot_router.short_name("benchmarks/router/heldout.jsonl") == "heldout"


def test_the_wilson_interval_brackets_the_share_and_stays_in_bounds(
    plot_router: ModuleType,
) -> None:
    low, high = plot_router.wilson(0.9, 80)
    assert 0.8 < low < 0.9 < high < 0.96
    assert plot_router.wilson(1.0, 137)[1] == 1.0
    assert plot_router.wilson(1.0, 137)[0] < 1.0  # a perfect score still has an interval
    assert plot_router.wilson(0.0, 10)[0] == 0.0
    wide, narrow = plot_router.wilson(0.7, 50), plot_router.wilson(0.7, 5000)
    assert wide[1] - wide[0] > narrow[1] - narrow[0]
    with pytest.raises(ValueError, match="at least one"):
        plot_router.wilson(0.5, 0)


def test_rows_carry_the_labels_and_the_range_over_refits(plot_router: ModuleType) -> None:
    seeds = {
        "shipped_964": {"name": "shipped", "vicuna": 0.9, "bench": 0.8},
        "runs_964": [{"name": "s1", "vicuna": 0.94, "bench": 0.79}],
        "runs_967": [{"name": "s0", "vicuna": 0.875}],
    }
    rows = plot_router.read(paired(), seeds, {"vicuna": "Vicuna-80"})
    assert [(r.short, r.label, r.n) for r in rows] == [
        ("vicuna", "Vicuna-80", 80),
        ("bench", "bench", 66),
    ]
    assert rows[0].refits == (0.875, 0.94)
    assert rows[1].refits == (0.79, 0.8)
    assert plot_router.read(paired(), None, {})[0].refits is None
    with pytest.raises(SystemExit, match="no labelled set"):
        plot_router.read({"a": "x", "b": "y"}, None, {})


def test_the_table_and_plot_are_written(
    plot_router: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "paired.json"
    source.write_text(json.dumps(paired()))
    out = tmp_path / "router.png"
    argv = [
        "plot_router.py",
        str(source),
        "--names",
        "v2,v3",
        "--label",
        "bench=the bench",
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    assert plot_router.main() == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "| the bench | 66 | 50.0% | 75.0% | 80.0% [" in table
    assert "| v2 | v3 [Wilson 95%] |" in table
