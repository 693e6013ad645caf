"""``benchmarks/router_paired.py``: two routers on the same questions, the paired difference."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pice_gateway.router.assets import ENCODER_LORA
from pice_gateway.router.model import BUNDLED_WEIGHTS, RouterWeights
from pice_gateway.router.training import Example
from tests.support.scripts import load_benchmark


def test_the_difference_is_paired_per_question() -> None:
    paired = load_benchmark("router_paired")
    examples = [Example(f"q{i}", "direct" if i < 3 else "outline") for i in range(5)]
    a = [True, True, False, False, True]
    b = [True, False, True, True, True]
    row = paired.compare(a, b, examples)
    assert row["n"] == 5
    assert row["always_direct"] == 0.6
    assert (row["a"], row["b"], row["b_minus_a"]) == (0.6, 0.8, 0.2)
    assert (row["only_b_right"], row["only_a_right"]) == (2, 1)
    lo, hi = row["ci95"]
    assert lo < 0.2 < hi
    # Equal routers differ by exactly nothing, with no spread.
    same = paired.compare(a, a, examples)
    assert same["b_minus_a"] == 0
    assert same["ci95"] == [0, 0]


def clear_cases(path: Path) -> Path:
    """Two questions any working router gets right, as labelled JSONL."""
    rows = [
        ("Write a limerick about a cat who hates Mondays.", "direct"),
        ("What are the main benefits of learning a second language?", "outline"),
    ]
    path.write_text("".join(json.dumps({"question": q, "label": lab}) + "\n" for q, lab in rows))
    return path


@pytest.mark.model  # the real encoder, derived twice
def test_the_shipped_router_against_its_stock_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = clear_cases(tmp_path / "few.jsonl")
    out = tmp_path / "paired.json"
    argv = ["router_paired.py", str(data), "--a-weights", str(BUNDLED_WEIGHTS), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert load_benchmark("router_paired").main() == 0
    result = json.loads(out.read_text())[str(data)]
    assert result["n"] == 2
    # "b" is the shipped router as the gateway runs it (head and fine-tuned encoder): both
    # clear cases right. "a" is its head on the stock encoder, another router altogether.
    assert result["b"] == 1.0
    assert result["only_a_right"] == 0
    assert f"| {data} | 2 |" in capsys.readouterr().out


@pytest.mark.model  # the real encoder, derived twice
def test_each_side_can_keep_its_encoders_first_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paired = load_benchmark("router_paired")
    derived: list[int | None] = []
    real = paired.quantize_encoder

    def spy(source: Path, target: Path, adapter: Path | None, *, layers: int | None) -> None:
        derived.append(layers)
        real(source, target, adapter, layers=layers)

    monkeypatch.setattr(paired, "quantize_encoder", spy)
    data = clear_cases(tmp_path / "few.jsonl")
    # The shipped head without its exits (they read blocks 2 and 4, which a 2-block encoder
    # does not have all of).
    head = tmp_path / "final-head.json"
    replace(RouterWeights.load(BUNDLED_WEIGHTS), exits=()).save(head)
    argv = ["router_paired.py", str(data), "--a-weights", str(head),
            "--a-lora", str(ENCODER_LORA), "--a-layers", "2"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    assert paired.main() == 0
    assert derived == [2, None]  # a cut after block 2, b the shipped encoder whole
