from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from pice_bench.stats import Summary, bootstrap_interval, percentile, ratio_below


def test_percentile_matches_linear_interpolation() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 0) == 15.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 50) == 35.0
    # rank = 4 * 0.4 = 1.6 -> 20 + 0.6 * 15 (numpy's default gives 29.0 too)
    assert percentile(values, 40) == pytest.approx(29.0)
    assert percentile(values, 95) == pytest.approx(48.0)


def test_percentile_ignores_input_order_and_handles_one_value() -> None:
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([7.5], 95) == 7.5


def test_percentile_of_nothing_is_nan_and_bad_q_is_refused() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 101)


def test_summary() -> None:
    s = Summary.of([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean, s.p50, s.min, s.max) == (4, 2.5, 2.5, 1.0, 4.0)
    assert s.p95 == pytest.approx(3.85)
    empty = Summary.of([])
    assert empty.n == 0
    assert math.isnan(empty.p50)


def test_ratio_below() -> None:
    assert ratio_below(6.0, 10.0) == pytest.approx(0.4)
    assert ratio_below(12.0, 10.0) == pytest.approx(-0.2)
    assert math.isnan(ratio_below(1.0, 0.0))


def test_bootstrap_interval_brackets_the_statistic_and_narrows_with_n() -> None:
    def mean(xs: Sequence[float]) -> float:
        return sum(xs) / len(xs)

    small = [0.0, 1.0] * 5
    low, high = bootstrap_interval(small, mean, seed=1)
    assert low < 0.5 < high
    assert bootstrap_interval(small, mean, seed=1) == (low, high)  # seeded
    wide = high - low
    low, high = bootstrap_interval([0.0, 1.0] * 200, mean, seed=1)
    assert low < 0.5 < high
    assert high - low < wide / 4
    assert bootstrap_interval([3.0] * 7, mean) == (3.0, 3.0)
    assert all(math.isnan(v) for v in bootstrap_interval([], mean))
