"""The decode window behind ``/v1/load``'s rate and the mean batch it was measured at."""

from __future__ import annotations

import pytest

from edge_agent.engine.stats import ThroughputWindow


def test_rate_and_mean_batch_cover_the_same_steps() -> None:
    window = ThroughputWindow(window=10.0)
    assert window.batch_mean(0.0) is None
    window.record(0.0, 1.0, 2)  # 1 s of steps of 2 sequences
    window.record(1.0, 4.0, 8)  # 3 s of steps of 8
    assert window.rate(4.0) == pytest.approx(10 / 4.0)
    assert window.batch_mean(4.0) == pytest.approx((1 * 2 + 3 * 8) / 4.0)
    # Eleven seconds on, the first step has left the window.
    assert window.batch_mean(11.5) == pytest.approx(8.0)
    assert window.batch_mean(30.0) is None
    assert window.rate(30.0) == 0.0
