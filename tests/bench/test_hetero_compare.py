"""``benchmarks/hetero_compare.py``: runs paired by arrival slot, and ``--outlined-only``."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.scripts import load_benchmark


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    return load_benchmark("hetero_compare")


def run_dir(root: Path, name: str, answers: list[tuple[float, str]], schedule: str = "f") -> Path:
    """A bench run on ``schedule`` whose load phase answered slot i in ``answers[i]``
    (latency, path)."""
    requests = [
        {
            "phase": "load",
            "scheduled_s": float(i),
            "answer": {
                "latency_s": latency,
                "ttft_s": 1.0,
                "extension": {"reason": reason, "points": []},
            },
        }
        for i, (latency, reason) in enumerate(answers)
    ]
    config = {"load_schedules": {"0.07": {"fingerprint": schedule}}}
    path = root / name
    path.mkdir()
    (path / "results.json").write_text(json.dumps({"config": config, "requests": requests}))
    return path


def run(compare: ModuleType, monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr("sys.argv", ["hetero_compare.py", *argv])
    assert compare.main() == 0


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """Slots 0-3 outlined in both runs; slot 4 went to the cloud whole in one of them (slow)."""
    base = run_dir(tmp_path, "base", [(10.0, "outline")] * 4 + [(100.0, "sketch_prose")])
    other = run_dir(tmp_path, "other", [(5.0, "outline")] * 4 + [(200.0, "outline")])
    return base, other


def test_outlined_only_drops_the_slots_any_run_answered_without_an_outline(
    compare: ModuleType,
    pair: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, other = pair
    run(compare, monkeypatch, str(base), str(other))
    everything = capsys.readouterr().out
    assert "| other | 5 | 5.0 | " in everything, "all five slots"
    other_p95 = float(everything.split("| other | 5 | 5.0 | ")[1].split(" |")[0])
    assert other_p95 > 100, "the slow slot is in the tail"
    run(compare, monkeypatch, "--outlined-only", str(base), str(other))
    outlined = capsys.readouterr().out
    assert "4 of 5 arrival slots answered with an outline in every run" in outlined
    assert "| base | 4 | 10.0 | 10.0 | – | – |" in outlined
    assert "| other | 4 | 5.0 | 5.0 | 0.50 [0.50, 0.50] | 0.50 [0.50, 0.50] |" in outlined


def test_runs_on_different_schedules_are_refused(
    compare: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = run_dir(tmp_path, "base", [(10.0, "outline")])
    other = run_dir(tmp_path, "other", [(5.0, "outline")])
    data = json.loads((other / "results.json").read_text())
    data["config"]["load_schedules"]["0.07"]["fingerprint"] = "g"
    (other / "results.json").write_text(json.dumps(data))
    monkeypatch.setattr("sys.argv", ["hetero_compare.py", str(base), str(other)])
    assert compare.main() == 1


def test_runs_on_several_schedules_pool_their_slots_and_resample_each_schedule(
    compare: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Schedule f: the other policy halves every latency; schedule g (one slot): it doubles it.
    base_f = run_dir(tmp_path, "base-f", [(10.0, "outline")] * 3, schedule="f")
    base_g = run_dir(tmp_path, "base-g", [(40.0, "outline")], schedule="g")
    other_f = run_dir(tmp_path, "other-f", [(5.0, "outline")] * 3, schedule="f")
    other_g = run_dir(tmp_path, "other-g", [(80.0, "outline")], schedule="g")
    out = tmp_path / "compare.json"
    run(compare, monkeypatch, "--out", str(out), f"{base_f},{base_g}", f"{other_g},{other_f}")
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["fingerprint"] == "f,g"
    assert report["schedules"] == {
        "f": {"slots": 3, "slots_kept": 3}, "g": {"slots": 1, "slots_kept": 1},
    }  # fmt: skip
    base, other = report["rows"]
    assert (base["n"], other["n"]) == (4, 4), "every slot of both schedules"
    assert other["p50_ratio"] == pytest.approx(0.5)
    # Stratified: every draw keeps g's one slot (80 vs 40 s), which sets both p95s, so the
    # ratio never varies; a draw over all four slots would often miss it (ratio 0.5).
    assert other["p95_ratio"] > 1.5
    assert other["p95_ratio_ci95"] == pytest.approx([other["p95_ratio"]] * 2)
    assert "| other-g+other-f | 4 | 5.0 | " in printed
    # An argument missing one of the schedules is refused, naming what each covers.
    monkeypatch.setattr("sys.argv", ["x", f"{base_f},{base_g}", str(other_f)])
    assert compare.main() == 1
    assert "other-f: f" in capsys.readouterr().err


def test_out_writes_the_tables_figures_as_json(
    compare: ModuleType,
    pair: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, other = pair
    out = tmp_path / "compare.json"
    run(compare, monkeypatch, "--outlined-only", "--out", str(out), str(base), str(other))
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert (report["fingerprint"], report["baseline"]) == ("f", "base")
    assert (report["slots"], report["slots_kept"], report["outlined_only"]) == (5, 4, True)
    first, second = report["rows"]
    assert (first["run"], first["n"], first["p50_s"]) == ("base", 4, 10.0)
    assert "p50_ratio" not in first, "the baseline has no ratio to itself"
    assert second["runs"] == [str(other)]
    assert second["p95_ratio"] == pytest.approx(0.5)
    assert second["p95_ratio_ci95"] == pytest.approx([0.5, 0.5])
    assert (second["points"], second["failed"], second["ttft_p50_s"]) == (0, 0, 1.0)
    # The prose fallbacks are counted over every arrival, whichever slots the ratios keep.
    assert (first["prose_answers"], first["arrivals"]) == (1, 5)
    assert (second["prose_answers"], second["arrivals"]) == (0, 5)
    assert "| other | 4 | 5.0 | 5.0 | 0.50 [0.50, 0.50] | 0.50 [0.50, 0.50] |" in printed
    assert "| base | 1.00 | 1.00 | 0 of 0 (0%) | 1 of 5 | 0 (0) | 0 |" in printed


def test_png_plots_each_runs_kept_latencies(
    compare: ModuleType,
    pair: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, other = pair
    seen: list[dict[str, list[float]]] = []
    real_plot = compare.plot

    def plot(latency: dict[str, list[float]], rows: list[Any], png: Path) -> None:
        seen.append(latency)
        real_plot(latency, rows, png)

    monkeypatch.setattr(compare, "plot", plot)
    png = tmp_path / "img" / "tails.png"
    run(compare, monkeypatch, "--outlined-only", "--png", str(png), str(base), str(other))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen == [{"base": [10.0] * 4, "other": [5.0] * 4}], "the kept slots only"
    run(compare, monkeypatch, "--labels", "A,B", "--png", str(png), str(base), str(other))
    assert list(seen[-1]) == ["A", "B"]
    monkeypatch.setattr(
        "sys.argv", ["x", "--labels", "A", "--png", str(png), str(base), str(other)]
    )
    assert compare.main() == 1, "one label for two runs"


def test_runs_of_the_same_name_in_two_sets_keep_a_row_each(
    compare: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "set1").mkdir()
    (tmp_path / "set2").mkdir()
    first = run_dir(tmp_path / "set1", "eft-1", [(10.0, "outline")] * 3)
    second = run_dir(tmp_path / "set2", "eft-1", [(20.0, "outline")] * 3)
    run(compare, monkeypatch, str(first), str(second))
    printed = capsys.readouterr().out
    assert "| set1/eft-1 | 3 | 10.0 |" in printed
    assert "| set2/eft-1 | 3 | 20.0 | 20.0 | 2.00 [2.00, 2.00] |" in printed


def test_tail_lists_each_runs_slowest_arrivals_with_where_their_time_went(
    compare: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slow = run_dir(tmp_path, "slow", [(10.0, "outline"), (90.0, "outline"), (50.0, "sketch_prose")])
    data = json.loads((slow / "results.json").read_text())
    for request, question in zip(data["requests"], ["a", "b", "c"], strict=True):
        request["question_id"] = question
    data["requests"][1]["answer"]["extension"].update(
        timings={"sketch_ms": 30000.0, "expansion_ms": 58000.0},
        points=[{"edge": "edge-2", "tokens": 40}, {"edge": "edge-2", "tokens": 70},
                {"edge": "edge-1", "tokens": 10}],
        hedges=1,
    )  # fmt: skip
    data["requests"][2]["answer"]["extension"]["timings"] = {"sketch_ms": None}
    (slow / "results.json").write_text(json.dumps(data))
    twin = run_dir(tmp_path, "twin", [(1.0, "outline")] * 3)
    out = tmp_path / "compare.json"
    run(compare, monkeypatch, "--tail", "2", "--out", str(out), f"{slow},{twin}")
    printed = capsys.readouterr().out
    row = "| slow | 1 | b | 90.0 | outline | 30.0 | 58.0 | 3 | 70 | edge-1 1, edge-2 2 |"
    assert row + " 1 |" in printed
    assert "| slow | 2 | c | 50.0 | sketch_prose | 0.0 | 0.0 | 0 | 0 | – | 0 |" in printed
    assert "| slow | 0 |" not in printed, "only the two slowest"
    slowest = json.loads(out.read_text())["slowest"]
    assert [row["question"] for row in slowest["slow"]] == ["b", "c"]
    assert len(slowest["twin"]) == 2
    run(compare, monkeypatch, str(slow))
    assert "| slot |" not in capsys.readouterr().out, "no tail table unless asked"


def test_the_points_each_run_hedged_are_counted(
    compare: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """From the answers' ``pice`` objects: a run said to have hedging on shows whether it acted."""
    base = run_dir(tmp_path, "base", [(10.0, "outline")] * 3)
    hedged = run_dir(tmp_path, "hedged", [(5.0, "outline")] * 3)
    data = json.loads((hedged / "results.json").read_text())
    data["requests"][0]["answer"]["extension"].update(hedges=2, hedges_won=1)
    data["requests"][2]["answer"]["extension"].update(hedges=1, hedges_won=0)
    (hedged / "results.json").write_text(json.dumps(data))
    run(compare, monkeypatch, str(base), str(hedged))
    out = capsys.readouterr().out
    assert "| hedges (won) |" in out
    assert "| 0 of 3 | 0 (0) | 0 |" in out.split("| base | 1.00")[1]
    assert "| 0 of 3 | 3 (1) | 0 |" in out.split("| hedged | 1.00")[1]


