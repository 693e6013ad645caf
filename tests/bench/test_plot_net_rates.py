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
