"""``benchmarks/plot_router_exits.py``: decision time with and without exits, and where the
router decides, read from the benchmark's and ``pice router eval``'s JSON and drawn."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def plot() -> ModuleType:
    return load_benchmark("plot_router_exits")


def latency(whole: list[float], early: list[float] | None) -> dict[str, object]:
    variants = {"quantised": {"rounds": [{"p50": v} for v in whole]}}
    if early is not None:
        variants["early-exit"] = {"rounds": [{"p50": v} for v in early]}
    return {"variants": variants}


def evaluation() -> dict[str, object]:
    return {
        "weights": "router-v3.2",
        "exit_blocks": [2, 4],
        "sot/data/wizardlm/router.csv": {"n": 4, "exits": {"block 2": 2, "final": 1, "block 4": 1}},
        "benchmarks/router/heldout.jsonl": {"n": 2, "exits": {"final": 2}},
    }


def test_exit_shares_are_named_by_set_and_sum_to_one(plot: ModuleType) -> None:
    shares = plot.exit_shares(evaluation())
    assert shares["wizardlm"] == {"block 2": 0.5, "final": 0.25, "block 4": 0.25}
    assert shares["heldout"] == {"final": 1.0}
    assert sorted(shares["wizardlm"], key=plot._order) == ["block 2", "block 4", "final"]


def test_a_latency_file_without_the_early_exit_variant_is_refused(plot: ModuleType) -> None:
    with pytest.raises(ValueError, match="no early-exit variant"):
        plot.round_p50s(latency([8.0], None))


def test_the_tables_are_printed_and_the_figure_written(
    plot: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timing = tmp_path / "latency.json"
    timing.write_text(json.dumps(latency([8.5, 8.6], [4.2, 4.3])))
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps(evaluation()))
    out = tmp_path / "exits.png"
    argv = ["--latency", f"untrained={timing}", "--eval", str(ev), "--out", str(out)]
    assert plot.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| untrained | 8.50 / 8.60 | 4.20 / 4.30 |" in printed
    assert "| wizardlm | 50.0% | 25.0% | 25.0% |" in printed
    assert "| heldout | 0.0% | 0.0% | 100.0% |" in printed
    assert out.read_bytes().startswith(b"\x89PNG")
