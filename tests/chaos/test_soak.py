"""A short soak (50 streams for 20 s) through a gateway process: no errors, memory and
descriptors flat. The full-size one (200 streams for 5 minutes) is ``benchmarks/soak.py``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pice_gateway.settings import KEEPALIVE_EXPIRY_SECONDS
from tests.chaos.soak import EDGES, POLL_INTERVAL, SoakConfig, soak


@pytest.mark.chaos
def test_short_soak_has_no_errors_and_flat_memory_and_descriptors(tmp_path: Path) -> None:
    config = SoakConfig(streams=50, seconds=20.0)
    result = soak(config, tmp_path)
    summary = result.summary()
    assert result.errors == 0, result.error_examples
    assert result.requests >= config.streams
    # Flat: what the gateway holds grows with streams in flight, not with requests served.
    assert summary["rss_mb_late"] - summary["rss_mb_early"] < 10, summary
    # Each stream holds its client's socket and one or two upstream ones, all given back.
    assert summary["fds_steady_max"] <= summary["fds_before"] + 4 * config.streams, summary
    # After the load, what stays open is the pool the load poller keeps warm: aiohttp reuses
    # its oldest idle connection first, so a poll every ``poll`` seconds keeps up to about
    # 2 x keep-alive / poll connections per edge from expiring. A leak grows with requests
    # served (hundreds here), not with that.
    pooled = EDGES * math.ceil(2 * KEEPALIVE_EXPIRY_SECONDS / POLL_INTERVAL)
    assert summary["fds_after"] <= summary["fds_before"] + 4 + pooled, summary
