"""``pice_bench.figures``: one set-up for every PNG the bench and its scripts draw."""

from __future__ import annotations

from pathlib import Path

import pytest

from pice_bench.figures import figure, pyplot


def test_a_figure_is_written_where_asked_and_closed(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir" / "plot.png"
    with figure(out, size=(4, 3), nrows=2, sharex=True) as (fig, axes):
        assert len(axes) == 2
        axes[0].plot([0, 1], [1, 0])
        assert tuple(fig.get_size_inches()) == (4, 3)
    assert out.read_bytes().startswith(b"\x89PNG")
    assert pyplot().get_fignums() == []
    assert pyplot().get_backend().lower() == "agg"


def test_a_figure_that_fails_while_drawn_is_not_written_and_is_closed(tmp_path: Path) -> None:
    out = tmp_path / "broken.png"

    def draw() -> None:
        with figure(out) as (_, ax):
            ax.plot([0, 1], [1, 0])
            raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        draw()
    assert not out.exists()
    assert pyplot().get_fignums() == []


def test_the_simulators_sweep_plot_is_drawn(tmp_path: Path) -> None:
    from pice_bench.sim.engine import RunResult
    from pice_bench.sim.sweep import write_plot

    runs = [
        RunResult(policy, load, 1.0, [1.0 + load, 2.0 + load, 9.0], 0, 3, 10.0, 30)
        for policy in ("eft", "least-loaded")
        for load in (0.4, 0.8)
    ]
    out = tmp_path / "sweep.png"
    write_plot(runs, out, "two policies")
    assert out.read_bytes().startswith(b"\x89PNG")


def test_the_seed_and_soak_plots_are_drawn(tmp_path: Path) -> None:
    from tests.chaos.soak import Sample, SoakConfig, SoakResult
    from tests.support.scripts import load_benchmark

    summary = [
        {"policy": policy, "load": load, "seeds": [0, 1], "p95_s": [p95, p95 * 1.1]}
        for policy, p95 in (("least-loaded", 10.0), ("eft", 7.0), ("round-robin", 90.0))
        for load in (0.5, 0.8)
    ]
    seeds = tmp_path / "seeds.png"
    load_benchmark("sim_seeds").plot(summary, seeds, 2)
    assert seeds.read_bytes().startswith(b"\x89PNG")
    samples = [Sample(t=float(t), rss_mb=80.0, fds=20, active=5, tokens=100) for t in range(5)]
    soak = tmp_path / "soak.png"
    load_benchmark("soak").plot(SoakResult(SoakConfig(), samples=samples), soak)
    assert soak.read_bytes().startswith(b"\x89PNG")
    assert pyplot().get_fignums() == []
