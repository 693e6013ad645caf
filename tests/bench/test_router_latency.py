"""``benchmarks/router_latency.py`` at toy size on the real encoder: every variant is timed on
the same conversations, and a candidate (other factors, fewer blocks) is derived and added."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pice_gateway.router.model import BUNDLED_WEIGHTS, RouterWeights
from tests.support.scripts import load_benchmark

pytestmark = pytest.mark.model  # the pinned encoder file


def timed(tmp_path: Path, *argv: str) -> dict[str, Any]:
    """The benchmark run with ``argv`` (and ``--out``), its JSON read back."""
    out = tmp_path / "latency.json"
    assert load_benchmark("router_latency").main([*argv, "--out", str(out)]) == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_a_candidate_encoder_is_timed_beside_the_shipped_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = timed(tmp_path, "--conversations", "12", "--rounds", "2", "--warmup", "2",
                   "--candidate-layers", "2")  # fmt: skip
    assert set(result["variants"]) == {"source", "quantised", "candidate", "early-exit"}
    for variant in result["variants"].values():
        assert len(variant["rounds"]) == 2
        assert variant["all"]["p50"] > 0
    assert result["candidate"]["layers"] == 2
    assert result["candidate"]["lora"].endswith("encoder-lora.npz")
    assert len(result["candidate"]["ratio_to_quantised_p50_per_round"]) == 2
    assert "candidate / quantised p50 per round" in capsys.readouterr().out


def test_without_a_candidate_the_shipped_variants_are_timed(tmp_path: Path) -> None:
    result = timed(tmp_path, "--conversations", "12", "--rounds", "1", "--warmup", "1")
    assert set(result["variants"]) == {"source", "quantised", "early-exit"}
    assert "candidate" not in result
    assert result["questions"] == "training"


def test_the_early_exits_are_timed_on_questions_no_head_saw_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = timed(tmp_path, "--conversations", "20", "--rounds", "2", "--warmup", "3",
                   "--questions", "untrained")  # fmt: skip
    early = result["early_exit"]
    assert early["exit_blocks"] == [2, 4]
    # Every timed decision (20 conversations x 2 rounds) is counted once, warm-up excluded.
    assert sum(early["decided_at"].values()) == 40
    assert set(early["decided_at"]) <= {"block 2", "block 4", "final"}
    assert len(early["ratio_to_quantised_p50_per_round"]) == 2
    assert "early-exit decided at: block 2" in capsys.readouterr().out


def test_weights_without_exits_time_no_early_exit_variant(tmp_path: Path) -> None:
    head = tmp_path / "final-head.json"
    replace(RouterWeights.load(BUNDLED_WEIGHTS), exits=()).save(head)
    result = timed(tmp_path, "--conversations", "12", "--rounds", "1", "--warmup", "1",
                   "--weights", str(head))  # fmt: skip
    assert set(result["variants"]) == {"source", "quantised"}
    assert "early_exit" not in result
