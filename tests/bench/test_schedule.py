from __future__ import annotations

import itertools
import statistics

import pytest

from pice_bench.schedule import mode_order, poisson_arrivals


def test_schedule_is_bounded_by_count() -> None:
    offsets = poisson_arrivals(100.0, max_count=20, max_duration=1000.0, seed=1)
    assert len(offsets) == 20
    assert offsets[0] == 0.0
    assert offsets == sorted(offsets)


def test_schedule_is_bounded_by_duration() -> None:
    offsets = poisson_arrivals(1.0, max_count=10_000, max_duration=30.0, seed=1)
    assert offsets[-1] <= 30.0
    assert 10 < len(offsets) < 60  # ~31 expected; a broken generator lands far outside


def test_gaps_are_exponential_with_the_right_mean() -> None:
    rate = 2.0
    offsets = poisson_arrivals(rate, max_count=5000, max_duration=1e9, seed=7)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert statistics.fmean(gaps) == pytest.approx(1 / rate, rel=0.08)
    # Exponential: the standard deviation equals the mean (a fixed-interval schedule has 0).
    assert statistics.pstdev(gaps) == pytest.approx(1 / rate, rel=0.12)


def test_schedule_is_reproducible_per_seed_and_rate() -> None:
    a = poisson_arrivals(0.5, max_count=10, max_duration=100.0, seed=3)
    assert a == poisson_arrivals(0.5, max_count=10, max_duration=100.0, seed=3)
    assert a != poisson_arrivals(0.5, max_count=10, max_duration=100.0, seed=4)


@pytest.mark.parametrize(
    ("rate", "count", "duration"), [(0.0, 5, 1.0), (-1.0, 5, 1.0), (1.0, 0, 1.0)]
)
def test_bad_parameters_are_refused(rate: float, count: int, duration: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        poisson_arrivals(rate, max_count=count, max_duration=duration)


MODES = ["cloud-only", "sot-cloud", "pice-progressive", "pice-auto"]


def test_mode_order_is_a_seeded_permutation_per_question() -> None:
    order = mode_order(MODES, "q1", seed=3)
    assert sorted(order) == sorted(MODES)
    assert mode_order(MODES, "q1", seed=3) == order  # reproducible
    assert MODES == ["cloud-only", "sot-cloud", "pice-progressive", "pice-auto"]  # not in place


def test_mode_order_varies_so_no_mode_always_follows_another() -> None:
    orders = [mode_order(MODES, f"q{i}", seed=0) for i in range(60)]
    assert len({tuple(o) for o in orders}) > 10
    # sot-cloud and pice-progressive share a sketch prompt: each runs first about half the time.
    sot_first = sum(o.index("sot-cloud") < o.index("pice-progressive") for o in orders)
    assert 18 <= sot_first <= 42
    assert [mode_order(MODES, f"q{i}", seed=1) for i in range(60)] != orders
