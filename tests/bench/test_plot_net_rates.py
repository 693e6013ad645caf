"""``benchmarks/plot_net_rates.py``: net win rates of several judgments read, tabled, plotted."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def plot_net_rates() -> ModuleType:
    return load_benchmark("plot_net_rates")


def judgment(path: Path, net: float, pair: str = "a:b") -> Path:
    row = {"wins": 3, "losses": 1, "ties": 6, "net": net, "ci95": [net - 0.2, net + 0.1]}
    groups = {"suitable": {"n": 10, "expected": row}, "all": {"n": 12, "expected": row}}
    path.write_text(json.dumps({"pairs": {pair: {"groups": groups}}}))
    return path


def test_each_judgment_is_read_with_its_group_and_interval(
    plot_net_rates: ModuleType, tmp_path: Path
) -> None:
    rate = plot_net_rates.read(f"off={judgment(tmp_path / 'j.json', -0.3)}", None, "all")
    assert (rate.label, rate.n, rate.wins, rate.losses, rate.ties) == ("off", 12, 3, 1, 6)
    assert (rate.net, rate.low, rate.high) == pytest.approx((-0.3, -0.5, -0.2))
    with pytest.raises(KeyError):
        plot_net_rates.read(f"x={tmp_path / 'j.json'}", "c:d", "all")
    with pytest.raises(SystemExit, match="LABEL=FILE"):
        plot_net_rates.read(str(tmp_path / "j.json"), None, "all")


def test_the_plot_is_written(plot_net_rates: ModuleType, tmp_path: Path) -> None:
    rates = [
        plot_net_rates.read(f"{label}={judgment(tmp_path / f'{label}.json', net)}", None, "all")
        for label, net in (("off", -0.4), ("on", 0.05))
    ]
    out = tmp_path / "plots" / "net.png"
    plot_net_rates.plot(rates, "title", out)
    assert out.read_bytes().startswith(b"\x89PNG")


def judged_records(path: Path, outcomes: dict[str, list[str]], pair: str = "a:b") -> Path:
    """A rejudge.py output holding only records: per question, its outcomes (suitable ones
    are named ``s-…``)."""
    records = [
        {"question_id": q, "suits_points": q.startswith("s-"), "outcome": outcome}
        for q, found in outcomes.items()
        for outcome in found
    ]
    path.write_text(json.dumps({"pairs": {pair: {"groups": {}, "records": records}}}))
    return path


def test_pooled_runs_count_every_pair_of_the_group(
    plot_net_rates: ModuleType, tmp_path: Path
) -> None:
    one = judged_records(tmp_path / "1.json", {"s-1": ["win"], "s-2": ["loss"], "u-1": ["win"]})
    two = judged_records(tmp_path / "2.json", {"s-1": ["win"], "s-2": ["tie"], "u-1": ["loss"]})
    specs = [f"one={one}", f"two={two}"]
    rate = plot_net_rates.pooled("both", specs, None, "suitable")
    assert (rate.label, rate.n, rate.wins, rate.losses, rate.ties) == ("both", 4, 2, 1, 1)
    assert rate.net == pytest.approx(0.25)
    assert rate.low <= rate.net <= rate.high
    everything = plot_net_rates.pooled("both", specs, None, "all")
    assert (everything.n, everything.wins, everything.losses) == (6, 3, 2)
    assert plot_net_rates.pooled("both", specs, None, "not suitable").net == pytest.approx(0.0)
    with pytest.raises(SystemExit, match="groups"):
        plot_net_rates.pooled("both", specs, None, "outlined")


def test_the_pooled_interval_resamples_questions_not_pairs(
    plot_net_rates: ModuleType, tmp_path: Path
) -> None:
    # One question judged in four runs, two wins and two losses: resampling its pairs would
    # give an interval around 0; with the question as the unit there is nothing to resample.
    runs = [
        f"r{i}={judged_records(tmp_path / f'{i}.json', {'s-1': [outcome]})}"
        for i, outcome in enumerate(["win", "loss", "win", "loss"])
    ]
    rate = plot_net_rates.pooled("all runs", runs, None, "suitable")
    assert (rate.n, rate.net, rate.low, rate.high) == (4, 0.0, 0.0, 0.0)
    # Two questions, each the same in every run: the interval spans their two values.
    twice = [
        f"r{i}={judged_records(tmp_path / f't{i}.json', {'s-1': ['win'], 's-2': ['loss']})}"
        for i in range(3)
    ]
    spread = plot_net_rates.pooled("all runs", twice, None, "suitable")
    assert spread.net == 0.0
    assert (spread.low, spread.high) == (-1.0, 1.0)
