"""``benchmarks/router_latency.py`` at toy size on the real encoder: every variant is timed on
the same conversations, and a candidate (other factors, fewer blocks) is derived and added."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.scripts import load_benchmark

pytestmark = pytest.mark.model  # the pinned encoder file


def test_a_candidate_encoder_is_timed_beside_the_shipped_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "latency.json"
    argv = ["--conversations", "12", "--rounds", "2", "--warmup", "2",
            "--candidate-layers", "2", "--out", str(out)]  # fmt: skip
    assert load_benchmark("router_latency").main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"source", "quantised", "candidate"}
    for variant in result["variants"].values():
        assert len(variant["rounds"]) == 2
        assert variant["all"]["p50"] > 0
    assert result["candidate"]["layers"] == 2
    assert result["candidate"]["lora"].endswith("encoder-lora.npz")
    assert len(result["candidate"]["ratio_to_quantised_p50_per_round"]) == 2
    assert "candidate / quantised p50 per round" in capsys.readouterr().out


def test_without_a_candidate_only_the_two_shipped_variants_are_timed(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    argv = ["--conversations", "12", "--rounds", "1", "--warmup", "1", "--out", str(out)]
    assert load_benchmark("router_latency").main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["variants"]) == {"source", "quantised"}
    assert "candidate" not in result
