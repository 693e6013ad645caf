"""The simulator's length signal: predictions of a given quality, seen by the policy."""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

from pice_bench.sim.engine import Workload, predicted_length, rate_for_load, workload_requests
from pice_bench.sim.sweep import SimConfig, run_one
from pice_cli.main import main
from pice_gateway.placement import registry
from pice_gateway.placement.base import EdgeStatus, PointPlacement
from pice_gateway.placement.least_loaded import LeastLoadedPolicy

SHORT = Workload(duration=60.0, warmup=10.0, rate=2.0)


def r_squared(signal: float, n: int = 4000) -> float:
    """The squared correlation of log prediction and log length over ``n`` draws."""
    workload = replace(SHORT, length_signal=signal, max_tokens=10_000)
    rng, predict = random.Random(1), random.Random(2)
    mu = math.log(workload.mean_tokens) - workload.sigma**2 / 2.0
    lengths = [max(1, round(rng.lognormvariate(mu, workload.sigma))) for _ in range(n)]
    predicted = [predicted_length(length, workload, predict) for length in lengths]
    return (
        statistics.correlation([math.log(x) for x in lengths], [math.log(p) for p in predicted])
        ** 2
    )


def test_a_prediction_explains_the_share_of_log_variance_it_is_given() -> None:
    assert r_squared(0.15) == pytest.approx(0.15, abs=0.03)
    assert r_squared(0.5) == pytest.approx(0.5, abs=0.03)
    assert r_squared(1.0) == pytest.approx(1.0, abs=0.01)


def test_a_full_signal_is_the_length_and_none_is_the_mean() -> None:
    full, none = replace(SHORT, length_signal=1.0), replace(SHORT, length_signal=0.0)
    rng = random.Random(0)
    assert predicted_length(57, full, rng) == pytest.approx(57.0)
    assert predicted_length(500, full, rng) == full.max_tokens, "capped like the lengths"
    assert predicted_length(5, none, rng) == pytest.approx(none.mean_tokens)
    assert predicted_length(90, none, rng) == pytest.approx(none.mean_tokens)


def test_the_signal_changes_what_the_gateway_sees_not_the_workload() -> None:
    plain = workload_requests(SHORT, seed=3)
    signalled = workload_requests(replace(SHORT, length_signal=0.3), seed=3)
    assert [r.lengths for r in plain] == [r.lengths for r in signalled]
    assert all(r.predicted is None for r in plain)
    assert all(r.predicted is not None and len(r.predicted) == len(r.lengths) for r in signalled)


class Spy(LeastLoadedPolicy):
    seen: ClassVar[list[PointPlacement]] = []

    def place(self, point: PointPlacement, edges: Sequence[EdgeStatus]) -> str | None:
        Spy.seen.append(point)
        return super().place(point, edges)


def test_the_policy_is_told_each_points_predicted_length(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "PLACEMENT_POLICIES", {"spy": Spy})
    Spy.seen.clear()
    workload = replace(SHORT, length_signal=1.0)
    cfg = SimConfig(edges=4, policies=("spy",), workload=workload)
    run_one(cfg, "spy", 0.5)
    # run_one sets the rate per load; the requests are those of that workload.
    requests = workload_requests(
        replace(workload, rate=rate_for_load(0.5, cfg.fleet(), workload)), cfg.seed
    )
    assert Spy.seen
    for point in Spy.seen:
        true = requests[int(point.request_id)].lengths[point.point]
        assert point.expected_tokens == pytest.approx(true)
    assert len({point.expected_tokens for point in Spy.seen}) > 10


def test_pice_sim_takes_a_length_signal_and_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim.json"
    argv = ["sim", "--edges", "4", "--duration", "30", "--warmup", "5", "--loads", "0.5"]
    argv += ["--policies", "eft,eft-length", "--length-signal", "0.5", "--out", str(out)]
    assert main(argv) == 0
    assert "| 0.50 | eft-length |" in capsys.readouterr().out
    assert json.loads(out.read_text())["config"]["workload"]["length_signal"] == 0.5
    assert main(["sim", "--length-signal", "1.5"]) == 2