def test_the_estimator_is_checked_per_edge_where_the_runs_recorded_it(
    compare: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A point's placement-to-end time over its estimate, per edge; failed-over points and
    runs without the record are left out."""
    base = run_dir(tmp_path, "base", [(10.0, "outline")] * 2)
    timed = run_dir(tmp_path, "timed", [(5.0, "outline")] * 2)
    data = json.loads((timed / "results.json").read_text())

    def point(edge: str, estimate: float, took_ms: float, attempts: int = 1) -> dict[str, Any]:
        return {
            "edge": edge,
            "attempts": [edge] * attempts,
            "estimate_s": estimate,
            "placed_ms": 100.0,
            "done_ms": 100.0 + took_ms,
        }

    data["requests"][0]["answer"]["extension"]["points"] = [
        point("fast", 2.0, 2000.0),  # exact: 1.0
        point("slow", 4.0, 12000.0),  # took 3x its estimate
        point("slow", 1.0, 90000.0, attempts=2),  # failed over: not the estimate's doing
    ]
    data["requests"][1]["answer"]["extension"]["points"] = [point("fast", 2.0, 4000.0)]
    (timed / "results.json").write_text(json.dumps(data))
    out_json = tmp_path / "c.json"
    run(compare, monkeypatch, str(base), str(timed), "--out", str(out_json))
    rows = {row["run"]: row for row in json.loads(out_json.read_text())["rows"]}
    assert rows["base"]["estimate_check"] == {}
    check = rows["timed"]["estimate_check"]
    assert check["slow"] == {"points": 1, "p50": 3.0, "p90": 3.0}
    assert check["fast"]["points"] == 2
    assert check["fast"]["p50"] == pytest.approx(1.5)
    assert "| timed | slow | 1 | 3.00 | 3.00 | - | - | - | - |" in capsys.readouterr().out


def test_the_estimators_error_is_split_into_length_and_rate_where_its_inputs_were_recorded(
    compare: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = run_dir(tmp_path, "base", [(10.0, "outline")])
    timed = run_dir(tmp_path, "timed", [(5.0, "outline")])
    data = json.loads((timed / "results.json").read_text())
    inputs = {"tokens": 32.0, "decode_s": 2.0, "rate_source": "points", "busy": 3}
    # Placed expecting 32 tokens at 16 tok/s (2 s); wrote 64 tokens in 8 s (8 tok/s): twice
    # the length and half the rate, so four times the estimate.
    data["requests"][0]["answer"]["extension"]["points"] = [
        {
            "edge": "e",
            "attempts": ["e"],
            "estimate_s": 2.0,
            "estimate": inputs,
            "tokens": 64,
            "placed_ms": 0.0,
            "done_ms": 8000.0,
        }
    ]
    (timed / "results.json").write_text(json.dumps(data))
    out_json = tmp_path / "c.json"
    run(compare, monkeypatch, str(base), str(timed), "--out", str(out_json))
    check = json.loads(out_json.read_text())["rows"][1]["estimate_check"]["e"]
    assert check == {
        "points": 1,
        "p50": 4.0,
        "p90": 4.0,
        "tokens_p50": 2.0,
        "rate_p50": 2.0,
        "prior": 0.0,
        "points_fit": 1.0,
        "busy_p50": 3.0,
    }
    assert (
        "| timed | e | 1 | 4.00 | 4.00 | 2.00 | 2.00 | 0% | 100% | 3 |" in capsys.readouterr().out
    )


def test_the_estimates_sources_are_counted_per_edge_old_records_included(
    compare: ModuleType,
) -> None:
    def point(inputs: dict[str, object]) -> dict[str, object]:
        estimate = {"tokens": 32.0, "decode_s": 2.0, "busy": 1} | inputs
        return {
            "edge": "e",
            "attempts": ["e"],
            "estimate_s": 2.0,
            "estimate": estimate,
            "tokens": 32,
            "placed_ms": 0.0,
            "done_ms": 2000.0,
        }

    sources = [
        {"rate_source": "points"},
        {"rate_source": "decode"},
        {"rate_source": "prior"},
        {"fitted": False},  # a gateway of early 2026-12-05: the prior
        {"fitted": True},  # ... and the decode-rate fit
    ]
    request = {"answer": {"extension": {"points": [point(s) for s in sources]}}}
    check = compare.estimate_check([[request]])["e"]
    assert (check["prior"], check["points_fit"]) == (2 / 5, 1 / 5)
