"""``benchmarks/lora_speed.py``'s pure parts: the interleaving and the per-round ratios.

The measuring part loads llama.cpp and is run by hand (docs/fine-tuning.md); no timings here.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lora_speed.py"


@pytest.fixture(scope="module")
def lora_speed() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("lora_speed", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up by name while the class is made.
    sys.modules["lora_speed"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["lora_speed"]


def test_every_round_measures_both_variants_at_every_size_in_a_drawn_order(
    lora_speed: ModuleType,
) -> None:
    plan = lora_speed.schedule(5, [1, 4, 8], seed=0)
    assert [(r, size) for r, size, _ in plan] == [(r, s) for r in range(5) for s in (1, 4, 8)]
    assert all(sorted(order) == ["adapter", "stock"] for _, _, order in plan)
    # Drawn, not fixed: both orders occur, and the same seed draws the same plan.
    assert {order for _, _, order in plan} == {("stock", "adapter"), ("adapter", "stock")}
    assert lora_speed.schedule(5, [1, 4, 8], seed=0) == plan
    assert lora_speed.schedule(5, [1, 4, 8], seed=1) != plan


def sample(lora_speed: ModuleType, r: int, variant: str, tok_s: float) -> Any:
    # 10 expansion tokens in 10/tok_s seconds; the bare decode twice as fast; fixed prefill.
    return lora_speed.Sample(
        round=r,
        size=4,
        variant=variant,
        expand_tokens=10,
        expand_seconds=10 / tok_s,
        ttft_ms=100.0,
        decode_tokens=20,
        decode_seconds=10 / tok_s,
        prefill_ms=50.0 if variant == "stock" else 55.0,
        prefix_tokens=300,
    )


def test_the_ratio_pairs_each_round_and_its_interval_spans_the_rounds(
    lora_speed: ModuleType,
) -> None:
    stock = [10.0, 20.0, 10.0]  # the machine's speed drifts between rounds...
    adapted = [9.0, 19.0, 9.5]  # ...and the adapter is measured beside the stock in each
    samples = [sample(lora_speed, r, "stock", s) for r, s in enumerate(stock)]
    samples += [sample(lora_speed, r, "adapter", a) for r, a in enumerate(adapted)]
    (row,) = lora_speed.summarise(samples)

    expand = row["expand_tok_s"]
    assert row["size"] == 4
    assert row["variant"] == "adapter"
    assert row["rounds"] == 3
    assert expand["ratios"] == pytest.approx([0.9, 0.95, 0.95])
    assert expand["ratio"] == pytest.approx((0.9 + 0.95 + 0.95) / 3)
    # Paired per round: the drift (10 -> 20 tok/s) does not widen the ratio's interval.
    low, high = expand["ratio_ci95"]
    assert 0.9 <= low <= expand["ratio"] <= high <= 0.95
    assert expand["stock_median"] == 10.0
    assert expand["variant_median"] == 9.5
    assert row["decode_tok_s"]["ratios"] == pytest.approx(expand["ratios"])
    assert row["prefill_ms"]["ratio"] == pytest.approx(1.1)
    assert row["expand_tokens"] == {"stock": [10, 10, 10], "adapter": [10, 10, 10]}

    printed = lora_speed.table([row])
    assert "| 4 | expansion tok/s | 10.0 | adapter | 9.5 | 0.933 [" in printed
    assert "| 4 | prompt prefill ms | 50 | adapter | 55 | 1.100 [1.100, 1.100] |" in printed


def test_a_round_missing_one_variant_is_left_out(lora_speed: ModuleType) -> None:
    samples = [
        sample(lora_speed, 0, "stock", 10.0),
        sample(lora_speed, 0, "adapter", 9.0),
        sample(lora_speed, 1, "stock", 10.0),  # the run stopped before its adapter half
    ]
    (row,) = lora_speed.summarise(samples)
    assert row["rounds"] == 1
    assert row["expand_tok_s"]["ratios"] == pytest.approx([0.9])
    assert not math.isnan(row["expand_tok_s"]["ratio_ci95"][0])


def test_each_variant_is_compared_with_the_stock_model_of_its_own_round(
    lora_speed: ModuleType,
) -> None:
    plan = lora_speed.schedule(4, [8], seed=0, variants=("stock", "adapter", "merged"))
    assert all(sorted(order) == ["adapter", "merged", "stock"] for _, _, order in plan)
    samples = [
        sample(lora_speed, r, variant, speed * (1.0 + r))  # every round faster than the last
        for r in range(2)
        for variant, speed in (("stock", 10.0), ("adapter", 9.0), ("merged", 10.0))
    ]
    rows = lora_speed.summarise(samples)
    assert [row["variant"] for row in rows] == ["adapter", "merged"]
    adapter, merged = rows
    assert adapter["expand_tok_s"]["ratios"] == pytest.approx([0.9, 0.9])
    assert merged["expand_tok_s"]["ratios"] == pytest.approx([1.0, 1.0])
    assert merged["expand_tokens"] == {"stock": [10, 10], "merged": [10, 10]}
    # Tokens after each point's first over the time after the job's first token.
    first = samples[0]
    assert first.expand_after_first_tok_s == pytest.approx((10 - 4) / (1.0 - 0.1))
